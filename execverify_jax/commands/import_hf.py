"""`execverify import-hf`: a local Hugging Face Qwen2/Llama directory (or a GGUF file, dequantized
through transformers) -> an Orbax model checkpoint."""

from __future__ import annotations

import argparse

NAME = "import-hf"
HELP = "import a Hugging Face checkpoint directory into an Orbax checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the flags (no heavy imports)."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--hf", help="local HF directory (config.json + safetensors)")
    src.add_argument("--gguf", metavar="FILE",
                     help="a GGUF file (e.g. Q4_1): dequantized through transformers (extra 'gguf') into "
                          "OUT/hf, an HF directory in --param-dtype with the tokenizer, then imported")
    parser.add_argument("--out", required=True, help="output checkpoint directory (CKPT)")
    parser.add_argument("--param-dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                        help="dtype to store the parameters in (default float32; --gguf: float32 or bfloat16)")
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
    hf_dir = args.hf
    if args.gguf:
        from execverify_jax.model.hf_gguf import DTYPES, gguf_to_hf_dir

        if args.param_dtype not in DTYPES:
            print(f"error: --gguf needs --param-dtype in {DTYPES}, got {args.param_dtype!r}")
            return 2
        try:
            hf_dir = gguf_to_hf_dir(args.gguf, Path(args.out) / "hf", args.param_dtype)
        except (OSError, ImportError, ValueError) as exc:
            print(f"error: {exc}")
            return 2
        print(f"dequantized {args.gguf} -> {hf_dir} (HF directory with the tokenizer)")
    shd.maybe_initialize_distributed()
    mesh = shd.make_mesh(shd.parse_mesh_spec(args.mesh))
    cfg, _, state = load_hf_state(hf_dir, mesh, shd.TRAIN_RULES, param_dtype=args.param_dtype)
    out = save_params(args.out, cfg, state)
    print(f"imported {args.gguf or args.hf} ({cfg.model_type}, {cfg.num_params() / 1e6:.1f}M params, "
          f"{args.param_dtype}) -> {out}")
    return 0
