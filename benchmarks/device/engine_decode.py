"""Rollout-engine decode tokens/s vs the HBM-bandwidth bound (issue 13), one accelerator.

For each shape (`--shapes`: Qwen2.5-1.5B and Qwen2.5-Coder-7B widths at full depth, 28 layers),
random bf16 weights, `--slots` rows of `--prompt` random tokens, every row generating exactly its
cap (no stop id), sampled at T = 1 through `Engine.generate`, the trainer's rollout path:

  decode tokens/s = rows x (N_long - 1) / time spent in the engine's decode calls

(each call timed to completion inside `generate`; the first token of a row comes from its
admission prefill), the fastest of `--repeats` runs after a warm-up (compiles excluded). Every decode step reads all weights once plus the
live K/V of every row, so over the timed interval

  bound = rows / ((weight_bytes + rows x mean_context x kv_bytes_per_token) / HBM bandwidth)

with mean_context the rows' mean length over the decode steps. The engine
attends over the longest live row rounded up to `--block` (not ragged per row), so it reads a
little more K/V than the bound counts. `--static` also times the static `Sampler` the same way
(same prompts) for a same-run ratio; its decode time is t(N_long) - t(N_short), one
while_loop per call.

    python benchmarks/device/engine_decode.py --out $OUT/engine_decode.json
    python benchmarks/device/engine_decode.py --tiny      # CPU smoke test of this script
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.device.check import HBM_TBPS, lookup, write_result  # noqa: E402
from execverify_jax.model import sharding as shd  # noqa: E402
from execverify_jax.model.config import ModelConfig  # noqa: E402
from execverify_jax.model.engine import Engine  # noqa: E402
from execverify_jax.model.params import create_model  # noqa: E402
from execverify_jax.model.sampler import Sampler  # noqa: E402
from execverify_jax.model.strategies import Temperature  # noqa: E402

def shape_config(name: str) -> ModelConfig:
    numerics = dict(dtype="bfloat16", param_dtype="bfloat16", remat=False)
    if name == "1p5b":
        return ModelConfig.qwen2p5_1p5b(**numerics)
    if name == "7b":
        return ModelConfig.qwen2p5_coder_7b(**numerics)
    if name == "tiny":
        return ModelConfig.tiny(**numerics)
    raise ValueError(f"unknown shape {name!r}; known: 1p5b, 7b, tiny")


def fastest(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(name: str, a, dev) -> dict:
    cfg = shape_config(name)
    mesh = shd.single_device_mesh()
    t0 = time.perf_counter()
    graphdef, params = nnx.split(create_model(cfg, seed=0))
    jax.block_until_ready(params)
    res: dict = {"shape": name, "params": cfg.num_params(), "init_s": round(time.perf_counter() - t0, 1)}
    rng = np.random.default_rng(0)
    B, P = a.slots, a.prompt
    prompts = [rng.integers(1, cfg.vocab_size, P).tolist() for _ in range(B)]
    n_long, n_short = a.new
    weight_bytes = sum(x.nbytes for x in jax.tree.leaves(params))
    kv_per_token = cfg.num_layers * 2 * cfg.num_kv_heads * cfg.head_dim * 2  # bf16 K and V
    mean_ctx = P + n_long / 2
    bw = lookup(HBM_TBPS, dev.device_kind)
    bound = B / ((weight_bytes + B * mean_ctx * kv_per_token) / (bw * 1e12)) if bw else None
    res.update(rows=B, prompt=P, new_tokens=[n_long, n_short], weight_gb=round(weight_bytes / 1e9, 3),
               mean_kv_gb=round(B * mean_ctx * kv_per_token / 1e9, 3), hbm_tbps=bw,
               bound_tokens_per_s=round(bound, 1) if bound else None)

    def run(gen, n: int, seed: int = 1):
        out = gen.generate(params, prompts, n, Temperature(1.0), seed=seed)
        assert int(out.lengths_B.min()) == n, (n, out.lengths_B.min())  # no stop id: every row runs to n
        return out

    # Engine: the decode calls (engine_run) timed inside generate, each to completion; the
    # first token of every row comes from its admission (prefill), so decode makes rows x (N - 1).
    eng = Engine(cfg, graphdef, slots=B, steps_per_call=a.steps_per_call, block=a.block, mesh=mesh, buckets=(P,))
    orig_run, spent = eng._run, [0.0]

    def timed_run(*args, **kw):
        t = time.perf_counter()
        out = jax.block_until_ready(orig_run(*args, **kw))
        spent[0] += time.perf_counter() - t
        return out

    eng._run = timed_run
    t0 = time.perf_counter()
    run(eng, n_long, 0)
    warm = time.perf_counter() - t0
    best_total, best_decode = float("inf"), float("inf")
    for _ in range(a.repeats):
        eng.stats, spent[0] = type(eng.stats)(), 0.0
        t0 = time.perf_counter()
        run(eng, n_long)
        best_total = min(best_total, time.perf_counter() - t0)
        best_decode = min(best_decode, spent[0])
    tok_s = B * (n_long - 1) / best_decode
    res["engine"] = {"warmup_s": round(warm, 1), "generate_s": round(best_total, 3),
                     "decode_s": round(best_decode, 3), "decode_tokens_per_s": round(tok_s, 1),
                     "ms_per_step": round(best_decode / (n_long - 1) * 1e3, 3),
                     "fraction_of_bound": round(tok_s / bound, 4) if bound else None,
                     "engine_stats": dict(vars(eng.stats))}
    print(json.dumps({name: {"engine": res["engine"]}}), flush=True)
    del eng
    if name in a.static.split(","):
        # Static Sampler: decode time = t(N_long) - t(N_short) (one while_loop per call).
        smp = Sampler(cfg, graphdef, mesh=mesh, buckets=(P,))
        t0 = time.perf_counter()
        run(smp, n_long, 0)
        run(smp, n_short, 0)
        warm = time.perf_counter() - t0
        t_long = fastest(lambda: run(smp, n_long), a.repeats)
        t_short = fastest(lambda: run(smp, n_short), a.repeats)
        st = B * (n_long - n_short) / (t_long - t_short) if t_long > t_short else None
        res["static"] = {"warmup_s": round(warm, 1), "t_long_s": round(t_long, 3), "t_short_s": round(t_short, 3),
                         "decode_tokens_per_s": round(st, 1) if st else None,
                         "fraction_of_bound": round(st / bound, 4) if (st and bound) else None}
        if st:
            res["engine_vs_static_decode"] = round(tok_s / st, 3)
        print(json.dumps({name: {"static": res["static"]}}), flush=True)
    return res


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="1p5b,7b")
    ap.add_argument("--slots", type=int, default=64)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", default="256,64", help="N_long,N_short new tokens per row")
    ap.add_argument("--steps-per-call", type=int, default=16)
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--static", default="", help="shapes whose static Sampler is timed too (comma list)")
    ap.add_argument("--tiny", action="store_true", help="tiny shape, small sizes (CPU smoke test)")
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "engine_decode.json"))
    a = ap.parse_args()
    if a.tiny:
        a.shapes, a.slots, a.prompt, a.new, a.block, a.static = "tiny", 8, 16, "24,8", 16, "tiny"
    a.new = [int(x) for x in a.new.split(",")]
    dev = jax.devices()[0]
    res: dict = {"device": dev.device_kind, "platform": dev.platform, "jax": jax.__version__, "shapes": {}}
    for name in a.shapes.split(","):
        try:
            res["shapes"][name] = measure(name, a, dev)
        except Exception as exc:  # one shape failing (e.g. out of memory) still reports the others
            res["shapes"][name] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            print(json.dumps({name: res["shapes"][name]}), flush=True)
        write_result(a.out, res, echo=False)  # after every shape: a later one may time out
        jax.clear_caches()
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
