"""`execverify train`: GRPO stage I (white-box questions) or stage II (code generation).

    execverify train --config configs/stage1_qwen2p5_coder_7b.yaml --out RUN [--set key=value ...]

An existing RUN with checkpoints resumes automatically from the latest one (same config).
"""

from __future__ import annotations

import argparse
import json
import sys

from execverify_jax.commands import add_config_args, load_options

NAME = "train"
HELP = "GRPO training (stage I or II) from a config"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the flags (no heavy imports)."""
    add_config_args(parser, required=True, what="a TrainConfig (configs/*.yaml)", example="grpo.group_size=4")
    parser.add_argument("--out", required=True, help="run directory (resumed when it has checkpoints)")
    parser.add_argument("--distributed", action="store_true",
                        help="call jax.distributed.initialize() (multi-host; also automatic on TPU pods/SLURM)")


def run(args: argparse.Namespace) -> int:
    """Loads the config, trains, prints a JSON summary."""
    from execverify_jax.rl.run_config import TrainConfig

    cfg = load_options(TrainConfig, args, "train")
    if cfg is None:
        return 2
    from execverify_jax.model.sharding import maybe_initialize_distributed
    if args.distributed:
        import os
        os.environ.setdefault("EXECVERIFY_DISTRIBUTED", "1")
    maybe_initialize_distributed()
    from execverify_jax.rl.grpo.trainer import train

    try:
        _, summary = train(cfg, args.out)
    except (ValueError, FileNotFoundError) as exc:
        print(f"execverify train: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"rl_steps": summary["rl_steps"], "steps_this_run": summary["steps_this_run"],
                      "wall_s": round(summary["wall_s"], 1),
                      "last": {k: round(v, 4) for k, v in summary["last"].items()}}, indent=1))
    return 0
