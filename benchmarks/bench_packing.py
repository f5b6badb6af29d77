"""What does the padded GRPO update compute for nothing, and what does sequence packing save?

Part 1 (token counts, deterministic): paper-shaped GRPO steps (configs/stage1_qwen2p5_coder_7b:
128 prompts x G 8, 2 mini-batches, micro-batch 8, prompt buckets 512/1024/2048, completion buckets
512..4096). Prompt lengths are log-normal around 350 tokens capped at 2048, response lengths
log-normal around 600 capped at 4096 (the long tail of the synthesized data). For each
mini-batch, train_padding_ratio = tokens computed by the update / real tokens:
  padded  rows x (prompt bucket of the longest prompt + completion bucket of the longest reply)
  packed  buffers x pack_len (rl/infra/packing.py first-fit-decreasing; buffers rounded up to
          a multiple of the micro-batch)
We also report the attention score pairs (causal, within a row/segment) computed vs needed.

Part 2 (timing, CPU, noisy on a shared machine): the jitted GRPO update (forward + backward +
SGD) of the tiny test model on a scaled-down batch (the same distributions / 32), padded vs
packed, median of a few runs after compiling. Loss equality is also checked.

Writes benchmarks/results/packing.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from execverify_jax.buckets import bucket_for  # noqa: E402
from execverify_jax.model import sharding as shd  # noqa: E402
from execverify_jax.model.config import ModelConfig  # noqa: E402
from execverify_jax.rl.infra.packing import pack_grpo  # noqa: E402
from execverify_jax.rl.infra.train_state import create_train_state, state_shardings  # noqa: E402
from execverify_jax.rl.infra.train_steps import make_grpo_update, put_batch  # noqa: E402
from execverify_jax.rl.objective.config import GRPOConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def synth_host(rng, prompts: int, G: int, p_med: float, p_cap: int, c_med: float, c_cap: int,
               p_buckets, c_buckets, vocab: int) -> dict[str, np.ndarray]:
    """A padded GRPO mini-batch exactly as rl/grpo/update.update_batch lays it out."""
    plen = np.clip(rng.lognormal(np.log(p_med), 0.6, prompts).astype(int), 8, p_cap)
    clen = np.clip(rng.lognormal(np.log(c_med), 0.9, prompts * G).astype(int), 1, c_cap)
    P = bucket_for(int(plen.max()), p_buckets, over=int(plen.max()))
    C = min(bucket_for(int(clen.max()), c_buckets, over=c_cap), c_cap)
    B = prompts * G
    rep = np.repeat(plen, G)
    attn_p = np.arange(P)[None] >= (P - rep)[:, None]
    mask = (np.arange(C)[None] < clen[:, None]).astype(np.float32)
    return {"tokens_BT": rng.integers(1, vocab, (B, P + C)).astype(np.int32),
            "attn_BT": np.concatenate([attn_p, mask > 0], 1), "mask_BC": mask,
            "adv_B": rng.normal(size=B).astype(np.float32),
            "old_logp_BC": (rng.normal(size=(B, C)) * 0.1 - 3.0).astype(np.float32)}


def ratios(host: dict, pack_len: int, micro: int) -> dict:
    real = int(host["attn_BT"].sum())
    pk, layout = pack_grpo(host, pack_len, micro)
    n_R = layout.length_R.astype(np.float64)
    T = host["tokens_BT"].shape[1]
    return {"rows": int(host["tokens_BT"].shape[0]), "padded_T": int(T), "real_tokens": real,
            "buffers": int(pk["tokens_BT"].shape[0]),
            "train_padding_ratio_padded": host["tokens_BT"].size / real,
            "train_padding_ratio_packed": pk["tokens_BT"].size / real,
            "attention_pairs_ratio_padded": host["tokens_BT"].shape[0] * T * (T + 1) / 2 / float((n_R * (n_R + 1) / 2).sum()),
            "attention_pairs_ratio_packed": pk["tokens_BT"].shape[0] * pack_len * (pack_len + 1) / 2
            / float((n_R * (n_R + 1) / 2).sum())}


def token_counts(args) -> dict:
    rng = np.random.default_rng(0)
    per_mb = args.prompts // args.minibatches
    rows = []
    for _ in range(args.steps * args.minibatches):
        host = synth_host(rng, per_mb, args.group, 350, 2048, 600, 4096, (512, 1024, 2048),
                          (512, 1024, 2048, 4096), 1000)
        rows.append(ratios(host, args.pack_len, args.micro))
    keys = [k for k in rows[0] if k.endswith("ratio_padded") or k.endswith("ratio_packed")]
    summary = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    return {"pack_len": args.pack_len, "minibatches": rows, "mean": summary}


def timing(args) -> dict:
    rng = np.random.default_rng(1)
    cfg = ModelConfig.tiny(vocab_size=64)
    prompts, G, micro = (4, 4, 4) if args.quick else (8, 8, 8)
    host = synth_host(rng, prompts, G, 11, 64, 19, 128, (16, 32, 64), (16, 32, 64, 128), 64)
    pack_len = 192
    g = GRPOConfig(group_size=G, prompts_per_step=prompts, num_minibatches=1, micro_batch_size=micro)
    mesh = shd.single_device_mesh()
    out = {"model": "tiny (D=64, L=2, V=64), fp32, CPU", "pack_len": pack_len}
    out.update(ratios(host, pack_len, micro))
    for name, packed in (("padded", False), ("packed", True)):
        tx = optax.sgd(1e-3)
        gd, st = create_train_state(cfg, tx, seed=0, mesh=mesh)
        upd = make_grpo_update(gd, tx, g, mesh, state_shardings(cfg, tx, mesh), packed=packed)
        batch = pack_grpo(host, pack_len, micro)[0] if packed else host
        dev = put_batch(batch, mesh)
        t0 = time.perf_counter()
        st2, met = upd(st, dev)
        jax.block_until_ready(met)
        compile_s = time.perf_counter() - t0
        times = []
        for _ in range(2 if args.quick else 5):
            _, st = create_train_state(cfg, tx, seed=0, mesh=mesh)
            t0 = time.perf_counter()
            _, met = upd(st, put_batch(batch, mesh))
            jax.block_until_ready(met)
            times.append(time.perf_counter() - t0)
        out[name] = {"first_call_s": compile_s, "update_s_median": float(np.median(times)),
                     "loss": float(met["loss"]), "shape": list(batch["tokens_BT"].shape)}
    out["loss_abs_diff"] = abs(out["packed"]["loss"] - out["padded"]["loss"])
    out["speedup"] = out["padded"]["update_s_median"] / out["packed"]["update_s_median"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps, smaller timing batch")
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/packing.json"))
    ap.add_argument("--prompts", type=int, default=128)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--minibatches", type=int, default=2)
    ap.add_argument("--micro", type=int, default=8)
    ap.add_argument("--pack-len", type=int, default=8192)
    ap.add_argument("--steps", type=int, default=None)
    args = ap.parse_args()
    if args.steps is None:
        args.steps = 2 if args.quick else 10
    res = {"quick": args.quick, "token_counts": token_counts(args), "timing": timing(args),
           "machine": "shared 2-core CPU, loaded by other agents' jobs"}
    print(json.dumps({"mean": res["token_counts"]["mean"],
                      "timing": {k: v for k, v in res["timing"].items() if k != "minibatches"}}, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
