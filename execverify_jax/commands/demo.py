"""`execverify demo [--out DIR]`: the embedded end-to-end CPU demo (synth -> tokenizer -> SFT ->
GRPO stage I -> held-out eval before/after RL -> HF export + transformers reload -> DIR/report.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "demo"
HELP = "the embedded end-to-end CPU demo (the main job)"
REPO = Path(__file__).resolve().parents[2]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the flags (no heavy imports)."""
    parser.add_argument("--out", default="demo_out", help="output directory (default: %(default)s)")
    parser.add_argument("--config", default=str(REPO / "configs" / "demo_cpu.yaml"),
                        help="demo config YAML (default: configs/demo_cpu.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set programs=300 (repeatable)")


def run(args: argparse.Namespace) -> int:
    """Runs the demo; prints where the report is."""
    import os
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from execverify_jax.config_loader import ConfigError, load
    from execverify_jax.rl.apps.demo import DemoConfig, run_demo

    try:
        cfg = load(DemoConfig, args.config, args.overrides)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"execverify demo: config error: {exc}", file=sys.stderr)
        return 2
    report = run_demo(cfg, args.out, repo_root=REPO)
    print(f"report: {Path(args.out) / 'report.md'}")
    print({"eval_sft": report["eval_sft"], "eval_grpo": report["eval_grpo"], "timings_s": report["timings_s"]})
    return 0
