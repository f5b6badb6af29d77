"""Export parameters to a Hugging Face directory that `AutoModelForCausalLM.from_pretrained` loads.

Writes safetensors shards of at most `max_shard_bytes` (HF naming `model-00001-of-0000N`, plus
`model.safetensors.index.json`; a single shard is plain `model.safetensors`), `config.json`,
`generation_config.json` and, when given, the tokenizer files of a tokenizer directory. Tensors
are fetched one at a time (`process_allgather` on multi-host), so host memory holds at most one
shard. A stacked parameter [L, ...] is fetched one layer at a time. Only process 0 writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import ml_dtypes
import numpy as np
from etils import epath
from flax import nnx
from safetensors.numpy import save_file
from tqdm import tqdm

from execverify_jax.model import hf_mapping
from execverify_jax.model import sharding as shd
from execverify_jax.model.config import ModelConfig
from execverify_jax.model.params import flat_params

NP_DTYPES = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}
DTYPE_ALIASES = {"fp32": "float32", "f32": "float32", "bf16": "bfloat16", "fp16": "float16",
                 "f16": "float16", "float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "vocab.json", "merges.txt", "tokenizer.model",
                   "chat_template.jinja", "chat_template.json")


def canonical_dtype(name: str) -> str:
    """"bf16" -> "bfloat16" etc.; errors name the value."""
    if name not in DTYPE_ALIASES:
        raise ValueError(f"unknown dtype {name!r}; use one of {sorted(DTYPE_ALIASES)}")
    return DTYPE_ALIASES[name]


def generation_config(cfg: ModelConfig) -> dict:
    """A minimal generation_config.json consistent with the model config."""
    d = {"_from_model_config": True}
    for k in ("bos_token_id", "eos_token_id", "pad_token_id"):
        v = getattr(cfg, k)
        if v is not None:
            d[k] = list(v) if isinstance(v, tuple) else v
    return d


def save_hf(cfg: ModelConfig, state: nnx.State, out_dir: str | Path, dtype: str = "bfloat16",
            max_shard_bytes: int = 5 * 10**9, tokenizer_dir: str | Path | None = None) -> Path:
    """Writes an HF directory for (cfg, state) in `dtype`; returns the directory."""
    dtype = canonical_dtype(dtype)
    np_dtype = NP_DTYPES[dtype]
    out = Path(out_dir)
    params = flat_params(state)
    # Plan the shards from shapes alone, before fetching anything.
    items = []
    for path, var in params.items():
        template, layout = hf_mapping.ours_to_hf(path)
        shape = var.get_value().shape
        stacked = hf_mapping.is_stacked(template)
        nbytes = int(np.prod(shape[1:] if stacked else shape)) * np.dtype(np_dtype).itemsize
        for layer, hf_key in enumerate(hf_mapping.hf_keys(path, cfg.num_layers)):
            items.append((hf_key, path, layout, nbytes, layer if stacked else None))
    shards: list[list[tuple]] = [[]]
    size = 0
    for it in items:
        if shards[-1] and size + it[3] > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(it)
        size += it[3]
    writer = jax.process_index() == 0
    if writer:
        out.mkdir(parents=True, exist_ok=True)
    names = (["model.safetensors"] if len(shards) == 1 else
             [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))])
    weight_map = {}
    total = 0
    for fname, shard in tqdm(list(zip(names, shards)), desc="export shards", disable=len(shards) < 2):
        tensors = {}
        for hf_key, path, layout, nbytes, layer in shard:
            value = params[path].get_value()
            # Every process takes part in the gather.
            host = shd.to_host(value if layer is None else value[layer])
            tensors[hf_key] = hf_mapping.to_hf(host.astype(np_dtype), layout)
            weight_map[hf_key] = fname
            total += nbytes
        if writer:
            save_file(tensors, str(out / fname), metadata={"format": "pt"})
    if writer:
        if len(shards) > 1:
            index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
            (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
        (out / "config.json").write_text(json.dumps(cfg.to_hf_config(torch_dtype=dtype), indent=2))
        (out / "generation_config.json").write_text(json.dumps(generation_config(cfg), indent=2))
        if tokenizer_dir is not None:
            copy_tokenizer_files(tokenizer_dir, out)
    return out


def copy_tokenizer_files(tokenizer_dir: str | Path, out_dir: str | Path) -> list[str]:
    """Copies the known tokenizer files of a directory (or a sentencepiece .model file)."""
    src = Path(tokenizer_dir)
    if src.is_file():
        epath.Path(src).copy(epath.Path(out_dir) / "tokenizer.model", overwrite=True)
        return ["tokenizer.model"]
    if not src.is_dir():
        raise FileNotFoundError(f"tokenizer directory {src} does not exist")
    copied = [n for n in TOKENIZER_FILES if (src / n).is_file()]
    if not copied:
        raise FileNotFoundError(f"{src}: no tokenizer files (looked for {list(TOKENIZER_FILES)})")
    for n in copied:  # out_dir may be a gs:// run directory (etils.epath)
        epath.Path(src / n).copy(epath.Path(out_dir) / n, overwrite=True)
    return copied
