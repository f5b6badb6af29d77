"""`execverify import-hf`: a local Hugging Face Qwen2/Llama directory -> an Orbax model checkpoint."""

from __future__ import annotations

import argparse

NAME = "import-hf"
HELP = "import a Hugging Face checkpoint directory into an Orbax checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the flags (no heavy imports)."""
    parser.add_argument("--hf", required=True, help="local HF directory (config.json + safetensors)")
    parser.add_argument("--out", required=True, help="output checkpoint directory (CKPT)")
    parser.add_argument("--param-dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                        help="dtype to store the parameters in (default float32)")
    parser.add_argument("--mesh", default="data=-1", help="mesh axes, e.g. 'fsdp=-1' or 'data=2,tensor=4'")


def run(args: argparse.Namespace) -> int:
    """Loads the HF weights straight onto their shards and saves them with Orbax."""
    from pathlib import Path

    from execverify_jax.model import sharding as shd
    from execverify_jax.model.checkpoint import save_params
    from execverify_jax.model.hf_import import load_hf_state

    if (Path(args.out) / "params").exists():
        print(f"error: {args.out} already holds a checkpoint; choose a new --out")
        return 2
    shd.maybe_initialize_distributed()
    mesh = shd.make_mesh(shd.parse_mesh_spec(args.mesh))
    cfg, _, state = load_hf_state(args.hf, mesh, shd.TRAIN_RULES, param_dtype=args.param_dtype)
    out = save_params(args.out, cfg, state)
    print(f"imported {args.hf} ({cfg.model_type}, {cfg.num_params() / 1e6:.1f}M params, "
          f"{args.param_dtype}) -> {out}")
    return 0
