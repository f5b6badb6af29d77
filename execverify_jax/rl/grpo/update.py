"""From a scored rollout to optimizer updates: the padded update batch, advantages, prompt-aligned
mini-batch updates (each one exact micro-batch-accumulated optimizer step) and the step's metrics."""

from __future__ import annotations

import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from execverify_jax.buckets import bucket_for
from execverify_jax.model import sharding as shd
from execverify_jax.rl.grpo.credit import stepwise_inputs
from execverify_jax.rl.grpo.rollout import Rollout, gathered_credit, row_shaping
from execverify_jax.rl.infra.metrics import reward_metrics
from execverify_jax.rl.infra.packing import pack_grpo, padding_ratio, unpack_completion
from execverify_jax.rl.infra.train_steps import put_batch
from execverify_jax.rl.objective.advantages import (kl_penalized_rewards, overlong_filter, shaped_advantages,
                                                    stepwise_advantages)
from execverify_jax.rl.run_config import TrainConfig


def update_batch(roll: Rollout, loader_P: int, cfg: TrainConfig, pad_id: int) -> dict[str, np.ndarray]:
    """Host arrays of the update: tokens_BT / attn_BT (prompt left-padded to a data bucket, then
    the completion cut to its completion bucket) and mask_BC (completion tokens that count)."""
    G = cfg.grpo.group_size
    plen_B = np.asarray([len(p) for p in roll.prompts], np.int32)
    # The loader's bucket; kept groups of several batches are re-padded to the largest one's.
    longest = int(plen_B.max())
    P = max(loader_P, bucket_for(longest, cfg.data.buckets, over=longest))
    prompt_BP = np.full((len(roll.prompts), P), pad_id, np.int32)
    for b, p in enumerate(roll.prompts):
        prompt_BP[b, P - len(p):] = p
    C_max = cfg.rollout.max_new_tokens  # a completion bucket above it would only pad
    C = min(bucket_for(int(roll.len_B.max()), cfg.rollout.completion_buckets, over=C_max), C_max)
    tokens_BC = roll.tokens_BC[:, :C]
    mask_BC = (np.arange(C)[None, :] < roll.len_B[:, None]).astype(np.float32)
    if cfg.grpo.overlong_filter:
        mask_BC = np.asarray(overlong_filter(jnp.asarray(mask_BC), jnp.asarray(~roll.stopped_B)))
    rep_prompt = np.repeat(prompt_BP, G, axis=0)
    rep_plen = np.repeat(plen_B, G)
    prompt_attn = np.arange(P)[None, :] >= (P - rep_plen)[:, None]
    return {"tokens_BT": np.concatenate([rep_prompt, tokens_BC], 1).astype(np.int32),
            "attn_BT": np.concatenate([prompt_attn, mask_BC > 0], 1),
            "mask_BC": mask_BC}


def logprob_pass(logprob_fn: Callable, params_list: tuple, host: dict[str, np.ndarray], mesh: Any,
                 cfg: TrainConfig) -> list[np.ndarray | None]:
    """logp_BC (host, all rows) under each params of `params_list` (None -> None). With
    `grpo.packing` (and `logprob_fn` built with packed=True) the rows are packed into buffers of
    `grpo.pack_len` (`grpo.pack_len_auto`: or shorter) first and the log-probs mapped back to the padded completion layout."""
    g = cfg.grpo
    layout = None
    if g.packing:
        batch, layout = pack_grpo({k: host[k] for k in ("tokens_BT", "attn_BT", "mask_BC")},
                                  g.pack_len, g.micro_batch_size, auto=g.pack_len_auto)
    else:
        batch = host
    dev = put_batch(batch, mesh)
    out: list[np.ndarray | None] = []
    for params in params_list:
        if params is None:
            out.append(None)
            continue
        # All rows on every process (a multi-host sharded array cannot be read directly).
        logp = shd.to_host(logprob_fn(params, dev))
        if layout is not None:
            logp = unpack_completion(logp, batch["target_pos_BC"], layout, host["attn_BT"],
                                     host["mask_BC"].shape[1])
        out.append(logp)
    return out


def advantages(reward_B: np.ndarray, host: dict, old_logp_BC: np.ndarray, ref_logp_BC: np.ndarray | None,
               cfg: TrainConfig, shaping_B: np.ndarray | None = None) -> np.ndarray:
    """Group advantages of the (optionally KL-penalised) rewards; `shaping_B` is the format bonus
    inside reward_B, separated again by `grpo.format_shaping` (advantages.shaped_advantages)."""
    g = cfg.grpo
    if shaping_B is None:
        shaping_B = np.zeros_like(reward_B, np.float32)
    correct_B = np.asarray(reward_B, np.float32) - shaping_B
    if g.kl_in_reward_coef > 0:
        correct_B = np.asarray(kl_penalized_rewards(jnp.asarray(correct_B), jnp.asarray(old_logp_BC),
                                                    jnp.asarray(ref_logp_BC), jnp.asarray(host["mask_BC"]),
                                                    g.kl_in_reward_coef, g.kl_in_reward_estimator))
    return np.asarray(shaped_advantages(jnp.asarray(correct_B), jnp.asarray(shaping_B), g.group_size, g)
                      ).astype(np.float32)


def assign_advantages(host: dict, roll: Rollout, reward_B: np.ndarray, old_logp_BC: np.ndarray,
                      ref_logp_BC: np.ndarray | None, cfg: TrainConfig, decode: Callable) -> None:
    """Puts the update's advantages into `host`: adv_B (one per sequence, format shaping per
    `grpo.format_shaping`) and, with `grpo.credit: stepwise`, adv_BC (one per token)."""
    g = cfg.grpo
    rows = gathered_credit(roll)
    shaping_B = row_shaping(rows, len(reward_B))
    host["adv_B"] = advantages(reward_B, host, old_logp_BC, ref_logp_BC, cfg, shaping_B)
    if g.credit == "stepwise":
        C = host["mask_BC"].shape[1]
        reward_BK, valid_BK, seg_BC = stepwise_inputs(rows, roll.tokens_BC[:, :C], roll.len_B, decode)
        host["adv_BC"] = np.asarray(stepwise_advantages(jnp.asarray(host["adv_B"]), jnp.asarray(reward_BK),
                                                        jnp.asarray(valid_BK), jnp.asarray(seg_BC),
                                                        g.group_size, g)).astype(np.float32)


def run_updates(update_fn: Callable, state: Any, host: dict[str, np.ndarray], mesh: Any,
                cfg: TrainConfig) -> tuple[Any, list[dict]]:
    """`ppo_epochs` passes of `num_minibatches` prompt-aligned mini-batch updates (with
    `grpo.packing` each mini-batch is packed into buffers of `grpo.pack_len` first, or of the
    cheapest shorter length with `grpo.pack_len_auto`)."""
    g = cfg.grpo
    per_mb = host["tokens_BT"].shape[0] // g.num_minibatches
    metrics: list[dict] = []
    for _ in range(g.ppo_epochs):
        for m in range(g.num_minibatches):
            sl = slice(m * per_mb, (m + 1) * per_mb)
            part = {k: v[sl] for k, v in host.items()}
            real = int(np.asarray(part["attn_BT"]).sum())
            if g.packing:
                part = pack_grpo(part, g.pack_len, g.micro_batch_size, auto=g.pack_len_auto)[0]
            mb = put_batch(part, mesh)
            state, met = update_fn(state, mb)
            # Tokens the update computes per real token (packing.padding_ratio).
            metrics.append(dict(met, padding_ratio=padding_ratio(part["tokens_BT"].shape, real)))
    return state, jax.device_get(metrics)


def step_metrics(seen: tuple, reward_B: np.ndarray, upd_metrics: list[dict], host: dict[str, np.ndarray],
                 old_logp_BC: np.ndarray, roll: Rollout, times: dict[str, float], cfg: TrainConfig) -> dict[str, float]:
    """The step's metrics: rewards over every row this process scored (with dynamic sampling every
    generated row, as DAPO logs them; the kept batch's mean is reward/mean_global), update
    statistics, timings and throughputs."""
    G = cfg.grpo.group_size
    mask_BC = host["mask_BC"]
    out = reward_metrics(*seen)
    out["reward/mean_global"] = float(reward_B.mean())
    for k in upd_metrics[0]:
        vals = [float(m[k]) for m in upd_metrics]
        out[f"train/{k}"] = max(vals) if k.endswith("_max") else float(np.mean(vals))
    out["train/clip_frac"] = out.get("train/clip_frac_low", 0.0) + out.get("train/clip_frac_high", 0.0)
    # Monte-Carlo entropy of the sampling policy: mean of -log p over the sampled tokens.
    out["policy/entropy_mc"] = float(-(old_logp_BC * mask_BC).sum() / max(float(mask_BC.sum()), 1.0))
    groups = reward_B.reshape(-1, G)
    out["adv/zero_groups"] = float(np.mean(np.all(groups == groups[:, :1], axis=1)))
    out.update(times)
    gen_tokens = float(roll.len_B.sum())
    train_tokens = float(host["attn_BT"].sum())
    out["throughput/gen_tokens_per_s"] = gen_tokens / max(times["time/generate"], 1e-9)
    out["throughput/train_tokens_per_s"] = train_tokens * cfg.grpo.ppo_epochs / max(times["time/update"], 1e-9)
    out["throughput/tokens_per_s"] = (gen_tokens + train_tokens) / max(times["time/step"], 1e-9)
    out["data/skipped_prompts"] = float(roll.num_skipped)
    return out


class Timer:
    """Wall seconds of a `with` block, added to `times[name]`."""

    def __init__(self, times: dict[str, float], name: str) -> None:
        self.times, self.name = times, name

    def __enter__(self) -> "Timer":
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.times[self.name] = self.times.get(self.name, 0.0) + time.perf_counter() - self.t0
