"""Rollout engine (continuous batching, model/engine.py) vs the static Sampler, one GRPO rollout.

Both generate G samples of each of N random prompts with the same random-weight model on CPU.
Response lengths: a test-only strategy (`Hazard`) samples at temperature 1 and, with
probability `1/mean` at each step, emits the stop id instead, so lengths are geometric
(mean ~ `--mean-len`, a long tail up to the cap `--max-new`, P(cap) = exp(-cap/mean)). The
static side runs like today's trainer: sequential calls of `--rows-per-call` rows, each until
its longest row stops or reaches the cap. The engine runs all N x G rows through `--slots` slots.

Reported (benchmarks/results/rollout.json or --out):
  useful_row_step_fraction: decode row-steps that produce a kept token / decode row-steps run
    (engine: counted by the engine; static: from its outputs, sum(len - 1) / rows x (max len - 1)
    per call, which is exactly what its while_loop runs);
  speedup_vs_static: wall time of the static rollout / the engine's, both after a warm-up run
    (compiles excluded), same prompts, same process.
    python benchmarks/bench_rollout.py --quick     # tiny shape, < 10 min on 2 cores
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from execverify_jax.model.config import ModelConfig
from execverify_jax.model.engine import Engine
from execverify_jax.model.params import create_model
from execverify_jax.model.sampler import Sampler

TINY = dict(vocab_size=4096, hidden_size=256, intermediate_size=1024, num_layers=4, num_heads=4,
            num_kv_heads=2, head_dim=64, max_position_embeddings=8192)
STOP_ID = 1


@dataclasses.dataclass(frozen=True)
class Hazard:
    """Temperature-1 sampling that emits STOP_ID with probability `p` per step (benchmark only)."""

    p: float

    def select(self, logits_BV, key):
        k1, k2 = jax.random.split(key)
        z_BV = logits_BV.astype(jnp.float32).at[:, STOP_ID].set(-1e30)  # stops only via the hazard
        tok_B = jax.random.categorical(k1, z_BV, axis=-1).astype(jnp.int32)
        tok_B = jnp.where(jax.random.uniform(k2, tok_B.shape) < self.p, STOP_ID, tok_B)
        logp_B = jnp.take_along_axis(jax.nn.log_softmax(logits_BV.astype(jnp.float32)), tok_B[:, None], -1)[:, 0]
        return tok_B, logp_B


def static_rollout(sampler, params, prompts, args, strategy):
    """Like RolloutGenerator's static path: chunks of rows_per_call rows, one call each."""
    per = max(1, args.rows_per_call // args.group)
    lens, row_steps, useful = [], 0, 0
    for c, start in enumerate(range(0, len(prompts), per)):
        out = sampler.generate(params, prompts[start:start + per], args.max_new, strategy,
                               stop_ids=(STOP_ID,), n=args.group, seed=c)
        L = out.lengths_B
        row_steps += len(L) * int(L.max() - 1)
        useful += int((L - 1).sum())
        lens.extend(L.tolist())
    return np.asarray(lens), row_steps, useful


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny shape, small rollout (< 10 min on 2 cores)")
    ap.add_argument("--model", choices=["tiny", "qwen2p5_0p5b"], default="tiny")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=48)
    ap.add_argument("--max-new", type=int, default=512)
    ap.add_argument("--mean-len", type=float, default=128)
    ap.add_argument("--rows-per-call", type=int, default=128)
    ap.add_argument("--slots", type=int, default=32)
    ap.add_argument("--steps-per-call", type=int, default=8)
    ap.add_argument("--block", type=int, default=64)
    ap.add_argument("--prefill-batch", type=int, default=8)
    ap.add_argument("--out", default="benchmarks/results/rollout.json")
    args = ap.parse_args()
    if args.quick:
        args.prompts, args.max_new, args.mean_len, args.rows_per_call = 32, 256, 64, 128
        args.slots = 16
    cfg = (ModelConfig(**TINY) if args.model == "tiny" else ModelConfig.qwen2p5_0p5b())
    model = create_model(cfg, seed=0)
    graphdef, params = nnx.split(model)
    rng = np.random.default_rng(0)
    prompts = [rng.integers(2, cfg.vocab_size, rng.integers(args.prompt_len // 2, args.prompt_len + 1)).tolist()
               for _ in range(args.prompts)]
    strategy = Hazard(1.0 / args.mean_len)
    buckets = (args.prompt_len,)
    sampler = Sampler(cfg, graphdef, buckets=buckets)
    engine = Engine(cfg, graphdef, slots=args.slots, steps_per_call=args.steps_per_call, block=args.block,
                    prefill_batch=args.prefill_batch, buckets=buckets)
    res = {"machine": f"{platform.machine()}, {os.cpu_count()} cores (shared with other jobs)",
           "args": vars(args)}
    for name in ("warmup", "timed"):
        t0 = time.perf_counter()
        s_len, s_rows, s_useful = static_rollout(sampler, params, prompts, args, strategy)
        t_static = time.perf_counter() - t0
        engine.stats = type(engine.stats)()
        t0 = time.perf_counter()
        out = engine.generate(params, prompts, args.max_new, strategy, stop_ids=(STOP_ID,), n=args.group, seed=0)
        t_engine = time.perf_counter() - t0
        print(f"{name}: static {t_static:.1f}s engine {t_engine:.1f}s {engine.stats}", flush=True)
    st = engine.stats
    res.update(
        rows=int(len(out.lengths_B)), mean_len=float(out.lengths_B.mean()), max_len=int(out.lengths_B.max()),
        capped_frac=float((~out.stopped_B).mean()), static_mean_len=float(s_len.mean()),
        useful_row_step_fraction=st.useful_fraction, static_useful_row_step_fraction=s_useful / max(s_rows, 1),
        engine_decode_steps=st.decode_steps, engine_run_calls=st.run_calls, engine_admit_calls=st.admit_calls,
        static_seconds=t_static, engine_seconds=t_engine, speedup_vs_static=t_static / t_engine)
    print(json.dumps(res, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
