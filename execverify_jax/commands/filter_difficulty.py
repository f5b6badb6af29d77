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

from execverify_jax.commands import add_config_args, load_options
from execverify_jax.shared_config import ENGINES

NAME = "filter-difficulty"
HELP = "keep questions by the policy's own pass rate"


# argparse dest -> FilterConfig key (rl/apps/difficulty.py); the flags are shorthands.
FLAGS = {"model": "model", "tokenizer": "tokenizer", "data": "data", "split": "split", "out": "out",
         "n": "difficulty.n", "temperature": "difficulty.temperature", "top_p": "difficulty.top_p",
         "max_new_tokens": "difficulty.max_new_tokens", "max_pass_rate": "difficulty.max_pass_rate",
         "min_pass_rate": "difficulty.min_pass_rate", "prompt": "difficulty.prompt",
         "batch_prompts": "difficulty.batch_prompts", "limit": "limit", "workers": "workers", "mesh": "mesh",
         "seed": "difficulty.seed", "progress": "progress", "engine": "difficulty.engine"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the flags (no heavy imports). Defaults are FilterConfig's."""
    add_config_args(parser, example="difficulty.top_p=0.9")
    parser.add_argument("--model", help="Orbax checkpoint dir (with tokenizer files) or HF dir; required")
    parser.add_argument("--tokenizer", default=None, help="tokenizer dir (default: --model)")
    parser.add_argument("--data", help="synth output dir or question JSONL; required")
    parser.add_argument("--split", help="split of a synth dir (default: train)")
    parser.add_argument("--out", help="output JSONL of kept questions; required")
    parser.add_argument("--n", type=int, help="samples per question (default: 10)")
    parser.add_argument("--temperature", type=float, help="default 1")
    parser.add_argument("--top-p", type=float, help="nucleus p (default 1; the paper's run: 0.9)")
    parser.add_argument("--max-new-tokens", type=int, help="default 4096")
    parser.add_argument("--max-pass-rate", type=float, help="default 0.3")
    parser.add_argument("--min-pass-rate", type=float, help="default 0")
    parser.add_argument("--prompt", choices=["cruxeval", "question"],
                        help="probe with the CRUXEval-O prompt (paper, default) or the question's own prompt")
    parser.add_argument("--batch-prompts", type=int, help="default 16")
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions")
    parser.add_argument("--workers", type=int, default=None, help="sandbox workers")
    parser.add_argument("--mesh", help="mesh, e.g. data=-1,tensor=2 (default data=-1)")
    parser.add_argument("--seed", type=int, help="default 0")
    parser.add_argument("--engine", choices=list(ENGINES),
                        help="generator: continuous (default, the slot engine) or static (the batched sampler)")
    parser.add_argument("--no-progress", dest="progress", action="store_const", const=False, default=None)


def run(args: argparse.Namespace) -> int:
    """Samples, grades, filters; prints the summary."""
    from dataclasses import asdict
    from pathlib import Path

    from execverify_jax.rl.apps.difficulty import FilterConfig

    cfg = load_options(FilterConfig, args, "filter-difficulty", FLAGS)
    if cfg is None:
        return 2
    dcfg = cfg.difficulty
    import numpy as np

    from execverify_jax.data.records import json_line
    from execverify_jax.data.sandbox import SandboxPool
    from execverify_jax.data.tokenizer import Tokenizer
    from execverify_jax.model import sharding as shd
    from execverify_jax.model.checkpoint import load_any
    from execverify_jax.model.generation import make_generator
    from execverify_jax.rewards.scorer import PRELOAD, Scorer
    from execverify_jax.rl.apps.difficulty import keep, pass_rates
    from execverify_jax.rl.builders import all_questions
    from execverify_jax.rl.grpo.tasks import read_question_jsonl

    shd.maybe_initialize_distributed()
    records = all_questions(cfg.data, cfg.split) if Path(cfg.data).is_dir() else read_question_jsonl(cfg.data)
    if cfg.limit is not None:
        records = records[: cfg.limit]
    mesh = shd.make_mesh(cfg.mesh)
    mcfg, graphdef, params = load_any(cfg.model, mesh)
    tok = Tokenizer(cfg.tokenizer or cfg.model)
    tok.check_model_vocab(mcfg.vocab_size, cfg.model)
    sampler = make_generator(mcfg, graphdef, dcfg, mesh=mesh, pad_id=tok.pad_id)
    rates, kept = [], 0
    with SandboxPool(num_workers=cfg.workers, preload=PRELOAD) as pool, open(cfg.out, "w", encoding="utf-8") as f:
        scorer = Scorer(pool)
        for rec, rate in pass_rates(params, sampler, tok, scorer, records, dcfg, progress=cfg.progress):
            rates.append(rate)
            if keep(rate, dcfg):
                kept += 1
                f.write(json_line({**rec, "difficulty": {"pass_rate": rate, "n": dcfg.n}}))
    hist = {f"{k / dcfg.n:.1f}": int(v) for k, v in
            zip(*np.unique(np.round(np.asarray(rates) * dcfg.n).astype(int), return_counts=True))}
    stats = {"questions": len(records), "kept": kept, "dropped": len(records) - kept,
             "always_solved": int(sum(r == 1.0 for r in rates)), "never_solved": int(sum(r == 0.0 for r in rates)),
             "mean_pass_rate": float(np.mean(rates)) if rates else 0.0, "pass_rate_histogram": hist,
             "config": asdict(dcfg)}
    Path(cfg.out + ".stats.json").write_text(json.dumps(stats, indent=2))
    print(json.dumps(stats, indent=2))
    return 0
