"""`execverify synth`: synthesize programs and questions into (restartable, sharded) dataset files."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from execverify_jax.commands import add_config_args

NAME = "synth"
HELP = "synthesize programs and questions into dataset shards"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the command's flags (cheap: no heavy imports)."""
    add_config_args(parser, what="a DataConfig (default: the repository's configs/data/small.yaml)",
                    example="programs_per_cell=2")
    parser.add_argument("--out", required=True, help="output directory (re-run with the same arguments to resume)")
    parser.add_argument("--shard", type=int, default=0, help="index of this shard (default: 0)")
    parser.add_argument("--num-shards", type=int, default=1, help="number of shards of the grid (default: 1)")
    parser.add_argument("--format", choices=("arrayrecord", "jsonl", "both"), default="arrayrecord",
                        help="output format: ArrayRecord (grain), JSONL, or both (default: %(default)s)")
    parser.add_argument("--verify", action="store_true",
                        help="after synthesis, re-run every program in the sandbox and re-check its constraint")
    parser.add_argument("--verify-only", action="store_true", help="only verify an existing complete output")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Runs (or resumes) one shard; prints a summary and, with --verify, the verification report."""
    from execverify_jax.config_loader import ConfigError
    from execverify_jax.data import pipeline

    config = args.config
    if config is None:
        default = Path(__file__).resolve().parents[2] / "configs" / "data" / "small.yaml"
        config = default if default.is_file() else None  # installed without the repo: built-in defaults
    try:
        cfg = pipeline.load_config(config, args.overrides)
    except ConfigError as exc:
        print(f"execverify synth: config error: {exc}", file=sys.stderr)
        return 2
    formats = ("arrayrecord", "jsonl") if args.format == "both" else (args.format,)
    progress = not args.no_progress
    t0 = time.perf_counter()
    if not args.verify_only:
        try:
            result = pipeline.run_synth(cfg, args.out, shard_index=args.shard, num_shards=args.num_shards,
                                        formats=formats, progress=progress)
        except (ConfigError, ValueError) as exc:
            print(f"execverify synth: {exc}", file=sys.stderr)
            return 2
        wall = time.perf_counter() - t0
        print(f"shard {args.shard}/{args.num_shards}: {result.chunks_done} chunks written, "
              f"{result.chunks_skipped} already complete, {wall:.1f}s")
        if not result.finalized:
            print(f"waiting for other shards; {args.out}/manifest.json lists the completed chunks")
            return 0
        stats = json.loads((result.out_dir / "stats.json").read_text())
        print(json.dumps({k: stats[k] for k in ("programs", "questions", "planned_tasks", "failed_tasks", "yield",
                                                "programs_by_split", "programs_by_level", "questions_by_kind",
                                                "dropped")}, indent=2))
    if args.verify or args.verify_only:
        report = pipeline.verify(args.out, cfg, progress=progress)
        print(json.dumps(report, indent=2))
        return 0 if report["ok"] else 1
    return 0
