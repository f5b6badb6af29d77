"""`execverify plot RUN`: PNG curves of RUN/metrics.jsonl (reward, accuracies, lengths, timings)."""

from __future__ import annotations

import argparse
import sys

NAME = "plot"
HELP = "plot a run's metrics to PNG"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the flags (no heavy imports)."""
    parser.add_argument("run", help="run directory holding metrics.jsonl")
    parser.add_argument("--out", default=None, help="output folder (default: RUN/plots)")
    parser.add_argument("--smooth", type=int, default=1, help="moving-average window in steps (default: 1)")


def run(args: argparse.Namespace) -> int:
    """Writes the PNGs and prints their paths."""
    from execverify_jax.rl.apps.plot import plot_run

    try:
        paths = plot_run(args.run, args.out, smooth=args.smooth)
    except (ValueError, FileNotFoundError) as exc:
        print(f"execverify plot: {exc}", file=sys.stderr)
        return 2
    for p in paths:
        print(p)
    return 0
