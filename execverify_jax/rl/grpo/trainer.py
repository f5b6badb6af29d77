"""The GRPO trainer: grain prompts -> sampler (G per prompt) -> text -> sandboxed rewards ->
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
Rollouts are rl/grpo/rollout.py, updates rl/grpo/update.py; this module runs the loop.
Checkpoints every `save_every` steps and at the end (async Orbax); RUN/metrics.jsonl + TensorBoard.
"""

from __future__ import annotations

import json
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from execverify_jax import config_loader as config_lib
from execverify_jax.data import records as records_io
from execverify_jax.model import sharding as shd
from execverify_jax.paths import PathLike, append_lines, read_text, run_path, write_text
from execverify_jax.model.config import ModelConfig
from execverify_jax.rl.builders import build_model_config, build_task, load_init_params, loader_config
from execverify_jax.rl.grpo.rollout import RolloutGenerator, my_rows
from execverify_jax.rl.grpo.update import (Timer, assign_advantages, logprob_pass, run_updates, step_metrics,
                                            update_batch)
from execverify_jax.rl.infra import distributed as dist
from execverify_jax.rl.infra.checkpoint import RunCheckpointer
from execverify_jax.rl.infra.guards import check_finite
from execverify_jax.rl.infra.metrics import MetricsWriter
from execverify_jax.rl.infra.optim import build_optimizer, lr_schedule
from execverify_jax.rl.infra.train_state import abstract_train_state, create_train_state, state_shardings
from execverify_jax.rl.infra.train_steps import make_grpo_update, make_logprob_fn
from execverify_jax.rl.run_config import TrainConfig


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, TypeError, AttributeError):
        return 1 << 30  # a torn (or foreign) line: dropped


class GRPOTrainer:
    """Holds the mesh, state, jitted steps, sampler, task and writers of one run."""

    def __init__(self, cfg: TrainConfig, run_dir: PathLike, task: Any = None, params: Any = None,
                 model_cfg: ModelConfig | None = None) -> None:
        self.cfg = cfg
        self.run_dir = run_path(run_dir)  # local or gs:// (etils.epath)
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
        longest = max(cfg.data.buckets) + cfg.rollout.max_new_tokens
        if g.packing and g.pack_len < longest:
            raise ValueError(f"grpo.pack_len={g.pack_len!r} is shorter than the longest update row "
                             f"(max data bucket + rollout.max_new_tokens = {longest})")
        self.update_fn = make_grpo_update(self.graphdef, self.tx, g, self.mesh, self.shardings,
                                          temperature=temp, chunk=cfg.rollout.logprob_chunk,
                                          lr_schedule=self.schedule, packed=g.packing)
        self.logprob_fn = make_logprob_fn(self.graphdef, self.mesh, micro_batch_size=g.micro_batch_size,
                                          temperature=temp, chunk=cfg.rollout.logprob_chunk,
                                          packed=g.packing)
        self.ref_params = None
        if g.uses_reference:  # frozen copy of the initial policy
            self.ref_params = jax.tree.map(jnp.copy, self.state.params)
        self.rollouts = RolloutGenerator(cfg, model_cfg, self.graphdef, self.mesh, self.task, self.pi, self.pc)
        self.ckpt = RunCheckpointer(self.run_dir, keep=cfg.keep_checkpoints, async_save=cfg.async_checkpoints)
        self.rl_step = 0
        self.iterator = iter(self.dataset)
        resume = self.ckpt.latest_step()
        if resume is not None:
            self._restore(resume)
        samples = self.run_dir / "samples.jsonl"
        if self.pi == 0 and samples.exists():  # drop samples of steps that will be re-run
            keep = [l for l in read_text(samples).splitlines()
                    if l.strip() and resume is not None and _step_of(l) <= self.rl_step]
            write_text(samples, "".join(l + "\n" for l in keep))
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
    def _next_batch(self) -> dict | None:
        """The next global prompt batch (every process pulls its shard), or None at the end."""
        try:
            local = next(self.iterator)
        except StopIteration:
            return None
        batch = dist.allgather_batch(local, self.task.pad_id)
        batch["num_skipped"] = local.get("num_skipped", 0)
        return batch

    def step(self, batch: dict) -> dict[str, float]:
        """One RL step on a (global) prompt batch: rollout, old/reference log-probs (while the
        sandbox still scores the last chunk), advantages, updates; returns its metrics."""
        cfg, g = self.cfg, self.cfg.grpo
        t_step = time.perf_counter()
        key = jax.random.fold_in(jax.random.wrap_key_data(self.state.rng), self.rl_step)
        params = self.rollouts.sampling_params(self.state.params)
        roll = self.rollouts.rollout(params, batch, key)
        reward_B = None
        extra: dict[str, float] = {}
        if g.dynamic_sampling:
            # Rewards are needed before the batch is known, so no logprob/scoring overlap here.
            roll, reward_B, seen, extra = self.rollouts.dynamic_fill(params, roll, key, self._next_batch)
        del params
        extra.update(self.rollouts.engine_metrics())
        host = update_batch(roll, batch["prompt_BP"].shape[1], cfg, self.task.pad_id)
        times = {"time/generate": roll.t_gen}
        with Timer(times, "time/logprob"):
            old_logp_np, ref_logp_np = logprob_pass(self.logprob_fn, (self.state.params, self.ref_params),
                                                    host, self.mesh, cfg)
        if reward_B is None:
            with Timer(extra, "time/score_wait"):
                results, reward_B = self.rollouts.collect(roll)
            lo, hi = my_rows(roll.tokens_BC.shape[0], self.pi, self.pc)
            seen = (results, roll.len_B[lo:hi].tolist(), (~roll.stopped_B[lo:hi]).tolist())
        assign_advantages(host, roll, reward_B, old_logp_np, ref_logp_np, cfg, self.task.decode)
        host["old_logp_BC"] = old_logp_np
        if ref_logp_np is not None:
            host["ref_logp_BC"] = ref_logp_np
        with Timer(times, "time/update"):
            self.state, upd_metrics = run_updates(self.update_fn, self.state, host, self.mesh, cfg)
        times["time/step"] = time.perf_counter() - t_step
        out = step_metrics(seen, reward_B, upd_metrics, host, old_logp_np, roll, times, cfg)
        out["optimizer_step"] = float(int(self.state.step))
        out.update(extra)
        self._log_samples(roll.records, roll.tokens_BC, roll.len_B, roll.results)
        return out

    def _log_samples(self, records: list[dict], tokens_BC: np.ndarray, len_B: np.ndarray,
                     results: dict[int, Any]) -> None:
        n = self.cfg.log_samples
        if self.pi != 0 or n <= 0:
            return
        G = self.cfg.grpo.group_size
        append_lines(self.run_dir / "samples.jsonl", [
            records_io.json_text({"step": self.rl_step + 1, "question_id": records[i // G].get("id"),
                                  "response": self.task.decode(tokens_BC[i, : len_B[i]].tolist()),
                                  "reward": float(results[i].reward), "reason": results[i].reason})
            for i in sorted(results)[:n]])

    # --------------------------------------------------------------------------------- run
    def train(self) -> dict[str, Any]:
        """Runs until max_steps or the end of the data; returns a summary."""
        from tqdm import tqdm

        cfg = self.cfg
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
                check_finite(self.rl_step + 1, last, ("train/loss", "train/grad_norm"))
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


def train(cfg: TrainConfig, run_dir: PathLike, task: Any = None, params: Any = None,
          model_cfg: ModelConfig | None = None) -> tuple[GRPOTrainer, dict]:
    """Builds a trainer (resuming RUN if it has checkpoints) and runs it."""
    trainer = GRPOTrainer(cfg, run_dir, task=task, params=params, model_cfg=model_cfg)
    try:
        summary = trainer.train()
    finally:
        trainer.close()
    return trainer, summary
