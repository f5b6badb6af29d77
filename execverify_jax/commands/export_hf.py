"""`execverify export-hf`: an Orbax model checkpoint -> a Hugging Face directory (safetensors)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from execverify_jax.commands import add_config_args, load_options
from execverify_jax.shared_config import MeshConfig

NAME = "export-hf"
HELP = "export an Orbax checkpoint to a Hugging Face directory"


def _size(text: str) -> int:
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "B": 1}
    t = text.strip().upper()
    for u, mult in units.items():
        if t.endswith(u):
            return int(float(t[: -len(u)]) * mult)
    return int(t)


@dataclass(frozen=True)
class ExportOptions:
    """`execverify export-hf` options (YAML keys; the flags are shorthands)."""

    ckpt: str  # checkpoint directory written by import-hf/training
    out: str  # output HF directory
    dtype: str = "bf16"  # tensor dtype: bf16, fp16 or fp32
    tokenizer: str | None = None  # tokenizer directory (or .model) to copy alongside
    max_shard_size: int | str = 5 * 10**9  # largest safetensors shard: bytes, or e.g. "500MB"
    mesh: MeshConfig = field(default_factory=MeshConfig)  # where the parameters are restored


FLAGS = {"ckpt": "ckpt", "out": "out", "dtype": "dtype", "tokenizer": "tokenizer", "max_shard_size": "max_shard_size"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the flags (no heavy imports)."""
    add_config_args(parser, example="dtype=fp32")
    parser.add_argument("--ckpt", help="checkpoint directory written by import-hf/training; required")
    parser.add_argument("--out", help="output HF directory; required")
    parser.add_argument("--dtype", help="tensor dtype: bf16 (default), fp16 or fp32")
    parser.add_argument("--tokenizer", default=None, help="tokenizer directory (or .model) to copy alongside")
    parser.add_argument("--max-shard-size", type=_size,
                        help="largest safetensors shard, e.g. 5GB (default) or 500MB")


def run(args: argparse.Namespace) -> int:
    """Restores the parameters and writes config, shards, index and tokenizer files."""
    from execverify_jax.model import sharding as shd
    from execverify_jax.model.checkpoint import restore_params
    from execverify_jax.model.hf_export import canonical_dtype, save_hf

    opts = load_options(ExportOptions, args, "export-hf", FLAGS)
    if opts is None:
        return 2
    try:
        shard_bytes = _size(str(opts.max_shard_size))
    except ValueError:
        print(f"execverify export-hf: config error: max_shard_size={opts.max_shard_size!r}: "
              "expected bytes or a size like 500MB", file=sys.stderr)
        return 2
    dtype = canonical_dtype(opts.dtype)
    shd.maybe_initialize_distributed()
    mesh = shd.make_mesh(opts.mesh)
    cfg, _, state = restore_params(opts.ckpt, mesh, shd.SAMPLE_RULES)
    out = save_hf(cfg, state, opts.out, dtype=dtype, max_shard_bytes=shard_bytes,
                  tokenizer_dir=opts.tokenizer)
    print(f"exported {opts.ckpt} -> {out} ({dtype})")
    return 0
