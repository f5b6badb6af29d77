"""What computing SFT logits only at the learned positions saves (`packing.prediction_positions`).

The jitted SFT update (forward + backward + AdamW) at two shapes, logits at every position
(`pred_pos_BC` absent, the step before) vs only where the next token is an assistant token:

  demo   configs/demo_cpu.yaml's policy (D 128, 2 layers, V 2,048, fp32), one batch of 16 rows
         in the 640-token bucket with prompts of ~400-560 tokens and 60-200 target tokens
         (the demo's SFT examples, from its io_mixed/oi rationales), timed on this CPU: median
         of --repeats runs after a compile.
  paper  Qwen2.5-0.5B and Coder-7B shapes (V ~152k) with the paper's SFT split (~350 prompt,
         ~1,000 target tokens) and a demo-like split (400 / 130): matmul FLOPs counted on paper
         (`weight_flops`), no timing.

Prints and writes benchmarks/results/sft_step.json (or --out).

    python benchmarks/bench_sft_step.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jax
import numpy as np
import optax

from execverify_jax.model import sharding as shd
from execverify_jax.model.config import ModelConfig
from execverify_jax.rl.infra.packing import prediction_positions
from execverify_jax.rl.infra.train_state import create_train_state, state_shardings
from execverify_jax.rl.infra.train_steps import make_sft_update, put_batch


def _batch(rng: np.random.Generator, B: int, T: int, V: int, prompt: tuple[int, int],
           target: tuple[int, int]) -> dict[str, np.ndarray]:
    ids = rng.integers(1, V, (B, T)).astype(np.int32)
    p_B = rng.integers(*prompt, B)
    n_B = np.minimum(p_B + rng.integers(*target, B), T)
    pos = np.arange(T)[None]
    return {"ids_BT": ids, "attn_BT": pos < n_B[:, None], "loss_mask_BT": (pos >= p_B[:, None]) & (pos < n_B[:, None])}


def _update(cfg: ModelConfig, mesh, micro: int):
    tx = optax.adamw(1e-3)
    gd, state = create_train_state(cfg, tx, seed=0, mesh=mesh)
    return make_sft_update(gd, tx, mesh, state_shardings(cfg, tx, mesh), micro_batch_size=micro), state


def demo_timing(repeats: int) -> dict:
    cfg = ModelConfig.tiny(vocab_size=2048).replace(hidden_size=128, intermediate_size=384, num_layers=2,
                                                     num_heads=4, num_kv_heads=2, head_dim=32,
                                                     max_position_embeddings=4608)
    mesh = shd.single_device_mesh()
    batch = _batch(np.random.default_rng(0), 16, 640, 2048, (400, 560), (60, 200))
    out = {"rows": 16, "T": 640, "target_tokens": int(batch["loss_mask_BT"].sum()),
           "real_tokens": int(batch["attn_BT"].sum())}
    for name, fed in (("all_positions", batch),
                      ("learned_positions", dict(batch, pred_pos_BC=prediction_positions(batch["loss_mask_BT"])))):
        update, state = _update(cfg, mesh, 16)
        dev = put_batch(fed, mesh)
        state, m = update(state, dev)  # compile
        jax.block_until_ready(m)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            state, m = update(state, dev)
            jax.block_until_ready(m)
            times.append(time.perf_counter() - t0)
        out[name] = {"step_s": statistics.median(times), "loss": float(m["loss"]),
                     "C": int(fed["pred_pos_BC"].shape[1]) if "pred_pos_BC" in fed else 640}
    out["speedup"] = out["all_positions"]["step_s"] / out["learned_positions"]["step_s"]
    return out


def weight_flops(name: str, T: int, prompt: int, target: int) -> dict:
    """Matmul FLOPs on paper (attention scores left out: equal in both variants) of one SFT
    sequence of T positions whose `target` tokens follow a `prompt`: 6 x layer params per
    position (forward + backward), and per logits position 8 x D x V (the chunked logits are
    rematerialised: forward, recompute, backward)."""
    cfg = ModelConfig.preset(name)
    D, F, L, V = cfg.hidden_size, cfg.intermediate_size, cfg.num_layers, cfg.vocab_size
    kv = cfg.num_kv_heads * cfg.head_dim
    layer = D * cfg.num_heads * cfg.head_dim * 2 + D * kv * 2 + 3 * D * F
    body, head = 6 * L * layer, 8 * D * V
    every, learned = T * (body + head), T * body + target * head
    return {"T": T, "prompt": prompt, "target": target, "flops_all_positions": float(every),
            "flops_learned_positions": float(learned), "ratio": learned / every}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results/sft_step.json")
    a = ap.parse_args()
    res = {"paper_flops": {f"{m}/{p}+{t}": weight_flops(m, p + t, p, t)
                           for m in ("qwen2p5_0p5b", "qwen2p5_coder_7b") for p, t in ((350, 1000), (400, 130))}}
    res["demo"] = demo_timing(a.repeats)
    print(json.dumps(res, indent=1))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
