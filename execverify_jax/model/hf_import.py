"""Import a local Hugging Face Qwen2/Llama directory straight into sharded parameters.

Each parameter is built with `jax.make_array_from_callback`: every device's shard is read from
the safetensors file(s) with `safe_open(...).get_slice(...)`, so no host or device ever holds a
full copy of a large model. Works with `model.safetensors` or a sharded checkpoint with
`model.safetensors.index.json`. Problems (missing shards, missing/unexpected tensors, shape
mismatches, unsupported configs) are errors naming the file and tensor/field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh
from safetensors import safe_open

from execverify_jax.model import hf_mapping
from execverify_jax.model import sharding as shd
from execverify_jax.model.config import ModelConfig, load_hf_config
from execverify_jax.model.params import abstract_model, flat_params, path_tuple
from execverify_jax.model.transformer import Transformer


class CheckpointError(ValueError):
    """A malformed HF checkpoint directory; the message names the file and tensor."""


def weight_files(hf_dir: str | Path) -> dict[str, Path]:
    """{HF tensor name: safetensors file}, checking that every referenced shard exists."""
    hf_dir = Path(hf_dir)
    index = hf_dir / "model.safetensors.index.json"
    single = hf_dir / "model.safetensors"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as exc:
            raise CheckpointError(f"{index}: cannot read field 'weight_map' ({exc!r})") from None
        out = {}
        for name, fname in weight_map.items():
            path = hf_dir / fname
            if not path.is_file():
                raise CheckpointError(f"{index}: tensor {name!r} is in shard {fname!r}, "
                                      f"but {path} does not exist")
            out[name] = path
        return out
    if single.is_file():
        with safe_open(str(single), framework="numpy") as f:
            return {name: single for name in f.keys()}
    raise CheckpointError(f"{hf_dir}: no model.safetensors or model.safetensors.index.json "
                          "(only safetensors checkpoints are supported)")


def _plan(cfg: ModelConfig, files: dict[str, Path]) -> dict[str, tuple[list[str], hf_mapping.Layout]]:
    """{our path: (HF keys, one per layer if stacked, layout)}, erroring on missing and
    unexpected HF tensors."""
    _, abstract = abstract_model(cfg)
    plan = {}
    for path in flat_params(abstract):
        plan[path] = (hf_mapping.hf_keys(path, cfg.num_layers), hf_mapping.ours_to_hf(path)[1])
    wanted = {hf for keys, _ in plan.values() for hf in keys}
    missing = sorted(wanted - set(files))
    if missing:
        raise CheckpointError(f"checkpoint lacks {len(missing)} tensor(s) the config needs, e.g. "
                              f"{missing[:3]} (looked in {sorted({str(p) for p in files.values()})[:3]})")
    unexpected = []
    for name in files:
        if name in wanted or any(rx.match(name) for rx in hf_mapping.IGNORED_HF):
            continue
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue  # some tied checkpoints still store the (identical) head
        unexpected.append(name)
    if unexpected:
        raise CheckpointError(f"{files[unexpected[0]]}: unexpected tensor(s) {unexpected[:3]} "
                              f"for a {cfg.model_type} config with {cfg.num_layers} layers")
    return plan


def load_hf_state(hf_dir: str | Path, mesh: Mesh | None = None, rules: shd.Rules = shd.TRAIN_RULES,
                  **cfg_overrides: Any) -> tuple[ModelConfig, nnx.GraphDef, nnx.State]:
    """(cfg, graphdef, state) of an HF directory, each parameter placed on its shards.

    `cfg_overrides` set numerics, e.g. param_dtype="bfloat16", dtype="bfloat16", remat=True.
    Without a mesh, parameters go to the default device. A stacked parameter [L, ...] is read
    layer by layer: each device reads only its block of each layer's HF tensor.
    """
    cfg = load_hf_config(hf_dir, **cfg_overrides)
    files = weight_files(hf_dir)
    plan = _plan(cfg, files)
    graphdef, abstract = abstract_model(cfg)
    handles: dict[Path, Any] = {}

    def get_slice(hf_key: str):
        fpath = files[hf_key]
        if fpath not in handles:
            handles[fpath] = safe_open(str(fpath), framework="numpy")
        return handles[fpath].get_slice(hf_key)

    try:
        pairs = []
        for path, var in flat_params(abstract).items():
            hf_keys, layout = plan[path]
            shape, dtype = tuple(var.get_value().shape), var.get_value().dtype
            stacked = hf_mapping.is_stacked(hf_mapping.ours_to_hf(path)[0])
            layer_shape = shape[1:] if stacked else shape
            slices = [get_slice(k) for k in hf_keys]
            want = hf_mapping.hf_shape(layer_shape, layout)
            for hf_key, sl in zip(hf_keys, slices):
                got = tuple(sl.get_shape())
                if got != want:
                    raise CheckpointError(f"{files[hf_key]}: tensor {hf_key!r} has shape {got}, the config "
                                          f"({Path(hf_dir) / 'config.json'}) implies {want}")
            if mesh is None:
                sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
            else:
                axes = var.get_metadata()["logical_axes"]
                sharding = shd.named_sharding(axes, shape, mesh, rules)

            def read(sl, index, layer_shape=layer_shape, layout=layout):
                return hf_mapping.read_block(lambda s: sl[s], layer_shape, layout, index)

            def callback(index, slices=slices, stacked=stacked, dtype=dtype):
                if not stacked:
                    return np.asarray(read(slices[0], index)).astype(dtype)
                layers = range(*index[0].indices(len(slices)))
                return np.stack([np.asarray(read(slices[i], index[1:])).astype(dtype) for i in layers])

            arr = jax.make_array_from_callback(shape, sharding, callback)
            pairs.append((path_tuple(path), var.replace(value=arr)))
    finally:
        handles.clear()
    return cfg, graphdef, nnx.from_flat_state(pairs)


def load_hf_model(hf_dir: str | Path, mesh: Mesh | None = None, rules: shd.Rules = shd.TRAIN_RULES,
                  **cfg_overrides: Any) -> Transformer:
    """An NNX Transformer with the weights of a local HF directory (see `load_hf_state`)."""
    _, graphdef, state = load_hf_state(hf_dir, mesh, rules, **cfg_overrides)
    return nnx.merge(graphdef, state)

