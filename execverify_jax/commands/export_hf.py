"""`execverify export-hf`: an Orbax model checkpoint -> a Hugging Face directory (safetensors)."""

from __future__ import annotations

import argparse

NAME = "export-hf"
HELP = "export an Orbax checkpoint to a Hugging Face directory"


def _size(text: str) -> int:
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "B": 1}
    t = text.strip().upper()
    for u, mult in units.items():
        if t.endswith(u):
            return int(float(t[: -len(u)]) * mult)
    return int(t)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the flags (no heavy imports)."""
    parser.add_argument("--ckpt", required=True, help="checkpoint directory written by import-hf/training")
    parser.add_argument("--out", required=True, help="output HF directory")
    parser.add_argument("--dtype", default="bf16", help="tensor dtype: bf16 (default), fp16 or fp32")
    parser.add_argument("--tokenizer", default=None, help="tokenizer directory (or .model) to copy alongside")
    parser.add_argument("--max-shard-size", type=_size, default=5 * 10**9,
                        help="largest safetensors shard, e.g. 5GB (default) or 500MB")


def run(args: argparse.Namespace) -> int:
    """Restores the parameters and writes config, shards, index and tokenizer files."""
    from execverify_jax.model import sharding as shd
    from execverify_jax.model.checkpoint import restore_params
    from execverify_jax.model.hf_export import canonical_dtype, save_hf

    dtype = canonical_dtype(args.dtype)
    shd.maybe_initialize_distributed()
    mesh = shd.make_mesh(shd.MeshConfig())
    cfg, _, state = restore_params(args.ckpt, mesh, shd.SAMPLE_RULES)
    out = save_hf(cfg, state, args.out, dtype=dtype, max_shard_bytes=args.max_shard_size,
                  tokenizer_dir=args.tokenizer)
    print(f"exported {args.ckpt} -> {out} ({dtype})")
    return 0
