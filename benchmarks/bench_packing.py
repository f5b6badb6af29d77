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

Part 1 also counts, per mini-batch, (a) the positions whose logits the update computes per real
completion token: padded rows x C, packed before the completion slab buffers x L (every
position), packed now buffers x slab capacity (rl/infra/packing.completion_slab); and (b) the
(query block, key block) pairs that model/attention.attend_chunked executes on the packed
buffers (its own `block_schedule`, chunk --attn-chunk) vs the causal triangle and the full square,
for one buffer per schedule (what a device holding one buffer of the micro-batch needs) and for
the schedule of a whole micro-batch (what the jitted step decides: one schedule for the batch).

Part 2 (timing, CPU, noisy on a shared machine): the jitted GRPO update (forward + backward +
SGD) of the tiny test model on a scaled-down batch (the same distributions / 32), padded vs
packed, median of a few runs after compiling. Loss equality is also checked.
Also timed: attend_chunked forward + backward on packed buffers (scaled to a quarter) with
block skipping vs every causal block (`attention_timing`).

Part 3 (compile only, `--compiled 0p5b,7b`): the packed GRPO update of a Qwen2.5-0.5B- or
Coder-7B-shaped model (bf16, remat) on 8 fake CPU devices (fsdp 8), one micro-batch of 8 buffers
of pack_len tokens, from jax.ShapeDtypeStruct inputs: `cost_analysis()` FLOPs / bytes and
`memory_analysis()` with logits at every buffer position (slab capacity = pack_len, what the
packed step did before) vs at the slab (capacity: the median of part 1's mini-batches). XLA
counts a loop body once, so FLOPs are read from unrolled 1- and 2-layer compiles with one logits
slab (no loop around the logits; full-square "xla" attention) and extrapolated to full depth;
memory from the real layout (scanned layers, chunked attention, logits in chunks of 1024). The
step's FLOPs per device before / after both changes combine these with an analytic attention
term (16 T^2 N H per buffer and layer: forward, remat recompute, backward) scaled by part 1's
executed-block fractions.

Writes benchmarks/results/packing.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "--compiled" in sys.argv:  # fake devices must exist before jax initialises
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from execverify_jax.buckets import bucket_for  # noqa: E402
from execverify_jax.model import attention as attn  # noqa: E402
from execverify_jax.model import sharding as shd  # noqa: E402
from execverify_jax.model.config import ModelConfig  # noqa: E402
from execverify_jax.rl.infra.packing import completion_capacity, first_fit_decreasing, pack_grpo  # noqa: E402
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


def block_counts(seg_BT: np.ndarray, c: int, micro: int) -> dict:
    """Key blocks attend_chunked executes on these packed buffers (its own block_schedule), per
    buffer and per micro-batch schedule, against the causal triangle and the full square."""
    n = -(-seg_BT.shape[1] // c)
    seg_BT = np.pad(seg_BT, ((0, 0), (0, n * c - seg_BT.shape[1])))
    used = seg_BT[:, 0] > 0  # all-padding buffers (rounding up to the micro-batch) still run
    per_buffer = [int(np.asarray(attn.block_schedule(jnp.asarray(s[None]), c)).sum()) for s in seg_BT]
    # Micro-batches are cut strided (split_microbatches(strided=True)): rows m, m + M, ...
    M = len(seg_BT) // micro
    per_micro = [int(np.asarray(attn.block_schedule(jnp.asarray(seg_BT[m::M]), c)).sum()) * micro
                 for m in range(M)]
    tri, sq = n * (n + 1) // 2, n * n
    return {"chunk": c, "blocks_per_buffer": n, "causal_blocks": tri, "square_blocks": sq,
            "blocks_buffer_schedule_mean": float(np.mean(per_buffer)),
            "blocks_buffer_schedule_mean_used": float(np.mean(np.asarray(per_buffer)[used])),
            "blocks_microbatch_schedule_mean": float(np.sum(per_micro) / len(seg_BT)),
            "vs_causal_buffer_schedule": float(np.mean(per_buffer)) / tri,
            "vs_causal_microbatch_schedule": float(np.sum(per_micro) / len(seg_BT)) / tri,
            "vs_square_buffer_schedule": float(np.mean(per_buffer)) / sq}


def ratios(host: dict, pack_len: int, micro: int, attn_chunk: int | None = None) -> dict:
    real = int(host["attn_BT"].sum())
    pk, layout = pack_grpo(host, pack_len, micro)
    n_R = layout.length_R.astype(np.float64)
    T = host["tokens_BT"].shape[1]
    C = host["mask_BC"].shape[1]
    real_c = int(host["attn_BT"][:, T - C:].sum())
    nb, cap = pk["target_pos_BC"].shape
    out = {"rows": int(host["tokens_BT"].shape[0]), "padded_T": int(T), "real_tokens": real,
           "buffers": int(nb), "real_completion_tokens": real_c, "slab_capacity": int(cap),
           "max_completion_tokens_per_buffer": int((pk["target_pos_BC"] > 0).sum(1).max()),
           "logits_ratio_padded": host["tokens_BT"].shape[0] * C / real_c,
           "logits_ratio_packed_every_position": nb * pack_len / real_c,
           "logits_ratio_packed": nb * cap / real_c}
    # The slab plain first-fit-decreasing would give (no spreading of completion tokens).
    lengths_R, comp_R = host["attn_BT"].sum(1), host["attn_BT"][:, T - C:].sum(1)
    b_R, _, _ = first_fit_decreasing(lengths_R, pack_len)
    out["slab_capacity_plain_ffd"] = completion_capacity(int(np.bincount(b_R, weights=comp_R).max()), pack_len)
    out["logits_ratio_packed_plain_ffd"] = nb * out["slab_capacity_plain_ffd"] / real_c
    if attn_chunk:
        blk = out["attention_blocks"] = block_counts(pk["segment_ids_BT"], attn_chunk, micro)
        # Score pairs of the executed blocks (c^2 each) / pairs needed (causal, within a segment).
        out["attention_pairs_ratio_packed_skipping"] = (nb * blk["blocks_buffer_schedule_mean"] * attn_chunk ** 2
                                                        / float((n_R * (n_R + 1) / 2).sum()))
    out.update({"buffers": int(pk["tokens_BT"].shape[0]),
            "train_padding_ratio_padded": host["tokens_BT"].size / real,
            "train_padding_ratio_packed": pk["tokens_BT"].size / real,
            "attention_pairs_ratio_padded": host["tokens_BT"].shape[0] * T * (T + 1) / 2 / float((n_R * (n_R + 1) / 2).sum()),
            "attention_pairs_ratio_packed": pk["tokens_BT"].shape[0] * pack_len * (pack_len + 1) / 2
            / float((n_R * (n_R + 1) / 2).sum())})
    return out


def attention_timing(args, quick: bool) -> dict:
    """Wall time (CPU, noisy) of attend_chunked forward + backward on packed buffers with block
    skipping (segment ids) vs the same buffers as a bool mask (every causal block runs, the same
    work per block), the two runs interleaved so both see the same load: buffers spread over a
    part-1 mini-batch, every 4th position kept (T = pack_len / 4, chunk = attn_chunk / 4, so the
    same blocks are skipped)."""
    rng = np.random.default_rng(0)
    host = synth_host(rng, args.prompts // args.minibatches, args.group, 350, 2048, 600, 4096, (512, 1024, 2048),
                      (512, 1024, 2048, 4096), 1000)
    seg_all = pack_grpo(host, args.pack_len, args.micro)[0]["segment_ids_BT"]
    used = np.flatnonzero(seg_all[:, 0] > 0)
    seg_BT = seg_all[used[np.linspace(0, len(used) - 1, 2 if quick else 4).astype(int)], ::4]
    B, T = seg_BT.shape
    K, R, H, c = 2, 4, 64, args.attn_chunk // 4
    q, k, v = (jnp.asarray(rng.normal(size=s), jnp.float32) for s in ((B, T, K, R, H), (B, T, K, H), (B, T, K, H)))
    seg = jnp.asarray(seg_BT)
    executed = sum(int(np.asarray(attn.block_schedule(seg[b:b + 1], c)).sum()) for b in range(B))
    out = {"shape": [B, T, K, R, H], "chunk": c, "executed_blocks": executed,
           "causal_blocks": B * (T // c) * (T // c + 1) // 2}
    runs = {}
    for name, mask in (("block_skipping", seg), ("every_causal_block", seg > 0)):
        # One buffer per call (what one device runs under shard_map), summed over the buffers.
        fn = jax.jit(jax.grad(lambda q, k, v, m: sum(jnp.sum(attn.attend_chunked(
            q[b:b + 1], k[b:b + 1], v[b:b + 1], m[b:b + 1], c) ** 2) for b in range(B)), argnums=(0, 1, 2)))
        jax.block_until_ready(fn(q, k, v, mask))
        runs[name] = (fn, mask, [])
    for _ in range(2 if quick else 5):
        for fn, mask, times in runs.values():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(q, k, v, mask))
            times.append(time.perf_counter() - t0)
    for name, (_, _, times) in runs.items():
        out[f"{name}_s_median"] = float(np.median(times))
    out["speedup"] = out["every_causal_block_s_median"] / out["block_skipping_s_median"]
    return out


def token_counts(args) -> dict:
    rng = np.random.default_rng(0)
    per_mb = args.prompts // args.minibatches
    rows = []
    for _ in range(args.steps * args.minibatches):
        host = synth_host(rng, per_mb, args.group, 350, 2048, 600, 4096, (512, 1024, 2048),
                          (512, 1024, 2048, 4096), 1000)
        rows.append(ratios(host, args.pack_len, args.micro, args.attn_chunk))
    keys = [k for k in rows[0] if "ratio" in k or k.startswith("slab_capacity") or k.startswith("max_")]
    summary = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    summary["attention_blocks"] = {k: float(np.mean([r["attention_blocks"][k] for r in rows]))
                                   for k in rows[0]["attention_blocks"]}
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


MODELS = {"0p5b": ("Qwen2.5-0.5B shape (D=896, L=24, N=14, H=64, V=151936)", ModelConfig.qwen2p5_0p5b),
          "7b": ("Qwen2.5-Coder-7B shape (D=3584, L=28, N=28, H=128, V=152064)", ModelConfig.qwen2p5_coder_7b)}


def compiled_costs(args, model: str, slab: int, blocks: dict) -> dict:
    """cost_analysis / memory_analysis of the packed GRPO update (one micro-batch of 8 buffers)
    of a 0.5B- or 7B-shaped model, logits at every buffer position vs at a `slab`-column slab;
    with `blocks` (part 1's attention block counts) the step's FLOPs per device before and after
    both changes."""
    from execverify_jax.model.params import abstract_model
    from execverify_jax.rl.infra.train_state import abstract_train_state

    mesh = shd.make_mesh({"data": 1, "fsdp": 8, "tensor": 1})
    L, B = args.pack_len, 8
    g = GRPOConfig(group_size=8, prompts_per_step=1, num_minibatches=1, micro_batch_size=B, packing=True,
                   pack_len=L)

    def sds(shape, dtype):
        return jax.ShapeDtypeStruct(shape, np.dtype(dtype), sharding=shd.named_sharding(
            (shd.BATCH,) + (None,) * (len(shape) - 1), shape, mesh, shd.TRAIN_RULES))

    def lower(mcfg, C, chunk):
        tx = optax.adamw(1e-6)
        state = abstract_train_state(mcfg, tx, mesh)
        upd = make_grpo_update(abstract_model(mcfg)[0], tx, g, mesh, state_shardings(mcfg, tx, mesh),
                               chunk=chunk, packed=True)
        batch = {k: sds((B, L), np.int32) for k in ("tokens_BT", "segment_ids_BT", "positions_BT")}
        batch.update({k: sds((B, C), np.int32) for k in ("target_pos_BC", "segment_ids_BC")})
        batch.update({k: sds((B, C), np.float32) for k in ("mask_BC", "adv_BC", "old_logp_BC")})
        t0 = time.perf_counter()
        compiled = upd.lower(state, batch).compile()
        ca, ma = compiled.cost_analysis(), compiled.memory_analysis()
        return {"flops": float(ca["flops"]), "bytes_accessed": float(ca["bytes accessed"]),
                "temp_gb": ma.temp_size_in_bytes / 1e9, "args_gb": ma.argument_size_in_bytes / 1e9,
                "compile_s": round(time.perf_counter() - t0, 1)}

    desc, make = MODELS[model]
    base = make(dtype="bfloat16", remat=True)
    depth = base.num_layers
    out = {"model": f"{desc}, bf16, remat; 8 fake CPU devices, fsdp 8", "micro_batch": [B, L],
           "slab_capacity": slab}
    for name, C in (("every_position", L), ("slab", slab)):
        r = {}
        # FLOPs: unrolled layers, one logits slab, xla attention (no loops for XLA to count once).
        for layers in (1, 2):
            r[f"layers_{layers}"] = lower(base.replace(num_layers=layers, scan_layers=False, attention="xla"),
                                          C, None)
        per_layer = r["layers_2"]["flops"] - r["layers_1"]["flops"]
        r["flops_full_depth"] = r["layers_1"]["flops"] + (depth - 1) * per_layer
        r["bytes_full_depth"] = r["layers_1"]["bytes_accessed"] + (depth - 1) * (
            r["layers_2"]["bytes_accessed"] - r["layers_1"]["bytes_accessed"])
        # Memory: the real layout (scanned layers, chunked attention, logits chunks of 1024).
        r["real_layout"] = lower(base.replace(attention="chunked"), C, 1024)
        out[name] = r
        print(name, json.dumps(r), flush=True)
    e, s_ = out["every_position"], out["slab"]
    out["flops_saved_fraction"] = 1 - s_["flops_full_depth"] / e["flops_full_depth"]
    out["logits_flops_saved_per_microbatch"] = e["layers_1"]["flops"] - s_["layers_1"]["flops"]
    out["bytes_saved_fraction"] = 1 - s_["bytes_full_depth"] / e["bytes_full_depth"]
    out["temp_gb_saved"] = e["real_layout"]["temp_gb"] - s_["real_layout"]["temp_gb"]
    # Step FLOPs per device (one buffer per device) by part. Attention scores are analytic: QK^T
    # and PV (2 x 2 T^2 N H) in the forward, again in the remat recompute, twice in the backward;
    # the rest of a layer is the measured per-layer FLOPs (xla attention: full square) minus it.
    per_layer = e["layers_2"]["flops"] - e["layers_1"]["flops"]
    attn_square = 16 * L * L * base.num_heads * base.head_dim * (B // 8)
    dense = per_layer - attn_square
    rest = {k: out[k]["layers_1"]["flops"] - per_layer for k in ("every_position", "slab")}
    causal = blocks["causal_blocks"] / blocks["square_blocks"]
    skipped = blocks["blocks_buffer_schedule_mean"] / blocks["square_blocks"]
    before = depth * (dense + attn_square * causal) + rest["every_position"]
    after = depth * (dense + attn_square * skipped) + rest["slab"]
    out["step_flops_per_device"] = {
        "layers_dense": depth * dense, "attention_full_square": depth * attn_square,
        "attention_causal_blocks": depth * attn_square * causal,
        "attention_block_skipping": depth * attn_square * skipped,
        "logits_and_rest_every_position": rest["every_position"], "logits_and_rest_slab": rest["slab"],
        "before": before, "after": after, "after_over_before": after / before}
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
    ap.add_argument("--attn-chunk", type=int, default=512, help="attention block (ModelConfig.attention_chunk)")
    ap.add_argument("--compiled", default="", help="also part 3 for these shapes: 0p5b,7b (compile only, minutes)")
    ap.add_argument("--slab", type=int, default=None,
                    help="part 3's slab capacity (default: the median of part 1's mini-batches)")
    args = ap.parse_args()
    if args.steps is None:
        args.steps = 2 if args.quick else 10
    counts = token_counts(args)
    res = {"quick": args.quick, "token_counts": counts, "timing": timing(args),
           "attention_timing": attention_timing(args, args.quick),
           "machine": "shared 2-core CPU, loaded by other agents' jobs"}
    if args.compiled:
        caps = sorted(r["slab_capacity"] for r in counts["minibatches"])
        slab = args.slab or caps[len(caps) // 2]
        res["compiled"] = {m: compiled_costs(args, m, slab, counts["mean"]["attention_blocks"])
                           for m in args.compiled.split(",")}
    print(json.dumps({"mean": res["token_counts"]["mean"],
                      "timing": {k: v for k, v in res["timing"].items() if k != "minibatches"},
                      "attention_timing": res["attention_timing"],
                      "compiled": {m: {k: v for k, v in c.items() if k not in ("every_position", "slab")}
                                   for m, c in res.get("compiled", {}).items()}}, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
