"""The GRPO loop: grain prompts -> sampler (G per prompt) -> text -> sandboxed rewards ->
advantages -> `num_minibatches` optimizer updates per rollout batch.

One RL step (timings of every part are logged):
  1. data     the next batch of prompts_per_step prompts from the grain iterator (its state is
              checkpointed, so a resumed run sees exactly the prompts it would have seen);
  2. generate the sampler reads the *current* parameters (the same device arrays the optimizer
              updates; no host copy) and draws G completions per prompt, in chunks of
              `rollout.prompts_per_call` prompts. Each chunk's completions are decoded and
              submitted to the reward Scorer at once (futures), so sandboxed scoring of chunk k
              runs while chunk k+1 generates: the overlap keeps the run on-policy, unlike
              scoring while the *next step* generates, which would sample from stale weights;
  3. logprob  old log-probs recomputed by the policy right before the update (the paper/verl
              recompute them rather than trusting the sampler's), and the reference's when a
              KL term is on; this also overlaps the last chunk's scoring;
  4. score    wait for the futures; rewards -> group advantages (rl/objective/advantages.py);
  5. update   the batch is cut into `num_minibatches` prompt-aligned mini-batches (paper: 2), each
              one exact micro-batch-accumulated optimizer update (rl/infra/train_steps.py), `ppo_epochs` times.
Checkpoints every `save_every` steps and at the end (async Orbax); RUN/metrics.jsonl + TensorBoard.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from execverify_jax import config_loader as config_lib
from execverify_jax.data import records as records_io
from execverify_jax.data.loader import LoaderConfig
from execverify_jax.model import sharding as shd
from execverify_jax.model.config import ModelConfig
from execverify_jax.model.sampler import Sampler
from execverify_jax.model.strategies import make_strategy
from execverify_jax.rl.infra import distributed as dist
from execverify_jax.rl.objective.advantages import (group_advantages, informative_groups, kl_penalized_rewards,
                                          overlong_filter)
from execverify_jax.rl.infra.checkpoint import RunCheckpointer
from execverify_jax.rl.infra.metrics import MetricsWriter, reward_metrics
from execverify_jax.rl.infra.optim import build_optimizer, lr_schedule
from execverify_jax.rl.infra.train_steps import make_grpo_update, make_logprob_fn, put_batch
from execverify_jax.rl.run_config import TrainConfig
from execverify_jax.rl.infra.train_state import abstract_train_state, create_train_state, state_shardings

KILL_ENV = "EXECVERIFY_TEST_KILL_AT_STEP"  # tests: SIGKILL this process right after that RL step


# ------------------------------------------------------------------------------------- building
def build_model_config(cfg: TrainConfig, vocab_size: int | None = None) -> tuple[ModelConfig, str | None]:
    """(ModelConfig, init path or None). A fresh preset gets the tokenizer's vocab size if unset."""
    from execverify_jax.model.checkpoint import is_checkpoint, load_config
    from execverify_jax.model.config import load_hf_config

    numerics = {k: v for k, v in (("dtype", cfg.model.dtype), ("remat", cfg.model.remat)) if v is not None}
    if cfg.model.init:
        init = cfg.model.init
        mcfg = load_config(init) if is_checkpoint(init) else load_hf_config(init)
        return mcfg.replace(**numerics), init
    kw = dict(cfg.model.overrides)
    if vocab_size is not None and "vocab_size" not in kw:
        kw["vocab_size"] = vocab_size
    return ModelConfig.preset(cfg.model.preset, **kw).replace(**numerics), None


def load_init_params(init: str, mcfg: ModelConfig, mesh: Any) -> Any:
    """Parameters of a checkpoint / HF dir on their shards (fp32 master copy)."""
    from execverify_jax.model.checkpoint import load_any
    overrides = {"param_dtype": mcfg.param_dtype, "dtype": mcfg.dtype, "remat": mcfg.remat}
    _, _, params = load_any(init, mesh, shd.TRAIN_RULES, **overrides)
    return params


def build_task(cfg: TrainConfig, tokenizer: Any = None) -> Any:
    """The task of `cfg.data` (see rl/grpo/tasks.py)."""
    from execverify_jax.rl.grpo import tasks

    d = cfg.data
    if d.kind == "toy":
        return tasks.ToyTask(**d.toy)
    if tokenizer is None:
        from execverify_jax.data.tokenizer import Tokenizer
        tok_path = d.tokenizer or cfg.model.init
        if tok_path is None:
            raise ValueError("data.tokenizer: a tokenizer directory is needed (or model.init pointing at one)")
        tokenizer = Tokenizer(tok_path)
    if d.path is None:
        raise ValueError("data.path: required for kind questions/codegen")
    source: Any = d.path
    if d.kind == "codegen" and Path(d.path).is_dir():
        source = codegen_from_synth(d.path, d.split)
    elif d.layouts is not None:
        recs = (tasks.read_question_jsonl(d.path) if not Path(d.path).is_dir()
                else _all_questions(d.path, d.split))
        source = [r for r in recs if r.get("kind") in d.layouts]
    return tasks.QuestionTask(source, tokenizer, cfg.reward, split=d.split, workers=cfg.sandbox_workers)


def _all_questions(data_dir: str, split: str) -> list[dict]:
    from execverify_jax.data import records as rec_lib
    from execverify_jax.data.loader import question_files
    out = []
    for f in question_files(data_dir, split):
        out.extend(rec_lib.read_arrayrecord(f, "question"))
    return out


def codegen_from_synth(data_dir: str, split: str = "train") -> list[dict]:
    """Code-generation problems built from a synth dir's programs (stage II without Eurus data)."""
    from execverify_jax.data import records as rec_lib
    from execverify_jax.rl.grpo.tasks import program_to_codegen
    manifest = json.loads((Path(data_dir) / "manifest.json").read_text())
    files = manifest["files"]["arrayrecord"]["programs"][split]
    out = []
    for f in files:
        for prog in rec_lib.read_arrayrecord(Path(data_dir) / f, "program"):
            rec = program_to_codegen(prog)
            if rec is not None:
                out.append(rec)
    if not out:
        raise ValueError(f"{data_dir}: no program could be turned into a code-generation problem")
    return out


def loader_config(cfg: TrainConfig, process_count: int) -> LoaderConfig:
    """Per-process loader settings (each process reads prompts_per_step / process_count)."""
    if cfg.grpo.prompts_per_step % process_count:
        raise ValueError(f"grpo.prompts_per_step={cfg.grpo.prompts_per_step} is not divisible by the "
                         f"{process_count} processes")
    return LoaderConfig(batch_size=cfg.grpo.prompts_per_step // process_count, buckets=tuple(cfg.data.buckets),
                        pad_side="left", seed=cfg.seed, shuffle=cfg.data.shuffle,
                        num_epochs=cfg.data.num_epochs, worker_count=cfg.data.worker_count, split=cfg.data.split)


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, TypeError, AttributeError):
        return 1 << 30  # a torn (or foreign) line: dropped


def _bucket(n: int, buckets: tuple[int, ...], cap: int) -> int:
    for b in sorted(buckets):
        if b >= n:
            return min(b, cap)
    return cap


# ------------------------------------------------------------------------------------- the loop
@dataclasses.dataclass
class _Rollout:
    """G completions of each of a batch's prompts (rows grouped by prompt), scored or pending.

    futures: (row, Future[RewardResult]) for the rows this process scores.
    results: row -> RewardResult once collected (this process's rows only).
    """

    prompts: list[list[int]]
    records: list[dict]
    tokens_BC: np.ndarray
    len_B: np.ndarray
    stopped_B: np.ndarray
    futures: list
    t_gen: float
    num_skipped: int = 0
    results: dict = dataclasses.field(default_factory=dict)


class GRPOTrainer:
    """Holds the mesh, state, jitted steps, sampler, task and writers of one run."""

    def __init__(self, cfg: TrainConfig, run_dir: str | Path, task: Any = None, params: Any = None,
                 model_cfg: ModelConfig | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.pi, self.pc = dist.process_info()
        self.mesh = shd.make_mesh(cfg.mesh)
        self.task = task if task is not None else build_task(cfg)
        vocab = getattr(getattr(self.task, "tokenizer", None), "vocab_size", None)
        if model_cfg is None:
            model_cfg, init = build_model_config(cfg, vocab)
            if init is not None and params is None:
                params = load_init_params(init, model_cfg, self.mesh)
        self.model_cfg = model_cfg
        g = cfg.grpo
        self.loader_cfg = loader_config(cfg, self.pc)
        self.dataset = self.task.dataset(self.loader_cfg, self.pi, self.pc)
        self.total_updates = self._total_updates()
        self.tx = build_optimizer(cfg.optim, self.total_updates)
        self.schedule = lr_schedule(cfg.optim, self.total_updates)
        self.graphdef, self.state = create_train_state(model_cfg, self.tx, seed=cfg.seed, mesh=self.mesh,
                                                       params=params)
        self.shardings = state_shardings(model_cfg, self.tx, self.mesh)
        temp = cfg.rollout.temperature
        self.update_fn = make_grpo_update(self.graphdef, self.tx, g, self.mesh, self.shardings,
                                          temperature=temp, chunk=cfg.rollout.logprob_chunk,
                                          lr_schedule=self.schedule)
        self.logprob_fn = make_logprob_fn(self.graphdef, self.mesh, micro_batch_size=g.micro_batch_size,
                                          temperature=temp, chunk=cfg.rollout.logprob_chunk)
        self.ref_params = None
        if g.uses_reference:  # frozen copy of the initial policy
            self.ref_params = jax.tree.map(jnp.copy, self.state.params)
        self.sampler = Sampler(model_cfg, self.graphdef, mesh=self.mesh, buckets=tuple(cfg.data.buckets),
                               pad_id=self.task.pad_id)
        self.to_sample = None
        if cfg.rollout.sample_reshard or cfg.rollout.sample_dtype:
            from execverify_jax.model.params import param_shardings
            sdt = cfg.rollout.sample_dtype
            rules = shd.SAMPLE_RULES if cfg.rollout.sample_reshard else shd.TRAIN_RULES
            out_sh = param_shardings(model_cfg, self.mesh, rules)
            self.to_sample = jax.jit(lambda p: jax.tree.map(lambda x: x.astype(sdt) if sdt else x, p),
                                     out_shardings=out_sh)
        self.strategy = make_strategy(temperature=temp, top_k=cfg.rollout.top_k, top_p=cfg.rollout.top_p)
        self.ckpt = RunCheckpointer(self.run_dir, keep=cfg.keep_checkpoints, async_save=cfg.async_checkpoints)
        self.rl_step = 0
        self.iterator = iter(self.dataset)
        resume = self.ckpt.latest_step()
        if resume is not None:
            self._restore(resume)
        samples = self.run_dir / "samples.jsonl"
        if self.pi == 0 and samples.exists():  # drop samples of steps that will be re-run
            keep = [l for l in samples.read_text(encoding="utf-8", errors="replace").splitlines()
                    if l.strip() and resume is not None and _step_of(l) <= self.rl_step]
            samples.write_text("".join(l + "\n" for l in keep), encoding="utf-8")
        self.writer = MetricsWriter(self.run_dir, resume_step=self.rl_step if resume is not None else 0,
                                    enabled=self.pi == 0, tensorboard=cfg.tensorboard)
        if self.pi == 0:
            (self.run_dir / "config.json").write_text(json.dumps(config_lib.to_dict(cfg), indent=2))
            (self.run_dir / "model_config.json").write_text(json.dumps(model_cfg.to_json_dict(), indent=2))

    # --------------------------------------------------------------------------------- setup
    def _total_updates(self) -> int:
        g = self.cfg.grpo
        steps = self.cfg.max_steps or self.cfg.total_steps_hint
        if steps is None:
            n = len(self.task.source) if hasattr(self.task, "source") and not isinstance(self.task.source[0], str) else None
            n = n or 1000 * g.prompts_per_step
            steps = max(1, n * (self.cfg.data.num_epochs or 1) // g.prompts_per_step)
        return max(1, steps * g.num_minibatches * g.ppo_epochs)

    def _restore(self, step: int) -> None:
        abstract = abstract_train_state(self.model_cfg, self.tx, self.mesh)
        self.state, meta = self.ckpt.restore(abstract, step)
        self.rl_step = int(meta["rl_step"])
        states = meta["loader_states"]
        if len(states) != self.pc:
            raise ValueError(f"checkpoint {step} was written by {len(states)} processes, this run has {self.pc}")
        self.iterator.set_state(states[self.pi])
        if self.pi == 0:
            print(f"resumed {self.run_dir} at RL step {self.rl_step} (optimizer step {int(self.state.step)})")

    def save(self, force: bool = False) -> None:
        """Checkpoints the state, the RL step and every process's iterator state (async)."""
        loader_states = dist.allgather_json(self.iterator.get_state())
        meta = {"rl_step": self.rl_step, "loader_states": loader_states, "config": config_lib.to_dict(self.cfg),
                "model_config": self.model_cfg.to_json_dict()}
        self.ckpt.save(self.rl_step, self.state, meta, force=force)

    # --------------------------------------------------------------------------------- one step
    def _generate(self, prompts: list[list[int]], records: list[dict], key: jax.Array):
        """Generates G completions per prompt chunk by chunk; returns (tokens, lengths, stopped,
        futures, seconds) with futures submitted as soon as each chunk is done."""
        g, r = self.cfg.grpo, self.cfg.rollout
        G = g.group_size
        per_call = r.prompts_per_call or len(prompts)
        toks, lens, stops, futures = [], [], [], []
        t_gen = 0.0
        lo_mine, hi_mine = self._my_rows(len(prompts) * G)
        # The current weights, on device: either the training arrays themselves or a
        # device-to-device copy in the sampling layout/dtype (never through the host).
        params = self.state.params if self.to_sample is None else self.to_sample(self.state.params)
        for c, start in enumerate(range(0, len(prompts), per_call)):
            chunk = prompts[start:start + per_call]
            t0 = time.perf_counter()
            out = self.sampler.generate(params, chunk, r.max_new_tokens, self.strategy,
                                        stop_ids=self.task.stop_ids, n=G, seed=jax.random.fold_in(key, c))
            t_gen += time.perf_counter() - t0
            toks.append(out.tokens_BC)
            lens.append(out.lengths_B)
            stops.append(out.stopped_B)
            row0 = start * G
            comps, recs, rows = [], [], []
            for i in range(out.tokens_BC.shape[0]):
                row = row0 + i
                if lo_mine <= row < hi_mine:  # score only this process's rows
                    comps.append(out.tokens_BC[i, : out.lengths_B[i]].tolist())
                    recs.append(records[start + i // G])
                    rows.append(row)
            futures.extend(zip(rows, self.task.submit(recs, comps)))
        return (np.concatenate(toks), np.concatenate(lens), np.concatenate(stops), futures, t_gen)

    def _my_rows(self, n: int) -> tuple[int, int]:
        per = n // self.pc
        return self.pi * per, (self.pi + 1) * per

    def _rollout(self, batch: dict, key: jax.Array) -> "_Rollout":
        """Generates G completions for every prompt of a (global) batch; scoring is submitted."""
        prompt_BP, plen_B = batch["prompt_BP"], batch["prompt_len_B"]
        P = prompt_BP.shape[1]
        prompts = [prompt_BP[b, P - plen_B[b]:].tolist() for b in range(prompt_BP.shape[0])]
        # Each process scores its own rows: look up only the records it needs.
        records = self.task.records(batch["record_index_B"].tolist())
        tokens_BC, len_B, stopped_B, futures, t_gen = self._generate(prompts, records, key)
        return _Rollout(prompts, records, tokens_BC, len_B, stopped_B, futures, t_gen,
                        int(batch.get("num_skipped", 0)))

    def _collect(self, roll: "_Rollout") -> tuple[list, np.ndarray]:
        """Waits for this process's scores; returns (its results, the global reward_B)."""
        mine = sorted(roll.futures, key=lambda rf: rf[0])
        results = [f.result() for _, f in mine]
        roll.results = {row: res for (row, _), res in zip(mine, results)}
        rewards_mine = np.asarray([float(x.reward) for x in results], np.float32)
        return results, dist.allgather_rows(rewards_mine)

    def _next_batch(self) -> dict | None:
        """The next global prompt batch (every process pulls its shard), or None at the end."""
        try:
            local = next(self.iterator)
        except StopIteration:
            return None
        batch = dist.allgather_batch(local, self.task.pad_id)
        batch["num_skipped"] = local.get("num_skipped", 0)
        return batch

    def _dynamic_fill(self, first: "_Rollout", key: jax.Array) -> tuple["_Rollout", np.ndarray, tuple, dict]:
        """DAPO dynamic sampling: keeps groups whose rewards are not all equal, drawing further
        prompt batches until prompts_per_step such groups exist or `dynamic_max_rounds` rounds
        were generated (or the data ended); the remaining slots are then filled with
        uninformative groups (zero advantage), counted in `dynamic/filled_groups`.

        Returns (the kept rollout, its global rewards, this process's (results, lengths,
        truncation) over every row it scored, metrics). The decision uses the all-gathered
        rewards, so every process keeps the same groups and pulls the same number of batches.
        """
        g = self.cfg.grpo
        N, G = g.prompts_per_step, g.group_size
        rounds, rewards = [first], []
        seen: tuple[list, list, list] = ([], [], [])  # this process's results, lengths, truncation
        kept: list[tuple[int, int]] = []
        spare: list[tuple[int, int]] = []
        t_score = 0.0
        while True:
            t0 = time.perf_counter()
            res, reward_B = self._collect(rounds[-1])
            t_score += time.perf_counter() - t0
            lo, hi = self._my_rows(rounds[-1].tokens_BC.shape[0])
            seen[0].extend(res)
            seen[1].extend(rounds[-1].len_B[lo:hi].tolist())
            seen[2].extend((~rounds[-1].stopped_B[lo:hi]).tolist())
            rewards.append(reward_B)
            informative = np.asarray(informative_groups(jnp.asarray(reward_B.reshape(-1, G))))
            r = len(rounds) - 1
            for gi, ok in enumerate(informative):
                (kept if ok else spare).append((r, gi))
            if len(kept) >= N or len(rounds) >= g.dynamic_max_rounds:
                break
            batch = self._next_batch()
            if batch is None:
                break
            # A key per round, distinct from every chunk key of round 0.
            rounds.append(self._rollout(batch, jax.random.fold_in(jax.random.fold_in(key, 0x5EED), r + 1)))
        generated = sum(len(x.prompts) for x in rounds)
        n_informative = len(kept)
        chosen = sorted(kept[:N] + spare[:max(0, N - len(kept))])
        rows = [(r, gi * G + j) for r, gi in chosen for j in range(G)]
        roll = _Rollout(
            prompts=[rounds[r].prompts[gi] for r, gi in chosen],
            records=[rounds[r].records[gi] for r, gi in chosen],
            tokens_BC=np.stack([rounds[r].tokens_BC[i] for r, i in rows]),
            len_B=np.asarray([rounds[r].len_B[i] for r, i in rows]),
            stopped_B=np.asarray([rounds[r].stopped_B[i] for r, i in rows]),
            futures=[], t_gen=sum(x.t_gen for x in rounds),
            num_skipped=sum(x.num_skipped for x in rounds),
            results={k: rounds[r].results[i] for k, (r, i) in enumerate(rows) if i in rounds[r].results})
        reward_B = np.asarray([rewards[r][i] for r, i in rows], np.float32)
        metrics = {"dynamic/rounds": float(len(rounds)), "dynamic/generated_groups": float(generated),
                   "dynamic/informative_frac": n_informative / max(generated, 1),
                   "dynamic/filled_groups": float(max(0, N - n_informative)), "time/score_wait": t_score}
        return roll, reward_B, seen, metrics

    def step(self, batch: dict) -> dict[str, float]:
        """One RL step on a (global) prompt batch; returns its metrics."""
        cfg, g = self.cfg, self.cfg.grpo
        G = g.group_size
        t_step = time.perf_counter()
        key = jax.random.fold_in(jax.random.wrap_key_data(self.state.rng), self.rl_step)
        roll = self._rollout(batch, key)
        reward_B = None
        extra: dict[str, float] = {}
        if g.dynamic_sampling:
            # Rewards are needed before the batch is known, so no logprob/scoring overlap here.
            roll, reward_B, seen, extra = self._dynamic_fill(roll, key)
        plen_B = np.asarray([len(p) for p in roll.prompts], np.int32)
        # The loader's bucket; kept groups of several batches are re-padded to the largest one's.
        longest = int(plen_B.max())
        P = max(batch["prompt_BP"].shape[1], _bucket(longest, tuple(cfg.data.buckets), max(max(cfg.data.buckets), longest)))
        prompt_BP = np.full((len(roll.prompts), P), self.task.pad_id, np.int32)
        for b, p in enumerate(roll.prompts):
            prompt_BP[b, P - len(p):] = p
        records, tokens_BC, len_B, stopped_B = roll.records, roll.tokens_BC, roll.len_B, roll.stopped_B
        t_gen = roll.t_gen
        B = tokens_BC.shape[0]
        C = _bucket(int(len_B.max()), tuple(cfg.rollout.completion_buckets), cfg.rollout.max_new_tokens)
        tokens_BC = tokens_BC[:, :C]
        mask_BC = (np.arange(C)[None, :] < len_B[:, None]).astype(np.float32)
        truncated_B = ~stopped_B
        if g.overlong_filter:
            mask_BC = np.asarray(overlong_filter(jnp.asarray(mask_BC), jnp.asarray(truncated_B)))
        rep_prompt = np.repeat(prompt_BP, G, axis=0)
        rep_plen = np.repeat(plen_B, G)
        prompt_attn = np.arange(P)[None, :] >= (P - rep_plen)[:, None]
        host = {"tokens_BT": np.concatenate([rep_prompt, tokens_BC], 1).astype(np.int32),
                "attn_BT": np.concatenate([prompt_attn, mask_BC > 0], 1),
                "mask_BC": mask_BC}
        # Old (and reference) log-probs while the sandbox still scores the last chunk.
        t0 = time.perf_counter()
        dev = put_batch(host, self.mesh)
        old_logp = self.logprob_fn(self.state.params, dev)
        ref_logp = self.logprob_fn(self.ref_params, dev) if self.ref_params is not None else None
        # All rows on every process (a multi-host sharded array cannot be read directly).
        old_logp_np = shd.to_host(old_logp)
        ref_logp_np = shd.to_host(ref_logp) if ref_logp is not None else None
        t_logp = time.perf_counter() - t0
        if reward_B is None:
            t0 = time.perf_counter()
            results, reward_B = self._collect(roll)
            extra["time/score_wait"] = time.perf_counter() - t0
            lo, hi = self._my_rows(B)
            seen = (results, len_B[lo:hi].tolist(), truncated_B[lo:hi].tolist())
        if g.kl_in_reward_coef > 0:
            reward_B = np.asarray(kl_penalized_rewards(jnp.asarray(reward_B), jnp.asarray(old_logp_np),
                                                       jnp.asarray(ref_logp_np), jnp.asarray(host["mask_BC"]),
                                                       g.kl_in_reward_coef, g.kl_in_reward_estimator))
        adv_B = np.asarray(group_advantages(jnp.asarray(reward_B), G, g))
        # Updates: prompt-aligned mini-batches.
        t0 = time.perf_counter()
        per_mb = B // g.num_minibatches
        host["adv_B"] = adv_B.astype(np.float32)
        host["old_logp_BC"] = old_logp_np
        if ref_logp_np is not None:
            host["ref_logp_BC"] = ref_logp_np
        upd_metrics: list[dict] = []
        for _ in range(g.ppo_epochs):
            for m in range(g.num_minibatches):
                sl = slice(m * per_mb, (m + 1) * per_mb)
                mb = put_batch({k: v[sl] for k, v in host.items()}, self.mesh)
                self.state, met = self.update_fn(self.state, mb)
                upd_metrics.append(met)
        upd_metrics = jax.device_get(upd_metrics)
        t_update = time.perf_counter() - t0
        # Metrics.
        mask_tokens = float(mask_BC.sum())
        lo, hi = self._my_rows(B)
        # Over every row this process scored (with dynamic sampling: every generated row, as DAPO
        # logs them, not only the kept ones); the kept batch's mean is reward/mean_global.
        out = reward_metrics(*seen)
        out["reward/mean_global"] = float(reward_B.mean())
        for k in upd_metrics[0]:
            vals = [float(m[k]) for m in upd_metrics]
            out[f"train/{k}"] = max(vals) if k.endswith("_max") else float(np.mean(vals))
        out["train/clip_frac"] = out.get("train/clip_frac_low", 0.0) + out.get("train/clip_frac_high", 0.0)
        # Monte-Carlo entropy of the sampling policy: mean of -log p over the sampled tokens.
        out["policy/entropy_mc"] = float(-(old_logp_np * mask_BC).sum() / max(mask_tokens, 1.0))
        out["adv/zero_groups"] = float(np.mean(np.all(reward_B.reshape(-1, G) == reward_B.reshape(-1, G)[:, :1], axis=1)))
        out["time/generate"] = t_gen
        out["time/logprob"] = t_logp
        out["time/update"] = t_update
        out["time/step"] = time.perf_counter() - t_step
        gen_tokens = float(len_B.sum())
        out["throughput/gen_tokens_per_s"] = gen_tokens / max(t_gen, 1e-9)
        out["throughput/train_tokens_per_s"] = float(host["attn_BT"].sum()) * g.ppo_epochs / max(t_update, 1e-9)
        out["throughput/tokens_per_s"] = (gen_tokens + float(host["attn_BT"].sum())) / max(out["time/step"], 1e-9)
        out["data/skipped_prompts"] = float(roll.num_skipped)
        out["optimizer_step"] = float(int(self.state.step))
        out.update(extra)
        self._log_samples(records, tokens_BC, len_B, roll.results)
        return out

    def _log_samples(self, records: list[dict], tokens_BC: np.ndarray, len_B: np.ndarray,
                     results: dict[int, Any]) -> None:
        n = self.cfg.log_samples
        if self.pi != 0 or n <= 0:
            return
        G = self.cfg.grpo.group_size
        with open(self.run_dir / "samples.jsonl", "a", encoding="utf-8") as f:
            for i in sorted(results)[:n]:
                f.write(records_io.json_line({"step": self.rl_step + 1, "question_id": records[i // G].get("id"),
                                              "response": self.task.decode(tokens_BC[i, : len_B[i]].tolist()),
                                              "reward": float(results[i].reward), "reason": results[i].reason}))

    # --------------------------------------------------------------------------------- run
    def train(self) -> dict[str, Any]:
        """Runs until max_steps or the end of the data; returns a summary."""
        from tqdm import tqdm

        cfg = self.cfg
        kill_at = int(os.environ.get(KILL_ENV, "0") or 0)
        bar = tqdm(total=cfg.max_steps, initial=self.rl_step, desc=f"GRPO stage {cfg.stage}",
                   disable=not cfg.progress or self.pi != 0, dynamic_ncols=True)
        last: dict[str, float] = {}
        t_start = time.perf_counter()
        steps_run = 0
        try:
            while cfg.max_steps is None or self.rl_step < cfg.max_steps:
                t0 = time.perf_counter()
                batch = self._next_batch()
                if batch is None:
                    break
                t_data = time.perf_counter() - t0
                last = self.step(batch)
                last["time/data"] = t_data
                self.rl_step += 1
                steps_run += 1
                self.writer.write(self.rl_step, last)
                bar.update(1)
                bar.set_postfix({k.split("/")[-1] if k != "reward/mean" else "reward": f"{last[k]:.3g}"
                                 for k in ("reward/mean", "acc/io", "acc/oi", "format_rate", "time/step",
                                           "throughput/tokens_per_s") if k in last})
                if self.rl_step % cfg.save_every == 0:
                    self.save()
                if kill_at and self.rl_step == kill_at:
                    self.ckpt.wait()
                    os.kill(os.getpid(), signal.SIGKILL)
            if steps_run and self.rl_step % cfg.save_every != 0:
                self.save(force=True)
        finally:
            bar.close()
            self.ckpt.close()
            self.writer.close()
        return {"rl_steps": self.rl_step, "steps_this_run": steps_run, "last": last,
                "wall_s": time.perf_counter() - t_start}

    def close(self) -> None:
        """Releases the task's sandbox pool."""
        self.task.close()


def train(cfg: TrainConfig, run_dir: str | Path, task: Any = None, params: Any = None,
          model_cfg: ModelConfig | None = None) -> tuple[GRPOTrainer, dict]:
    """Builds a trainer (resuming RUN if it has checkpoints) and runs it."""
    trainer = GRPOTrainer(cfg, run_dir, task=task, params=params, model_cfg=model_cfg)
    try:
        summary = trainer.train()
    finally:
        trainer.close()
    return trainer, summary
