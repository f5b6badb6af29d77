"""The generators of model/generation.py on an evaluation-shaped workload (the demo's held-out eval).

Prompts are long next to the answers there (250-448 prompt tokens, answers ~100 of at most 192),
so admission prefills, not decode steps, dominate the engine's cost. This measures the static
sampler against the continuous engine at several `prefill_batch` values (the engine pads every
admission prefill to that many rows, however few slots are free; the config default is 8).

Workload: the demo's model shape (D 128, L 2, V 2,048, random weights, fp32), 32 prompts x n = 4
samples at T = 1 (the demo's `sampled/*` eval), stop ids = 20 token ids (~1% per step, so lengths
are roughly geometric with a tail to the cap). Each generator runs twice on the same prompts:
`first_s` includes its compiles, `warm_s` does not.

    python benchmarks/bench_generator.py [--quick] [--out benchmarks/results/generator.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from flax import nnx

from execverify_jax.model.config import ModelConfig
from execverify_jax.model.generation import make_generator
from execverify_jax.model.params import create_model
from execverify_jax.model.strategies import Temperature
from execverify_jax.shared_config import SamplingConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="8 prompts instead of 32")
    ap.add_argument("--out", default="benchmarks/results/generator.json")
    args = ap.parse_args()
    cfg = ModelConfig.preset("tiny", vocab_size=2048, hidden_size=128, intermediate_size=384, num_layers=2,
                             num_heads=4, num_kv_heads=2, head_dim=32, max_position_embeddings=4608,
                             rope_theta=10000.0, dtype="float32")
    graphdef, params = nnx.split(create_model(cfg, seed=0))
    rng = np.random.RandomState(0)
    prompts = [list(rng.randint(23, 2048, rng.randint(250, 449))) for _ in range(8 if args.quick else 32)]
    n, max_new, stops = 4, 192, tuple(range(3, 23))
    runs = [("static", SamplingConfig(engine="static"))] + [
        (f"continuous, prefill_batch {pb}", SamplingConfig(engine="continuous", prefill_batch=pb)) for pb in (64, 16, 8)]
    results = []
    for name, knobs in runs:
        gen = make_generator(cfg, graphdef, knobs, buckets=(256, 448, 4096))
        times, out = [], None
        for _ in range(2):
            if hasattr(gen, "stats"):
                gen.stats = type(gen.stats)()
            t0 = time.perf_counter()
            out = gen.generate(params, prompts, max_new, Temperature(1.0), stop_ids=stops, n=n, seed=7)
            times.append(time.perf_counter() - t0)
        row = {"generator": name, "first_s": round(times[0], 2), "warm_s": round(times[1], 2),
               "mean_len": float(out.lengths_B.mean())}
        if hasattr(gen, "stats"):
            st = gen.stats
            row.update(admit_calls=st.admit_calls, run_calls=st.run_calls, decode_steps=st.decode_steps,
                       useful_row_step_fraction=round(st.useful_fraction, 3))
        print(json.dumps(row), flush=True)
        results.append(row)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "workload": {"prompts": len(prompts), "n": n, "max_new_tokens": max_new, "prompt_tokens": "250-448",
                     "model": "D128 L2 V2048 fp32 random", "slots": 64, "steps_per_call": 16, "block": 128},
        "machine": platform.platform(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
