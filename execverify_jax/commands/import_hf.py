"""`execverify import-hf`: a local Hugging Face Qwen2/Llama directory (or a GGUF file, dequantized
through transformers) -> an Orbax model checkpoint."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Literal

from execverify_jax.commands import add_config_args, load_options
from execverify_jax.config_loader import ConfigError
from execverify_jax.shared_config import MeshConfig

NAME = "import-hf"
HELP = "import a Hugging Face checkpoint directory into an Orbax checkpoint"


@dataclass(frozen=True)
class ImportOptions:
    """`execverify import-hf` options (YAML keys; the flags are shorthands)."""

    out: str  # output checkpoint directory (CKPT)
    hf: str | None = None  # local HF directory (config.json + safetensors)
    gguf: str | None = None  # or a GGUF file, dequantized through transformers
    param_dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # dtype the parameters are stored in
    mesh: MeshConfig = field(default_factory=MeshConfig)

    def __post_init__(self) -> None:
        if (self.hf is None) == (self.gguf is None):
            raise ConfigError(f"give exactly one of hf and gguf (got hf={self.hf!r}, gguf={self.gguf!r})")


FLAGS = {"hf": "hf", "gguf": "gguf", "out": "out", "param_dtype": "param_dtype", "mesh": "mesh"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the flags (no heavy imports)."""
    add_config_args(parser, example="mesh=fsdp=-1")
    parser.add_argument("--hf", help="local HF directory (config.json + safetensors); this or --gguf")
    parser.add_argument("--gguf", metavar="FILE",
                        help="a GGUF file (e.g. Q4_1): dequantized through transformers (extra 'gguf') into "
                             "OUT/hf, an HF directory in --param-dtype with the tokenizer, then imported")
    parser.add_argument("--out", help="output checkpoint directory (CKPT); required")
    parser.add_argument("--param-dtype", choices=["float32", "bfloat16", "float16"],
                        help="dtype to store the parameters in (default float32; --gguf: float32 or bfloat16)")
    parser.add_argument("--mesh", help="mesh axes, e.g. 'fsdp=-1' or 'data=2,tensor=4' (default data=-1)")


def run(args: argparse.Namespace) -> int:
    """Loads the HF weights straight onto their shards and saves them with Orbax."""
    from pathlib import Path

    from execverify_jax.model import sharding as shd
    from execverify_jax.model.checkpoint import save_params
    from execverify_jax.model.hf_import import load_hf_state

    opts = load_options(ImportOptions, args, "import-hf", FLAGS)
    if opts is None:
        return 2
    if (Path(opts.out) / "params").exists():
        print(f"error: {opts.out} already holds a checkpoint; choose a new --out")
        return 2
    hf_dir = opts.hf
    if opts.gguf:
        from execverify_jax.model.hf_gguf import DTYPES, gguf_to_hf_dir

        if opts.param_dtype not in DTYPES:
            print(f"error: --gguf needs --param-dtype in {DTYPES}, got {opts.param_dtype!r}")
            return 2
        try:
            hf_dir = gguf_to_hf_dir(opts.gguf, Path(opts.out) / "hf", opts.param_dtype)
        except (OSError, ImportError, ValueError) as exc:
            print(f"error: {exc}")
            return 2
        print(f"dequantized {opts.gguf} -> {hf_dir} (HF directory with the tokenizer)")
    shd.maybe_initialize_distributed()
    mesh = shd.make_mesh(opts.mesh)
    cfg, _, state = load_hf_state(hf_dir, mesh, shd.TRAIN_RULES, param_dtype=opts.param_dtype)
    out = save_params(opts.out, cfg, state)
    print(f"imported {opts.gguf or opts.hf} ({cfg.model_type}, {cfg.num_params() / 1e6:.1f}M params, "
          f"{opts.param_dtype}) -> {out}")
    return 0
