"""`execverify sft`: supervised warm-up (masked CE on assistant tokens).

    execverify sft --config configs/sft_qwen2p5_coder_7b.yaml --out RUN [--set sft.epochs=1 ...]

Data (`sft.source`): `sharegpt` reads `sft.data` (ShareGPT JSONL); `rationales` builds targets
from the questions of a synth directory (`sft.data`) with traced chains of execution.
Writes RUN/model (an Orbax checkpoint with the tokenizer, the `model.init` of `execverify train`).
"""

from __future__ import annotations

import argparse
import json
import sys

from execverify_jax.commands import add_config_args, load_options

NAME = "sft"
HELP = "supervised warm-up"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the flags (no heavy imports)."""
    add_config_args(parser, required=True, what="a TrainConfig with an `sft` section", example="sft.epochs=1")
    parser.add_argument("--out", required=True, help="run directory")


def load_conversations(cfg, tokenizer_split: str = "train") -> tuple[list, dict]:
    """The SFT conversations of `cfg.sft` and counts of what was skipped."""
    s = cfg.sft
    if s.data is None:
        raise ValueError("sft.data: required (a ShareGPT JSONL, or a synth directory for rationales)")
    if s.source == "sharegpt":
        from execverify_jax.rl.sft.trainer import read_conversations
        convs, bad = read_conversations(s.data)
        return convs, {"malformed_skipped": bad}
    from execverify_jax.data.sandbox import SandboxPool
    from execverify_jax.rl.builders import all_questions
    from execverify_jax.rl.sft.rationales import build_examples
    questions = all_questions(s.data, tokenizer_split)
    if s.max_samples is not None:
        questions = questions[: s.max_samples]
    with SandboxPool(num_workers=cfg.sandbox_workers) as pool:
        return build_examples(questions, pool, max_steps=s.rationale_max_steps)


def run(args: argparse.Namespace) -> int:
    """Builds the data, trains, prints a JSON summary."""
    from execverify_jax.rl.run_config import TrainConfig

    cfg = load_options(TrainConfig, args, "sft")
    if cfg is None:
        return 2
    from execverify_jax.data.tokenizer import Tokenizer
    from execverify_jax.model.sharding import maybe_initialize_distributed
    from execverify_jax.rl.sft.trainer import run_sft

    maybe_initialize_distributed()
    tok_path = cfg.data.tokenizer or cfg.model.init
    if tok_path is None:
        print("execverify sft: data.tokenizer (or model.init with tokenizer files) is required", file=sys.stderr)
        return 2
    try:
        convs, counts = load_conversations(cfg)
        summary = run_sft(cfg, args.out, convs, Tokenizer(tok_path))
    except (ValueError, FileNotFoundError) as exc:
        print(f"execverify sft: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"data": counts, **{k: summary[k] for k in ("examples", "dropped_examples", "steps", "model")},
                      "wall_s": round(summary["wall_s"], 1),
                      "last": {k: round(v, 4) for k, v in summary["last"].items()}}, indent=1))
    return 0
