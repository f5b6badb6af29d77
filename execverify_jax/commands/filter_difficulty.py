"""`execverify filter-difficulty`: keep questions by the policy's own pass rate (paper §2.6).

    execverify filter-difficulty --model CKPT_OR_HF --data SYNTH_DIR_OR_JSONL --out KEPT.jsonl \
        [--n 10] [--temperature 1.0] [--max-pass-rate 0.3] [--min-pass-rate 0]

Writes the kept question records (each with `difficulty: {pass_rate, n}`) to --out and a summary
(histogram of pass rates, counts) to --out + ".stats.json". Train on the result with
`data.path: KEPT.jsonl`.
"""

from __future__ import annotations

import argparse
import json
import sys

NAME = "filter-difficulty"
HELP = "keep questions by the policy's own pass rate"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the flags (no heavy imports)."""
    parser.add_argument("--model", required=True, help="Orbax checkpoint dir (with tokenizer files) or HF dir")
    parser.add_argument("--tokenizer", default=None, help="tokenizer dir (default: --model)")
    parser.add_argument("--data", required=True, help="synth output dir or question JSONL")
    parser.add_argument("--split", default="train", help="split of a synth dir (default: train)")
    parser.add_argument("--out", required=True, help="output JSONL of kept questions")
    parser.add_argument("--n", type=int, default=10, help="samples per question (default: 10)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus p (the paper's run: 0.9)")
    parser.add_argument("--max-new-tokens", type=int, default=4096)
    parser.add_argument("--max-pass-rate", type=float, default=0.3)
    parser.add_argument("--min-pass-rate", type=float, default=0.0)
    parser.add_argument("--prompt", choices=["cruxeval", "question"], default="cruxeval",
                        help="probe with the CRUXEval-O prompt (paper) or the question's own prompt")
    parser.add_argument("--batch-prompts", type=int, default=16)
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions")
    parser.add_argument("--workers", type=int, default=None, help="sandbox workers")
    parser.add_argument("--mesh", default="data=-1", help="mesh, e.g. data=-1,tensor=2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    """Samples, grades, filters; prints the summary."""
    from pathlib import Path

    try:
        from execverify_jax.rl.apps.difficulty import DifficultyConfig
        dcfg = DifficultyConfig(n=args.n, temperature=args.temperature, top_p=args.top_p,
                                max_new_tokens=args.max_new_tokens, max_pass_rate=args.max_pass_rate,
                                min_pass_rate=args.min_pass_rate, prompt=args.prompt,
                                batch_prompts=args.batch_prompts, seed=args.seed)
    except ValueError as exc:
        print(f"execverify filter-difficulty: {exc}", file=sys.stderr)
        return 2
    import numpy as np

    from execverify_jax.data.records import json_line
    from execverify_jax.data.sandbox import SandboxPool
    from execverify_jax.data.tokenizer import Tokenizer
    from execverify_jax.model import sharding as shd
    from execverify_jax.model.checkpoint import load_any
    from execverify_jax.model.sampler import Sampler
    from execverify_jax.rewards.scorer import PRELOAD, Scorer
    from execverify_jax.rl.apps.difficulty import keep, pass_rates
    from execverify_jax.rl.builders import all_questions
    from execverify_jax.rl.grpo.tasks import read_question_jsonl

    shd.maybe_initialize_distributed()
    records = all_questions(args.data, args.split) if Path(args.data).is_dir() else read_question_jsonl(args.data)
    if args.limit is not None:
        records = records[: args.limit]
    mesh = shd.make_mesh(shd.parse_mesh_spec(args.mesh))
    mcfg, graphdef, params = load_any(args.model, mesh)
    tok = Tokenizer(args.tokenizer or args.model)
    tok.check_model_vocab(mcfg.vocab_size, args.model)
    sampler = Sampler(mcfg, graphdef, mesh=mesh, pad_id=tok.pad_id)
    rates, kept = [], 0
    with SandboxPool(num_workers=args.workers, preload=PRELOAD) as pool, open(args.out, "w", encoding="utf-8") as f:
        scorer = Scorer(pool)
        for rec, rate in pass_rates(params, sampler, tok, scorer, records, dcfg, progress=not args.no_progress):
            rates.append(rate)
            if keep(rate, dcfg):
                kept += 1
                f.write(json_line({**rec, "difficulty": {"pass_rate": rate, "n": dcfg.n}}))
    hist = {f"{k / dcfg.n:.1f}": int(v) for k, v in
            zip(*np.unique(np.round(np.asarray(rates) * dcfg.n).astype(int), return_counts=True))}
    stats = {"questions": len(records), "kept": kept, "dropped": len(records) - kept,
             "always_solved": int(sum(r == 1.0 for r in rates)), "never_solved": int(sum(r == 0.0 for r in rates)),
             "mean_pass_rate": float(np.mean(rates)) if rates else 0.0, "pass_rate_histogram": hist,
             "config": vars(dcfg)}
    Path(args.out + ".stats.json").write_text(json.dumps(stats, indent=2))
    print(json.dumps(stats, indent=2))
    return 0
