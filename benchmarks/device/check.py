"""One GPU device check (issue 12), run by benchmarks/device/check.sh; <= ~6 minutes on an H100/H200.

  1. The 7B-shaped GRPO update (Qwen2.5-Coder-7B widths, vocab and heads; `--layers` decoder
     layers, default 4, so it fits one device with fp32 params and Adam moments) on a 1-device
     mesh: XLA's compile-time peak estimate (`memory_analysis`) next to the measured peak
     (`memory_stats()["peak_bytes_in_use"]`), and the update's MFU (model FLOPs: 3x forward per
     token, the remat recompute not counted) against the device's dense bf16 peak.
  2. Sampler decode tokens/s on a bf16 copy, as a fraction of the HBM-bandwidth bound: every
     decode step reads all weights once plus the live KV cache, so
     bound = B / ((weight_bytes + mean_kv_bytes) / bandwidth).
Writes $OUT/device_check.json (or --out) and prints it.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.bench_train import PEAK_BF16_TFLOPS, forward_flops_per_token  # noqa: E402
from execverify_jax.model import sharding as shd  # noqa: E402
from execverify_jax.model.config import ModelConfig  # noqa: E402
from execverify_jax.model.params import cast_state  # noqa: E402
from execverify_jax.model.sampler import Sampler  # noqa: E402
from execverify_jax.model.strategies import Temperature  # noqa: E402
from execverify_jax.rl.infra.optim import build_optimizer  # noqa: E402
from execverify_jax.rl.infra.train_state import create_train_state, state_shardings  # noqa: E402
from execverify_jax.rl.infra.train_steps import make_grpo_update, put_batch  # noqa: E402
from execverify_jax.rl.objective.config import GRPOConfig, OptimConfig  # noqa: E402

# HBM bandwidth (TB/s) by device kind (vendor datasheets: H100 SXM 3.35, H200 4.8, A100 80GB 2.0).
HBM_TBPS = {"H200": 4.8, "H100": 3.35, "A100": 2.0, "TPU v5p": 2.76, "TPU v5 lite": 0.82}


def lookup(table: dict[str, float], kind: str) -> float | None:
    return next((v for k, v in table.items() if k.lower() in kind.lower()), None)


def write_result(path: str | Path, res: dict, echo: bool = True) -> None:
    """Writes one device script's result JSON (the only file it leaves); `echo` prints it too."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(res, indent=2) + "\n")
    if echo:
        print(json.dumps(res, indent=2))


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=16, help="GRPO mini-batch rows")
    ap.add_argument("--micro", type=int, default=4)
    ap.add_argument("--prompt", type=int, default=1024)
    ap.add_argument("--completion", type=int, default=1024)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--decode-batch", type=int, default=64)
    ap.add_argument("--decode-tokens", type=int, default=256)
    ap.add_argument("--tiny", action="store_true", help="tiny model (a CPU smoke test of this script)")
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "device_check.json"))
    a = ap.parse_args()
    dev = jax.devices()[0]
    kind = dev.device_kind
    res: dict = {"device": kind, "platform": dev.platform, "jax": jax.__version__}
    preset = ModelConfig.tiny if a.tiny else ModelConfig.qwen2p5_coder_7b
    cfg = preset(num_layers=a.layers, dtype="bfloat16", remat=True)
    res["model"] = {"layers": a.layers, "params": cfg.num_params(), "shape": "tiny" if a.tiny else "qwen2p5_coder_7b"}
    mesh = shd.single_device_mesh()

    # ---- 1. GRPO update: compile-time estimate vs measured peak, MFU
    tx = build_optimizer(OptimConfig(lr=1e-6, grad_clip=1.0), 100)
    gd, st = create_train_state(cfg, tx, seed=0, mesh=mesh)
    g = GRPOConfig(group_size=8, prompts_per_step=max(1, a.batch // 8), num_minibatches=1, micro_batch_size=a.micro)
    upd = make_grpo_update(gd, tx, g, mesh, state_shardings(cfg, tx, mesh), chunk=512)
    B, P, C = a.batch, a.prompt, a.completion
    rng = np.random.default_rng(0)
    host = {"tokens_BT": rng.integers(0, cfg.vocab_size, (B, P + C)).astype(np.int32),
            "attn_BT": np.ones((B, P + C), bool), "mask_BC": np.ones((B, C), np.float32),
            "adv_B": rng.normal(size=B).astype(np.float32),
            "old_logp_BC": np.full((B, C), -2.0, np.float32)}
    batch = put_batch(host, mesh)
    t0 = time.perf_counter()
    compiled = upd.lower(st, batch).compile()
    ma = compiled.memory_analysis()
    est = ma.argument_size_in_bytes + ma.output_size_in_bytes - ma.alias_size_in_bytes + ma.temp_size_in_bytes
    res["update_compile_s"] = round(time.perf_counter() - t0, 1)
    st, m = upd(st, batch)
    jax.block_until_ready(m)
    t0 = time.perf_counter()
    for _ in range(a.iters):
        st, m = upd(st, batch)
    jax.block_until_ready(m)
    t_upd = (time.perf_counter() - t0) / a.iters
    stats = dev.memory_stats() or {}
    flops = 3 * forward_flops_per_token(cfg, P + C) * B * (P + C)
    peak_tf = lookup(PEAK_BF16_TFLOPS, kind)
    res["grpo_update"] = {
        "batch": {"rows": B, "micro_batch": a.micro, "prompt": P, "completion": C},
        "compile_estimate_gb": round(est / 1e9, 3), "temp_estimate_gb": round(ma.temp_size_in_bytes / 1e9, 3),
        "measured_peak_gb": round(stats.get("peak_bytes_in_use", 0) / 1e9, 3) if stats else None,
        "step_s": round(t_upd, 4), "tflops_per_s": round(flops / t_upd / 1e12, 2),
        "mfu": round(flops / t_upd / (peak_tf * 1e12), 4) if peak_tf else None,
        "loss_finite": bool(np.isfinite(float(m["loss"]))),
    }
    print(json.dumps(res["grpo_update"]), flush=True)

    # ---- 2. decode tokens/s vs the HBM-bandwidth bound (bf16 copy, training state released)
    params = cast_state(st.params, "bfloat16")
    del st
    scfg = cfg.replace(param_dtype="bfloat16")
    sampler = Sampler(scfg, gd, mesh=mesh, buckets=(128,))
    Bd, N = a.decode_batch, a.decode_tokens
    prompts = [rng.integers(0, cfg.vocab_size, 128).tolist() for _ in range(Bd)]
    # Compile both shapes first: the cache length is prompt bucket + new tokens, so N and 1 new
    # tokens are two compiles (before stop 22 the timed calls included them: 4.0 s vs 4.1 s on H200).
    sampler.generate(params, prompts, N, Temperature(1.0), seed=0)
    sampler.generate(params, prompts, 1, Temperature(1.0), seed=0)
    t0 = time.perf_counter()
    out = sampler.generate(params, prompts, N, Temperature(1.0), seed=1)
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    sampler.generate(params, prompts, 1, Temperature(1.0), seed=2)  # prefill + one token
    t_pre = time.perf_counter() - t0
    steps = int(out.lengths_B.max())
    weight_bytes = sum(x.nbytes for x in jax.tree.leaves(params))
    kv_per_token = cfg.num_layers * 2 * cfg.num_kv_heads * cfg.head_dim * 2  # bf16 K and V
    mean_kv = Bd * (128 + steps / 2) * kv_per_token
    bw = lookup(HBM_TBPS, kind)
    # decode-only time: N tokens minus (prefill + 1 token); None when timing noise swamps it
    tok_s = Bd * (steps - 1) / (t_gen - t_pre) if t_gen > 1.5 * t_pre else None
    bound = Bd / ((weight_bytes + mean_kv) / (bw * 1e12)) if bw else None
    res["decode"] = {"batch": Bd, "new_tokens": steps, "generate_s": round(t_gen, 3), "prefill_s": round(t_pre, 3),
                     "tokens_per_s": round(tok_s, 1) if tok_s else None,
                     "hbm_tbps": bw, "bound_tokens_per_s": round(bound, 1) if bound else None,
                     "fraction_of_bound": round(tok_s / bound, 4) if bound and tok_s else None,
                     "weight_gb": round(weight_bytes / 1e9, 3), "mean_kv_gb": round(mean_kv / 1e9, 3)}
    print(json.dumps(res["decode"]), flush=True)
    write_result(a.out, res)
    return res


if __name__ == "__main__":
    main()
