"""`execverify demo [--out DIR]`: the embedded end-to-end CPU demo (synth -> tokenizer or the warm
start's -> SFT -> GRPO stage I -> held-out eval before/after RL -> HF export + transformers reload
-> DIR/report.md). Default config: configs/demo_cpu_warm.yaml (from a shipped warm-start policy);
configs/demo_cpu.yaml runs it from scratch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from execverify_jax.commands import add_config_args, load_options

NAME = "demo"
HELP = "the embedded end-to-end CPU demo (the main job)"
REPO = Path(__file__).resolve().parents[2]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the flags (no heavy imports)."""
    parser.add_argument("--out", default="demo_out", help="output directory (default: %(default)s)")
    # The default starts from the shipped warm-start policy (docs/TRAINING.md §6b);
    # `--config configs/demo_cpu.yaml` is the same demo from scratch.
    add_config_args(parser, default=str(REPO / "configs" / "demo_cpu_warm.yaml"), what="a DemoConfig",
                    example="programs=300")


def run(args: argparse.Namespace) -> int:
    """Runs the demo; prints where the report is."""
    import os
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from execverify_jax.rl.apps.demo import DemoConfig, run_demo

    cfg = load_options(DemoConfig, args, "demo")
    if cfg is None:
        return 2
    report = run_demo(cfg, args.out, repo_root=REPO)
    print(f"report: {Path(args.out) / 'report.md'}")
    print({"eval_sft": report["eval_sft"], "eval_grpo": report["eval_grpo"], "timings_s": report["timings_s"]})
    return 0
