"""`execverify plot RUN`: PNG curves of RUN/metrics.jsonl (reward, accuracies, lengths, timings)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from execverify_jax.commands import add_config_args, load_options

NAME = "plot"
HELP = "plot a run's metrics to PNG"


@dataclass(frozen=True)
class PlotOptions:
    """`execverify plot` options (YAML keys; the positional RUN and the flags are shorthands)."""

    run: str  # run directory holding metrics.jsonl
    out: str | None = None  # output folder (default: RUN/plots)
    smooth: int = 1  # moving-average window in steps (<= 1: none)


FLAGS = {"run": "run", "out": "out", "smooth": "smooth"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the flags (no heavy imports)."""
    add_config_args(parser, example="smooth=10")
    parser.add_argument("run", nargs="?", default=None, help="run directory holding metrics.jsonl (required)")
    parser.add_argument("--out", default=None, help="output folder (default: RUN/plots)")
    parser.add_argument("--smooth", type=int, help="moving-average window in steps (default: 1)")


def run(args: argparse.Namespace) -> int:
    """Writes the PNGs and prints their paths."""
    from execverify_jax.rl.apps.plot import plot_run

    opts = load_options(PlotOptions, args, "plot", FLAGS)
    if opts is None:
        return 2
    try:
        paths = plot_run(opts.run, opts.out, smooth=opts.smooth)
    except (ValueError, FileNotFoundError) as exc:
        print(f"execverify plot: {exc}", file=sys.stderr)
        return 2
    for p in paths:
        print(p)
    return 0
