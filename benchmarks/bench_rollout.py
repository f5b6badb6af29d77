"""Rollout engine (continuous batching, model/engine.py) vs the static Sampler, one GRPO rollout.

Both generate G samples of each of N prompts with the same random-weight model on CPU.

Lengths come from the synthesized data (`lengths_from_data`): a small dataset (the data pipeline
on configs/data/small.yaml with `--synth-programs` programs, or `--data DIR` of an existing
`execverify synth --format jsonl` output), its SFT targets (the built-in traced rationale +
reference answer of rl/sft/rationales.py, as the demo's SFT uses) and prompts (chat-formatted
messages) tokenized with a byte-level BPE trained on that data (or `--tokenizer DIR`). Each row
then draws (`draw_lengths`):
  response length: the empirical target lengths scaled so their mean is `--mean-len`, except
    round(`--tail-frac` x rows) rows drawn log-uniformly in [mean, cap] and round(`--cap-frac` x
    rows) rows at the cap `--max-new` (the long tail of real rollouts: runaway rationales);
  prompt length: the empirical prompt lengths scaled so the longest is `--prompt-len`.
Every row gets its drawn length as its own token cap (per-row `max_new_tokens`) and the strategy
never emits the stop id, so each row stops exactly at its drawn length on both sides. The G rows of
a prompt are passed as G copies of the prompt with n = 1 (same compute as n = G).

Static side = today's trainer: sequential `Sampler` calls of `--rows-per-call` rows, each running
until its longest row is done (its cache holds the call's largest cap, not `--max-new`: slightly
in the static side's favour). Engine: all N x G rows through `--slots` slots.

Reported (benchmarks/results/rollout.json or --out):
  lengths: mean / p50 / p90 / p99 / frac_at_cap of the drawn response lengths (+ prompts);
  useful_row_step_fraction: decode row-steps that produce a kept token / decode row-steps run
    (engine: counted by the engine; static: sum(len - 1) / rows x (max len - 1) per call,
    exactly what its while_loop runs);
  speedup_vs_static: wall time of the static rollout / the engine's, each the fastest of
    `--repeats` runs after a warm-up run (compiles excluded), same prompts, same process;
  train_padding_ratio: tokens the update of this rollout computes / its real tokens (prompt +
    response per row): padded (rl/grpo/update.update_batch's layout: prompt bucket + completion
    bucket for every row) and packed (each of `--minibatches` prompt-aligned mini-batches packed
    into buffers of `--pack-len` by rl/infra/packing.pack_grpo, buffer count rounded up to a
    multiple of `--micro`; with the trainer's default `grpo.pack_len_auto` each mini-batch's
    buffer length is the cheapest multiple of pack_len / 16 up to pack_len, `packed_fixed_len`
    always pack_len).
    python benchmarks/bench_rollout.py --quick     # tiny shape, < 10 min on 2 cores
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from execverify_jax.buckets import bucket_for
from execverify_jax.model.config import ModelConfig
from execverify_jax.model.engine import Engine
from execverify_jax.model.params import create_model
from execverify_jax.model.sampler import Sampler

REPO = Path(__file__).resolve().parents[1]
TINY = dict(vocab_size=4096, hidden_size=256, intermediate_size=1024, num_layers=4, num_heads=4,
            num_kv_heads=2, head_dim=64, max_position_embeddings=8192)
STOP_ID = 1


@dataclasses.dataclass(frozen=True)
class NeverStop:
    """Temperature-1 sampling that never draws STOP_ID: rows end at their own caps (benchmark only)."""

    def select(self, logits_BV, key):
        z_BV = logits_BV.astype(jnp.float32).at[:, STOP_ID].set(-1e30)
        tok_B = jax.random.categorical(key, z_BV, axis=-1).astype(jnp.int32)
        logp_B = jnp.take_along_axis(jax.nn.log_softmax(logits_BV.astype(jnp.float32)), tok_B[:, None], -1)[:, 0]
        return tok_B, logp_B


def synthesize(n_programs: int, out: Path) -> Path:
    """`execverify synth` on configs/data/small.yaml restricted to `n_programs` programs (JSONL)."""
    from execverify_jax.data import pipeline
    cfg = pipeline.load_config(REPO / "configs/data/small.yaml", [f"total_programs={n_programs}", "workers=2"])
    pipeline.run_synth(cfg, out, formats=("jsonl",), progress=False)
    return out


def lengths_from_data(args) -> dict:
    """Token lengths of the SFT targets (traced rationale + answer) and chat prompts of the data
    (synthesized data, corpus and tokenizer live in a temporary directory, removed after)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_rollout_") as tmp:
        return _lengths_from_data(args, Path(tmp), t0)


def _lengths_from_data(args, tmp: Path, t0: float) -> dict:
    from execverify_jax.data.sandbox import SandboxPool
    from execverify_jax.data.tokenizer import Tokenizer
    from execverify_jax.data.tokenizer_train import train_bpe
    from execverify_jax.rl.run_config import SFTSection
    from execverify_jax.rl.sft.rationales import build_examples

    data = Path(args.data) if args.data else synthesize(args.synth_programs, tmp / "data")
    synth_s = time.perf_counter() - t0
    qs = [json.loads(line) for line in open(data / "questions.jsonl", encoding="utf-8")]
    qs = [q for q in qs if q["answer"]["layout"] in ("io_mixed", "oi")]
    rng = np.random.default_rng(0)
    qs = [qs[i] for i in sorted(rng.permutation(len(qs))[:args.max_questions])]
    with SandboxPool(num_workers=2) as pool:
        convs, counts = build_examples(qs, pool, max_steps=SFTSection().rationale_max_steps)
    if args.tokenizer:
        tok_dir = Path(args.tokenizer)
    else:
        corpus = tmp / "corpus.txt"
        corpus.write_text("\n".join(m["content"] for c in convs for m in c) + "\n", encoding="utf-8")
        tok_dir = train_bpe([corpus], tmp / "tokenizer", args.bpe_vocab)
    tok = Tokenizer(tok_dir)
    # +1: the end-of-turn token the policy emits after the answer.
    resp = np.asarray([len(tok.encode(c[-1]["content"])) + 1 for c in convs])
    prompt = np.asarray([len(tok.apply_chat(c[:-1])) for c in convs])
    return {"source": str(args.data or f"synthesized: {args.synth_programs} programs, configs/data/small.yaml"),
            "tokenizer": str(args.tokenizer or f"byte-level BPE, {args.bpe_vocab} tokens, trained on the data"),
            "questions": len(qs), "examples": counts, "response_tokens": resp, "prompt_tokens": prompt,
            "seconds": time.perf_counter() - t0, "synth_seconds": synth_s}


def summary(x: np.ndarray, cap: int | None = None) -> dict:
    out = {"n": int(len(x)), "mean": float(x.mean()), "p50": float(np.percentile(x, 50)),
           "p90": float(np.percentile(x, 90)), "p99": float(np.percentile(x, 99)), "max": int(x.max())}
    if cap is not None:
        out["frac_at_cap"] = float((x >= cap).mean())
    return out


def draw_lengths(emp: dict, args, rng) -> tuple[np.ndarray, np.ndarray]:
    """(prompt lengths [N], response lengths [N x G] in grouped order); see the module docstring."""
    resp, prompt = emp["response_tokens"].astype(float), emp["prompt_tokens"].astype(float)
    B = args.prompts * args.group
    r_B = rng.choice(resp, B) * args.mean_len / resp.mean()
    # Exactly round(frac x B) tail and cap rows, at random places (no luck of the draw in counts).
    order_B = rng.permutation(B)
    n_tail, n_cap = round(args.tail_frac * B), round(args.cap_frac * B)
    r_B[order_B[:n_tail]] = np.exp(rng.uniform(np.log(args.mean_len), np.log(args.max_new), n_tail))
    r_B[order_B[n_tail:n_tail + n_cap]] = args.max_new
    r_B = np.clip(np.round(r_B), 1, args.max_new).astype(np.int32)
    p_N = np.clip(np.round(rng.choice(prompt, args.prompts) * args.prompt_len / prompt.max()), 4, args.prompt_len)
    return p_N.astype(np.int32), r_B


def padding_ratios(plen_N: np.ndarray, len_B: np.ndarray, args, P: int) -> dict:
    """train_padding_ratio of the update of this rollout, padded and packed (see the docstring)."""
    from execverify_jax.rl.infra.packing import pack_grpo
    from execverify_jax.rl.objective.config import GRPOConfig
    from execverify_jax.rl.run_config import RolloutSection

    G, B = args.group, len(len_B)
    plen_B = np.repeat(plen_N, G)
    C = min(bucket_for(int(len_B.max()), RolloutSection().completion_buckets, over=args.max_new), args.max_new)
    real = int((plen_B + len_B).sum())
    attn_BT = np.concatenate([np.arange(P)[None] >= (P - plen_B)[:, None],
                              np.arange(C)[None] < len_B[:, None]], 1)
    host = {"tokens_BT": np.zeros((B, P + C), np.int32), "attn_BT": attn_BT,
            "mask_BC": attn_BT[:, P:].astype(np.float32)}
    computed = {False: 0, True: 0}
    shapes = []
    per = B // args.minibatches  # prompt-aligned: whole groups per mini-batch
    for s in range(0, B, per):
        part = {k: v[s:s + per] for k, v in host.items()}
        for auto in (False, True):
            shape = pack_grpo(part, args.pack_len, args.micro, auto=auto)[0]["tokens_BT"].shape
            computed[auto] += shape[0] * shape[1]
            if auto:
                shapes.append(list(shape))
    auto = GRPOConfig().pack_len_auto
    return {"padded": B * (P + C) / real, "packed": computed[auto] / real,
            "packed_fixed_len": computed[False] / real, "pack_len_auto": auto, "real_tokens": real,
            "padded_shape": [B, P + C], "prompt_bucket": P, "completion_bucket": C,
            "pack_len": args.pack_len, "micro": args.micro, "minibatches": args.minibatches,
            "packed_fixed_len_buffers": computed[False] // args.pack_len,
            "packed_auto_shapes": shapes}


def static_rollout(sampler, params, prompts, caps, args, strategy):
    """Like RolloutGenerator's static path: chunks of rows_per_call rows, one call each."""
    lens, row_steps, useful = [], 0, 0
    for c, start in enumerate(range(0, len(prompts), args.rows_per_call)):
        sl = slice(start, start + args.rows_per_call)
        out = sampler.generate(params, prompts[sl], caps[sl], strategy, stop_ids=(STOP_ID,), seed=c)
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
    ap.add_argument("--prompt-len", type=int, default=48, help="longest prompt (tokens); also the prompt bucket")
    ap.add_argument("--max-new", type=int, default=512, help="response cap")
    ap.add_argument("--mean-len", type=float, default=128, help="mean of the scaled empirical response lengths")
    ap.add_argument("--tail-frac", type=float, default=0.05, help="rows drawn log-uniformly in [mean, cap]")
    ap.add_argument("--cap-frac", type=float, default=0.01, help="rows that run to the cap")
    ap.add_argument("--rows-per-call", type=int, default=128)
    ap.add_argument("--slots", type=int, default=32)
    ap.add_argument("--steps-per-call", type=int, default=8)
    ap.add_argument("--block", type=int, default=64)
    ap.add_argument("--prefill-batch", type=int, default=8)
    ap.add_argument("--admit-min", type=int, default=1, help="free slots that end a decode call while rows wait")
    ap.add_argument("--prefill-granule", type=int, default=0, help="admission prompt length multiple (0: bucket)")
    ap.add_argument("--share-prompts", type=int, default=1, help="engine prefix sharing (1: on, 0: off)")
    ap.add_argument("--compare-unshared", action="store_true",
                    help="also time the engine without prefix sharing (attribution, same run)")
    ap.add_argument("--data", default=None, help="an `execverify synth --format jsonl` output (default: synthesize)")
    ap.add_argument("--synth-programs", type=int, default=150)
    ap.add_argument("--max-questions", type=int, default=200, help="questions whose SFT targets are traced")
    ap.add_argument("--tokenizer", default=None, help="an HF tokenizer dir (default: train a BPE on the data)")
    ap.add_argument("--bpe-vocab", type=int, default=4096)
    ap.add_argument("--minibatches", type=int, default=2)
    ap.add_argument("--micro", type=int, default=2, help="packed buffers per micro-batch")
    ap.add_argument("--pack-len", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=2, help="timed runs after the warm-up (fastest kept)")
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/rollout.json"))
    args = ap.parse_args()
    if args.quick:
        args.prompts, args.max_new, args.mean_len, args.rows_per_call = 32, 256, 64, 128
    emp = lengths_from_data(args)
    print(f"lengths from {emp['questions']} questions ({emp['examples']}) in {emp['seconds']:.0f}s", flush=True)
    rng = np.random.default_rng(0)
    plen_N, cap_B = draw_lengths(emp, args, rng)
    cfg = (ModelConfig(**TINY) if args.model == "tiny" else ModelConfig.qwen2p5_0p5b())
    model = create_model(cfg, seed=0)
    graphdef, params = nnx.split(model)
    base = [rng.integers(2, cfg.vocab_size, int(n)).tolist() for n in plen_N]
    prompts = [p for p in base for _ in range(args.group)]  # row (i, j) = copy j of prompt i
    strategy = NeverStop()
    buckets = (args.prompt_len,)
    sampler = Sampler(cfg, graphdef, buckets=buckets)
    engine = Engine(cfg, graphdef, slots=args.slots, steps_per_call=args.steps_per_call, block=args.block,
                    prefill_batch=args.prefill_batch, admit_min=args.admit_min,
                    prefill_granule=args.prefill_granule or None, share_prompts=bool(args.share_prompts),
                    buckets=buckets)
    unshared = None
    if args.compare_unshared:
        unshared = Engine(cfg, graphdef, slots=args.slots, steps_per_call=args.steps_per_call, block=args.block,
                          prefill_batch=args.prefill_batch, admit_min=args.admit_min,
                          prefill_granule=args.prefill_granule or None, share_prompts=False, buckets=buckets)
    res = {"machine": f"{platform.machine()}, {os.cpu_count()} cores (shared with other jobs)",
           "args": vars(args), "model": args.model, "num_params": cfg.num_params(),
           "length_source": {k: v for k, v in emp.items() if not k.endswith("_tokens")},
           "empirical": {"response_tokens": summary(emp["response_tokens"]),
                         "prompt_tokens": summary(emp["prompt_tokens"])},
           "lengths": {"response": summary(cap_B, args.max_new), "prompt": summary(plen_N)}}
    times = {"static": [], "engine": []} | ({"engine_unshared": []} if unshared else {})
    for rep in range(1 + args.repeats):  # run 0 compiles everything (same shapes every run)
        t0 = time.perf_counter()
        s_len, s_rows, s_useful = static_rollout(sampler, params, prompts, cap_B, args, strategy)
        times["static"].append(time.perf_counter() - t0)
        engine.stats = type(engine.stats)()
        t0 = time.perf_counter()
        out = engine.generate(params, prompts, cap_B.tolist(), strategy, stop_ids=(STOP_ID,), seed=0)
        times["engine"].append(time.perf_counter() - t0)
        if unshared is not None:
            unshared.stats = type(unshared.stats)()
            t0 = time.perf_counter()
            unshared.generate(params, prompts, cap_B.tolist(), strategy, stop_ids=(STOP_ID,), seed=0)
            times["engine_unshared"].append(time.perf_counter() - t0)
        print(f"run {rep}{' (warm-up)' if rep == 0 else ''}: static {times['static'][-1]:.1f}s "
              f"engine {times['engine'][-1]:.1f}s {engine.stats}"
              + (f" unshared {times['engine_unshared'][-1]:.1f}s" if unshared else ""), flush=True)
    # The fastest timed run of each side: the machine is shared, other jobs only add time.
    t_static, t_engine = min(times["static"][1:]), min(times["engine"][1:])
    assert (out.lengths_B == cap_B).all() and (s_len == cap_B).all(), "rows must stop at their drawn lengths"
    st = engine.stats
    res.update(
        rows=int(len(out.lengths_B)),
        useful_row_step_fraction=st.useful_fraction, static_useful_row_step_fraction=s_useful / max(s_rows, 1),
        engine_decode_steps=st.decode_steps, engine_row_steps=st.row_steps, static_row_steps=s_rows,
        engine_run_calls=st.run_calls, engine_admit_calls=st.admit_calls,
        engine_prefill_tokens=st.prefill_tokens, engine_prefill_calls=st.prefill_calls,
        static_prefill_tokens=sum(len(prompts[i:i + args.rows_per_call]) * bucket_for(
            max(len(p) for p in prompts[i:i + args.rows_per_call]), buckets)
            for i in range(0, len(prompts), args.rows_per_call)),
        static_seconds=t_static, engine_seconds=t_engine, speedup_vs_static=t_static / t_engine,
        seconds_per_run=times,
        **({"engine_unshared_seconds": min(times["engine_unshared"][1:]),
            "engine_unshared_prefill_tokens": unshared.stats.prefill_tokens,
            "speedup_unshared_vs_static": t_static / min(times["engine_unshared"][1:])} if unshared else {}),
        train_padding_ratio=padding_ratios(plen_N, cap_B, args, bucket_for(int(plen_N.max()), buckets)))
    print(json.dumps(res, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
