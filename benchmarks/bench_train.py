"""GRPO training throughput: tokens/s of the update step (and of the old-log-prob pass and the
sampler), with model FLOPs utilisation (MFU) when the device's peak is known.

    python benchmarks/bench_train.py [--preset tiny] [--batch 64] [--prompt 64] [--completion 64]

FLOPs per token (decoder, causal attention): forward 2*N + 2*L*T*D_attn (QK^T and PV, halved for
causality: 2 * 2 * L * T * N_heads * H / 2), backward twice the forward. A GRPO update token costs
forward + backward = 3x forward; the old-log-prob pass 1x forward. MFU = achieved / peak.
Writes benchmarks/results/train.json. CPU timings on a shared 2-core machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import numpy as np

from execverify_jax.model import sharding as shd
from execverify_jax.model.config import ModelConfig
from execverify_jax.model.sampler import Sampler
from execverify_jax.model.strategies import Temperature
from execverify_jax.rl.objective.config import GRPOConfig, OptimConfig
from execverify_jax.rl.infra.optim import build_optimizer
from execverify_jax.rl.infra.train_steps import make_grpo_update, make_logprob_fn, put_batch
from execverify_jax.rl.infra.train_state import create_train_state, state_shardings

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "TPU v5p": 459.0, "TPU v5 lite": 197.0,
                    "TPU v4": 275.0, "TPU v6 lite": 918.0}


def forward_flops_per_token(cfg: ModelConfig, T: int) -> float:
    """2 * params (matmuls) + causal attention score/value FLOPs at context length T."""
    attn = 2 * 2 * cfg.num_layers * T * cfg.num_heads * cfg.head_dim / 2
    return 2.0 * cfg.num_params() + attn


def peak_flops() -> float | None:
    """Peak dense bf16 FLOP/s of all devices, if the device kind is known."""
    kind = jax.devices()[0].device_kind
    for name, tf in PEAK_BF16_TFLOPS.items():
        if name.lower() in kind.lower():
            return tf * 1e12 * jax.device_count()
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--completion", type=int, default=64)
    ap.add_argument("--micro", type=int, default=16)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train.json"))
    a = ap.parse_args()
    over = {}
    if a.preset == "tiny":
        over = dict(vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=4 * a.hidden, num_layers=a.layers,
                    num_heads=max(2, a.hidden // 64), num_kv_heads=max(1, a.hidden // 128), head_dim=64)
    cfg = ModelConfig.preset(a.preset, **over).replace(dtype=a.dtype)
    mesh = shd.make_mesh({"data": -1})
    tx = build_optimizer(OptimConfig(lr=1e-5), 100)
    gd, st = create_train_state(cfg, tx, seed=0, mesh=mesh)
    g = GRPOConfig(group_size=8, prompts_per_step=a.batch // 8, num_minibatches=1, micro_batch_size=a.micro)
    upd = make_grpo_update(gd, tx, g, mesh, state_shardings(cfg, tx, mesh))
    lp = make_logprob_fn(gd, mesh, micro_batch_size=a.micro)
    rng = np.random.default_rng(0)
    B, P, C = a.batch, a.prompt, a.completion
    host = {"tokens_BT": rng.integers(0, cfg.vocab_size, (B, P + C)).astype(np.int32),
            "attn_BT": np.ones((B, P + C), bool), "mask_BC": np.ones((B, C), np.float32),
            "adv_B": rng.normal(size=B).astype(np.float32)}
    b = put_batch(host, mesh)
    b["old_logp_BC"] = lp(st.params, b)
    jax.block_until_ready(b["old_logp_BC"])
    st, m = upd(st, b)
    jax.block_until_ready(m)

    def timed(fn, n):
        t = time.perf_counter()
        for _ in range(n):
            out = fn()
        jax.block_until_ready(out)
        return (time.perf_counter() - t) / n

    state = {"st": st}

    def one_update():
        state["st"], m = upd(state["st"], b)
        return m

    t_upd = timed(one_update, a.iters)
    t_lp = timed(lambda: lp(state["st"].params, b), a.iters)
    tokens = B * (P + C)
    fwd = forward_flops_per_token(cfg, P + C)
    sampler = Sampler(cfg, gd, mesh=mesh, buckets=(P,))
    prompts = [host["tokens_BT"][i, :P].tolist() for i in range(B // 8)]
    sampler.generate(state["st"].params, prompts, C, Temperature(1.0), n=8, seed=0)
    t0 = time.perf_counter()
    sampler.generate(state["st"].params, prompts, C, Temperature(1.0), n=8, seed=1)
    t_gen = time.perf_counter() - t0
    peak = peak_flops()
    res = {
        "device": jax.devices()[0].device_kind, "devices": jax.device_count(), "host": platform.processor() or platform.machine(),
        "model": {"params": cfg.num_params(), "hidden": cfg.hidden_size, "layers": cfg.num_layers, "vocab": cfg.vocab_size,
                  "dtype": cfg.dtype},
        "batch": {"sequences": B, "prompt": P, "completion": C, "micro_batch": a.micro},
        "update_s": t_upd, "update_tokens_per_s": tokens / t_upd,
        "logprob_s": t_lp, "logprob_tokens_per_s": tokens / t_lp,
        "generate_s": t_gen, "generate_new_tokens_per_s": B * C / t_gen,
        "update_tflops_per_s": 3 * fwd * tokens / t_upd / 1e12,
        "mfu_update": (3 * fwd * tokens / t_upd / peak) if peak else None,
        "note": "CPU timings on a shared machine are noisy; MFU only for known accelerators",
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(f"{'metric':<28}{'value':>14}")
    for k in ("update_s", "update_tokens_per_s", "logprob_tokens_per_s", "generate_new_tokens_per_s",
              "update_tflops_per_s", "mfu_update"):
        v = res[k]
        print(f"{k:<28}{(f'{v:.4g}' if v is not None else 'n/a'):>14}")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
