"""Jitted training steps: GRPO update, SFT update, and the log-prob pass that precedes an update.

Batch layout of a GRPO mini-batch (host numpy or device arrays, B sequences):
  tokens_BT    int32  prompt (left-padded to P) followed by the completion (right-padded to C)
  attn_BT      bool   real tokens (prompt and completion)
  mask_BC      f32    completion tokens that enter the loss (completion length, stop id included)
  adv_B        f32    GRPO advantages
  adv_BC       f32    (only with grpo.credit = stepwise) per-token advantages, used instead of adv_B
  old_logp_BC  f32    log-probs under the policy that will be updated, recomputed right before the
                      update as the paper does (verl recomputes `old_log_prob` with the actor)
  ref_logp_BC  f32    (only when a KL term is on) log-probs under the frozen reference
Completion log-probs are those of the last C positions (`completion_logprobs`), so P is implicit;
logits are computed for those positions only, chunk by chunk (model/logprobs.py).

Packed layout (`packed=True`, rl/infra/packing.py `pack_grpo`): tokens_BT, segment_ids_BT,
positions_BT in buffers of L tokens, and the completion slab: target_pos_BC (the buffer
position of each of a buffer's completion tokens, left-aligned; C is the packer's bucketed
capacity) with its segment_ids_BC, mask_BC, adv_BC, old_logp_BC (ref_logp_BC). Column c scores
the token at target_pos_BC[c] from the hidden state at target_pos_BC[c] - 1 (never across a
segment start: a segment's first token is a prompt token); logits are computed for the C slab
columns only (`gathered_logprobs`), not for the prompt positions. Loss and gradients equal the
padded layout's (tested).

Every step is exact under micro-batching: the loss normaliser (`aggregation.loss_norm`) is
computed once on the whole mini-batch and the micro-batch contributions are summed by
`rl/accumulate.accumulate_grads` (a `lax.scan`, so one compiled body for any number of
micro-batches). The optimizer (rl/infra/optim.py) clips the accumulated gradient by global norm.

Layout: the batch is sharded over every data-parallel mesh axis (`data` x `fsdp`, the `batch`
rule); micro-batches are cut *strided* (`split_microbatches(strided=True)`), so each one takes
its rows from every device's own block, and constrained to the same axes inside the loop. The
micro-batch size must therefore be a multiple of data x fsdp (`check_micro_batch`): otherwise
XLA silently shards it over a subset and the other devices recompute the same rows.
Gradient accumulators are constrained to the parameters' shardings.

Every jitted body is a pure function of the params: the module is rebuilt with `nnx.merge`
inside the innermost traced function that uses it (the scan body), from params that are that
body's own inputs (scan carry, or the arguments `value_and_grad` differentiates), never closed
over from an outer trace, so NNX transforms in the model (`nnx.remat`) never see a module built
from another trace level's values (`TraceContextError: Cannot mutate Param from a different
trace level`, issue 12).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from execverify_jax.model import sharding as shd
from execverify_jax.model.logprobs import DEFAULT_CHUNK, completion_logprobs, gathered_logprobs, target_logprobs
from execverify_jax.rl.infra.accumulate import accumulate_grads, merge_microbatches, split_microbatches
from execverify_jax.rl.objective.aggregation import loss_norm
from execverify_jax.rl.objective.config import GRPOConfig
from execverify_jax.rl.objective.loss import policy_loss
from execverify_jax.rl.sft.loss import next_token_targets, sft_loss_from_logp
from execverify_jax.rl.infra.train_state import TrainState


def put_batch(batch: dict[str, Any], mesh: Mesh, rules: shd.Rules = shd.TRAIN_RULES) -> dict[str, jax.Array]:
    """Places a host batch on the mesh, sharding axis 0 over the batch axes (when it divides).

    Multi-host: every process passes the *global* batch (all processes build the same one from
    their own shard of prompts gathered by the loop), so this is a plain device_put.
    """
    out = {}
    for k, v in batch.items():
        v = np.asarray(v)
        sh = shd.named_sharding((shd.BATCH,) + (None,) * (v.ndim - 1), v.shape, mesh, rules)
        out[k] = jax.device_put(v, sh)
    return out


def check_micro_batch(micro_batch_size: int, mesh: Mesh, key: str,
                      rules: shd.Rules = shd.TRAIN_RULES) -> None:
    """A micro-batch must split evenly over the data-parallel devices (a config error otherwise,
    naming `key`, the mesh axes and a valid value)."""
    dp = shd.data_parallel_size(mesh, rules)
    if micro_batch_size < 1 or micro_batch_size % dp:
        axes = " x ".join(f"{a}={mesh.shape.get(a, 1)}" for a in rules[shd.BATCH])
        valid = max(dp, -(-max(micro_batch_size, 1) // dp) * dp)
        raise ValueError(f"{key}={micro_batch_size!r} does not divide over the data-parallel devices "
                         f"(mesh {axes} = {dp}): use a multiple of {dp}, e.g. {key}={valid}, "
                         f"or change `mesh`")


class UnderRules:
    """A jitted function traced under `shd.use_rules(mesh, rules)` (activation constraints), with
    `.lower(...)` under the same rules for compile-only analysis (benchmarks/bench_memory.py:
    abstract ShapeDtypeStruct inputs, `.lower(...).compile().memory_analysis()`)."""

    def __init__(self, jitted: Any, mesh: Mesh, rules: shd.Rules,
                 adapt: Callable[..., tuple] = lambda *a: a) -> None:
        self.jitted, self.mesh, self.rules, self.adapt = jitted, mesh, rules, adapt

    def __call__(self, *args: Any) -> Any:
        with shd.use_rules(self.mesh, self.rules):
            return self.jitted(*self.adapt(*args))

    def lower(self, *args: Any) -> Any:
        with shd.use_rules(self.mesh, self.rules):
            return self.jitted.lower(*self.adapt(*args))


def _rows(tree: Any) -> Any:
    """Constrains every leaf's axis 0 to the data-parallel (`batch`) axes (no-op off a mesh)."""
    return jax.tree.map(lambda x: shd.shard(x, (shd.BATCH,) + (None,) * (x.ndim - 1)), tree)


def _completion_logp(model: Any, tokens_BT: jax.Array, attn_BT: jax.Array, C: int,
                     temperature: float, chunk: int | None) -> jax.Array:
    return completion_logprobs(model, tokens_BT, C, attn_BT, temperature=temperature, chunk=chunk)


def _completion_logp_entropy(model: Any, tokens_BT: jax.Array, attn_BT: jax.Array, C: int,
                             temperature: float) -> tuple[jax.Array, jax.Array]:
    """(logp_BC, entropy_BC) from full logits (only used when an entropy bonus is on)."""
    h_BTD = model.hidden(tokens_BT, None, attn_BT)[:, -C - 1:-1]
    logits_BCV = model.logits(h_BTD) / temperature
    logz_BC = jax.nn.logsumexp(logits_BCV, axis=-1)
    logp_BCV = logits_BCV - logz_BC[..., None]
    target_BC = tokens_BT[:, -C:]
    logp_BC = jnp.take_along_axis(logp_BCV, target_BC[..., None], axis=-1)[..., 0]
    entropy_BC = -jnp.sum(jnp.exp(logp_BCV) * logp_BCV, axis=-1)
    return logp_BC, entropy_BC


def _packed_logp(model: Any, mb: dict, temperature: float, chunk: int | None) -> jax.Array:
    """logp_BC of the packed buffers' completion slab (each token given its segment's previous
    ones; logits only at the slab's C columns)."""
    tokens_BT = mb["tokens_BT"]
    h_BTD = model.hidden(tokens_BT, mb["positions_BT"], mb["segment_ids_BT"])
    return gathered_logprobs(model, h_BTD, tokens_BT, mb["target_pos_BC"], temperature, chunk)


PACKED_LOGP_KEYS = ("tokens_BT", "segment_ids_BT", "positions_BT", "target_pos_BC")


def make_logprob_fn(graphdef: nnx.GraphDef, mesh: Mesh, *, micro_batch_size: int,
                    temperature: float = 1.0, chunk: int | None = None,
                    rules: shd.Rules = shd.TRAIN_RULES,
                    key: str = "grpo.micro_batch_size", packed: bool = False) -> UnderRules:
    """Jitted (params, batch{tokens_BT, attn_BT, mask_BC}) -> logp_BC, micro-batch by micro-batch;
    `packed`: (params, batch{tokens_BT, segment_ids_BT, positions_BT, target_pos_BC}) -> logp_BC
    of the completion slab (packing.unpack_completion maps it back to the padded logp_BC)."""
    check_micro_batch(micro_batch_size, mesh, key, rules)

    def one(params: Any, mb: dict, C: int) -> jax.Array:
        model = nnx.merge(graphdef, params)  # inside the scan body: see the module docstring
        mb = _rows(mb)
        if packed:
            return _packed_logp(model, mb, temperature, chunk)
        return _completion_logp(model, mb["tokens_BT"], mb["attn_BT"], C, temperature, chunk)

    @jax.jit
    def run(params: Any, parts: dict) -> jax.Array:
        C = parts["mask_BC"].shape[1] if "mask_BC" in parts else None
        mbs = split_microbatches(parts, micro_batch_size, strided=True)
        # params ride in the scan carry (unchanged) rather than being closed over: a module merged
        # from closed-over outer tracers trips nnx.remat's trace-level check (TraceContextError).
        _, out_MbC = jax.lax.scan(lambda p, mb: (p, one(p, mb, C)), params, mbs)
        return _rows(merge_microbatches(out_MbC, parts["tokens_BT"].shape[0], strided=True))

    keys = PACKED_LOGP_KEYS if packed else ("tokens_BT", "attn_BT", "mask_BC")
    return UnderRules(run, mesh, rules, lambda params, batch: (params, {k: batch[k] for k in keys}))


def make_grpo_update(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, cfg: GRPOConfig,
                     mesh: Mesh, state_shardings: TrainState, *, temperature: float = 1.0,
                     chunk: int | None = None, lr_schedule: optax.Schedule | None = None,
                     rules: shd.Rules = shd.TRAIN_RULES,
                     key: str = "grpo.micro_batch_size", packed: bool = False) -> UnderRules:
    """Jitted (state, minibatch) -> (state, metrics): one optimizer update on one mini-batch
    (`packed`: the packed layout of the module docstring; no entropy bonus there).

    metrics: loss, grad_norm (before clipping), lr, and every metric of `grpo.policy_loss`
    (pg_loss, approx_kl, clip_frac_low/high, dual_clip_frac, ratio_mean/max, num_tokens,
    kl_loss/kl_ref/entropy when those terms are on).
    """
    use_entropy = cfg.entropy_coef > 0
    check_micro_batch(cfg.micro_batch_size, mesh, key, rules)
    if packed and use_entropy:
        raise ValueError(f"grpo.packing=True does not support entropy_coef={cfg.entropy_coef!r} > 0")

    def packed_loss_fn(params: Any, mb: dict, norm: Any) -> tuple[jax.Array, dict]:
        model = nnx.merge(graphdef, params)  # inside the scan body: see the module docstring
        mb = _rows(mb)
        logp_BC = _packed_logp(model, mb, temperature, chunk)
        return policy_loss(logp_BC, mb["old_logp_BC"], mb["adv_BC"], mb["mask_BC"], cfg,
                           ref_logp_BC=mb.get("ref_logp_BC"), norm=norm,
                           segment_ids_BC=mb["segment_ids_BC"])

    def loss_fn(params: Any, mb: dict, norm: Any) -> tuple[jax.Array, dict]:
        model = nnx.merge(graphdef, params)  # inside the scan body: see the module docstring
        mb = _rows(mb)
        C = mb["mask_BC"].shape[1]
        entropy_BC = None
        if use_entropy:
            logp_BC, entropy_BC = _completion_logp_entropy(model, mb["tokens_BT"], mb["attn_BT"], C, temperature)
        else:
            logp_BC = _completion_logp(model, mb["tokens_BT"], mb["attn_BT"], C, temperature, chunk)
        adv = mb["adv_BC"] if "adv_BC" in mb else mb["adv_B"]  # per-token under stepwise credit
        return policy_loss(logp_BC, mb["old_logp_BC"], adv, mb["mask_BC"], cfg,
                           ref_logp_BC=mb.get("ref_logp_BC"), entropy_BC=entropy_BC, norm=norm)

    @functools.partial(jax.jit, donate_argnums=(0,))
    def update(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        norm = (loss_norm(batch["mask_BC"], batch["segment_ids_BC"]) if packed
                else loss_norm(batch["mask_BC"]))
        mbs = split_microbatches(batch, cfg.micro_batch_size, strided=True)
        loss, grads, metrics = accumulate_grads(packed_loss_fn if packed else loss_fn, state.params, mbs, norm,
                                                grad_shardings=state_shardings.params)
        return _apply_grads(state, grads, loss, metrics, tx, state_shardings, lr_schedule)

    return UnderRules(update, mesh, rules)


def make_sft_update(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, mesh: Mesh,
                    state_shardings: TrainState, *, micro_batch_size: int, mode: str = "token-mean",
                    lr_schedule: optax.Schedule | None = None, rules: shd.Rules = shd.TRAIN_RULES,
                    key: str = "sft.micro_batch_size", packed: bool = False) -> UnderRules:
    """Jitted (state, batch{ids_BT, attn_BT, loss_mask_BT}) -> (state, metrics): masked CE on the
    assistant tokens (`loss_mask_BT`), global token mean over the whole batch (paper's SFT).

    `packed`: batch{ids_BT, segment_ids_BT, positions_BT, loss_mask_BT} (packing.pack_sft); a
    target is only learned inside its own segment, and segments are the sequences of the
    seq-mean-token-mean mode."""
    check_micro_batch(micro_batch_size, mesh, key, rules)

    def loss_fn(params: Any, mb: dict, norm: Any) -> tuple[jax.Array, dict]:
        model = nnx.merge(graphdef, params)  # inside the traced body: see the module docstring
        mb = _rows(mb)
        pos_BT = mb.get("positions_BT")
        h_BTD = model.hidden(mb["ids_BT"], pos_BT, mb["segment_ids_BT"] if packed else mb["attn_BT"])
        tmask_BT, seg_BT = mb["tmask_BT"], mb.get("segment_ids_BT")
        target_BT = mb["target_BT"]
        if "pred_pos_BC" in mb:  # logits only where a target is learned (packing.prediction_positions)
            pos_BC = mb["pred_pos_BC"]
            h_BTD = jnp.take_along_axis(h_BTD, pos_BC[..., None], axis=1)
            target_BT, tmask_BT = (jnp.take_along_axis(x, pos_BC, axis=1) for x in (target_BT, tmask_BT))
            seg_BT = None if seg_BT is None else jnp.take_along_axis(seg_BT, pos_BC, axis=1)
        # Padding targets may be any id; they are masked, but must index inside the vocab.
        target_BT = jnp.where(tmask_BT.astype(bool), target_BT, 0)
        logp_BT, hit_BT = target_logprobs(model, h_BTD, target_BT, chunk=DEFAULT_CHUNK, with_hit=True)
        return sft_loss_from_logp(logp_BT, hit_BT, tmask_BT, norm=norm, mode=mode, segment_ids_BT=seg_BT)

    @functools.partial(jax.jit, donate_argnums=(0,))
    def update(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        target_BT, tmask_BT = next_token_targets(batch["ids_BT"], batch["loss_mask_BT"])
        if packed:
            seg_BT = batch["segment_ids_BT"]
            # The last token of a segment has no target: the next one starts another sequence.
            same_BT = jnp.concatenate([seg_BT[:, 1:] == seg_BT[:, :-1], jnp.zeros_like(seg_BT[:, :1], bool)], 1)
            tmask_BT = jnp.where(same_BT, tmask_BT, 0).astype(tmask_BT.dtype)
            full = {"ids_BT": batch["ids_BT"], "segment_ids_BT": seg_BT, "positions_BT": batch["positions_BT"],
                    "target_BT": target_BT, "tmask_BT": tmask_BT}
        else:
            full = {"ids_BT": batch["ids_BT"], "attn_BT": batch["attn_BT"], "target_BT": target_BT,
                    "tmask_BT": tmask_BT}
        if "pred_pos_BC" in batch:
            full["pred_pos_BC"] = batch["pred_pos_BC"]
        norm = loss_norm(tmask_BT, full.get("segment_ids_BT"))
        mbs = split_microbatches(full, micro_batch_size, strided=True)
        loss, grads, metrics = accumulate_grads(loss_fn, state.params, mbs, norm,
                                                grad_shardings=state_shardings.params)
        return _apply_grads(state, grads, loss, metrics, tx, state_shardings, lr_schedule)

    return UnderRules(update, mesh, rules)


def _apply_grads(state: TrainState, grads: Any, loss: jax.Array, metrics: dict,
                 tx: optax.GradientTransformation, state_shardings: TrainState,
                 lr_schedule: optax.Schedule | None) -> tuple[TrainState, dict]:
    """One optimizer step from accumulated gradients (inside the jitted update), keeping the
    state's sharding; adds loss, grad norm (before clipping) and lr to the metrics."""
    grad_norm = optax.tree.norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new = TrainState(params=params, opt_state=opt_state, step=state.step + 1, rng=state.rng)
    new = jax.lax.with_sharding_constraint(new, state_shardings)
    metrics = dict(metrics, loss=loss, grad_norm=grad_norm)
    if lr_schedule is not None:
        metrics["lr"] = jnp.asarray(lr_schedule(state.step), jnp.float32)
    return new, metrics
