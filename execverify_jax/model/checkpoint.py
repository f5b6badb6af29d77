"""Orbax save/restore of model parameters, with the ModelConfig JSON alongside.

Layout of a CKPT directory:
    CKPT/model_config.json   ModelConfig.to_json_dict()
    CKPT/params/             Orbax StandardCheckpointer tree {"embedding": ..., "layers": {"attn": {"wq": [L, ...]}}}
Restore places every parameter directly on its shards (sharded abstract target).

Layer layout: parameters of the L blocks are stacked ([L, ...] under "layers"). Checkpoints of
the earlier per-layer layout ({"layers": {"0": {...}, "1": ...}}) are converted on restore: each
layer is restored onto its own shards and the layers are stacked on device (a one-time cost; save
again to store the stacked layout).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath
from flax import nnx
from jax.sharding import Mesh

from execverify_jax.model import sharding as shd
from execverify_jax.model.config import ModelConfig
from execverify_jax.model.params import abstract_model, flat_params, path_tuple
from execverify_jax.model.transformer import Transformer
from execverify_jax.paths import run_path

CONFIG_NAME = "model_config.json"
PARAMS_NAME = "params"


def is_checkpoint(path: str | Path) -> bool:
    """Whether `path` looks like a CKPT directory written by `save_params`."""
    p = Path(path)
    return (p / CONFIG_NAME).is_file() and (p / PARAMS_NAME).is_dir()


def _nested(flat: dict[str, Any]) -> dict:
    out: dict = {}
    for dotted, value in flat.items():
        node = out
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in tree.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def save_params(ckpt_dir: str | Path, cfg: ModelConfig, state: nnx.State) -> epath.Path:
    """Saves params + model config to `ckpt_dir` (created; must not already hold params)."""
    ckpt_dir = run_path(ckpt_dir)  # local or gs:// (pathlib would turn gs:// into gs:/)
    tree = _nested({k: v.get_value() for k, v in flat_params(state).items()})
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(ckpt_dir / PARAMS_NAME, tree)
    ckpt.wait_until_finished()
    if jax.process_index() == 0:
        (ckpt_dir / CONFIG_NAME).write_text(json.dumps(cfg.to_json_dict(), indent=2))
    return ckpt_dir


def load_config(ckpt_dir: str | Path) -> ModelConfig:
    """The ModelConfig stored in a CKPT directory."""
    path = Path(ckpt_dir) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; {ckpt_dir} is not a model checkpoint")
    try:
        return ModelConfig.from_json_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def restore_params(ckpt_dir: str | Path, mesh: Mesh | None = None,
                   rules: shd.Rules = shd.TRAIN_RULES, **cfg_overrides: Any
                   ) -> tuple[ModelConfig, nnx.GraphDef, nnx.State]:
    """(cfg, graphdef, state) from a CKPT directory, parameters restored onto their shards.

    `cfg_overrides` may change numerics (param_dtype converts on restore, dtype, remat).
    """
    ckpt_dir = Path(ckpt_dir).absolute()
    cfg = load_config(ckpt_dir).replace(**cfg_overrides) if cfg_overrides else load_config(ckpt_dir)
    graphdef, abstract = abstract_model(cfg)
    flat = flat_params(abstract)
    if mesh is None:
        sharding_of = lambda var: jax.sharding.SingleDeviceSharding(jax.devices()[0])  # noqa: E731
    else:
        sharding_of = lambda var: shd.named_sharding(  # noqa: E731
            var.get_metadata()["logical_axes"], var.get_value().shape, mesh, rules)
    target = {k: jax.ShapeDtypeStruct(v.get_value().shape, v.get_value().dtype, sharding=sharding_of(v))
              for k, v in flat.items()}
    ckpt = ocp.StandardCheckpointer()
    stored = ckpt.metadata(ckpt_dir / PARAMS_NAME).item_metadata.tree
    if _is_per_layer(stored):
        restored = _restore_per_layer(ckpt, ckpt_dir / PARAMS_NAME, stored, target, cfg.num_layers)
    else:
        restored = _flatten(ckpt.restore(ckpt_dir / PARAMS_NAME, _nested(target)))
    pairs = [(path_tuple(k), var.replace(value=restored[k])) for k, var in flat.items()]
    return cfg, graphdef, nnx.from_flat_state(pairs)


def _is_per_layer(stored: Any) -> bool:
    """Whether a stored params tree has the old per-layer layout {"layers": {"0": ...}}."""
    layers = stored.get("layers", {}) if hasattr(stored, "get") else {}
    return any(str(k).isdigit() for k in layers)


def _restore_per_layer(ckpt: ocp.StandardCheckpointer, path: Path, stored: Any,
                       target: dict[str, jax.ShapeDtypeStruct], num_layers: int) -> dict[str, jax.Array]:
    """Restores an old per-layer checkpoint into the stacked layout of `target`."""
    found = sorted(int(k) for k in stored["layers"])
    if found != list(range(num_layers)):
        raise ValueError(f"{path}: per-layer (pre-stacking) checkpoint with layers {found[:3]}..{found[-1:]}, "
                         f"but model_config.json says num_layers={num_layers}")
    old: dict[str, jax.ShapeDtypeStruct] = {}
    for name, t in target.items():
        if not name.startswith("layers."):
            old[name] = t
            continue
        spec = t.sharding.spec if isinstance(t.sharding, jax.sharding.NamedSharding) else None
        one = (t.sharding if spec is None else
               jax.sharding.NamedSharding(t.sharding.mesh, jax.sharding.PartitionSpec(*tuple(spec)[1:])))
        for i in range(num_layers):
            old[f"layers.{i}.{name[len('layers.'):]}"] = jax.ShapeDtypeStruct(t.shape[1:], t.dtype, sharding=one)
    flat = _flatten(ckpt.restore(path, _nested(old)))
    out = {}
    for name, t in target.items():
        if not name.startswith("layers."):
            out[name] = flat[name]
            continue
        rest = name[len("layers."):]
        parts = [flat.pop(f"layers.{i}.{rest}") for i in range(num_layers)]
        out[name] = jax.jit(lambda *a: jax.numpy.stack(a), out_shardings=t.sharding)(*parts)
    return out


def restore_model(ckpt_dir: str | Path, mesh: Mesh | None = None,
                  rules: shd.Rules = shd.TRAIN_RULES, **cfg_overrides: Any) -> Transformer:
    """An NNX Transformer restored from a CKPT directory."""
    _, graphdef, state = restore_params(ckpt_dir, mesh, rules, **cfg_overrides)
    return nnx.merge(graphdef, state)


def load_any(path: str | Path, mesh: Mesh | None = None, rules: shd.Rules = shd.TRAIN_RULES,
             **cfg_overrides: Any) -> tuple[ModelConfig, nnx.GraphDef, nnx.State]:
    """(cfg, graphdef, state) from a CKPT directory or a Hugging Face directory."""
    if is_checkpoint(path):
        return restore_params(path, mesh, rules, **cfg_overrides)
    if (Path(path) / "config.json").is_file():
        from execverify_jax.model.hf_import import load_hf_state
        return load_hf_state(path, mesh, rules, **cfg_overrides)
    raise FileNotFoundError(f"{path}: neither a model checkpoint ({CONFIG_NAME} + {PARAMS_NAME}/) "
                            "nor a Hugging Face directory (config.json)")
