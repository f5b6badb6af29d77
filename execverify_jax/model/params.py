"""Building, sharding and addressing model parameters (graphdef + nnx.State).

`create_model` initialises parameters directly onto their shards (a jit whose out_shardings come
from the logical-axes metadata), so a large model is never materialised on one device first.
Parameters are addressed by dotted paths ("layers.3.attn.wq"), the names the HF table uses.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh

from execverify_jax.model import sharding as shd
from execverify_jax.model.config import ModelConfig
from execverify_jax.model.transformer import Transformer


def abstract_model(cfg: ModelConfig) -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, abstract state of ShapeDtypeStructs) without allocating anything."""
    return nnx.split(nnx.eval_shape(lambda: Transformer(cfg, nnx.Rngs(0))))


def param_shardings(cfg: ModelConfig, mesh: Mesh, rules: shd.Rules = shd.TRAIN_RULES) -> nnx.State:
    """NamedSharding per parameter for this mesh and rules table."""
    return shd.state_shardings(abstract_model(cfg)[1], mesh, rules)


def abstract_params(cfg: ModelConfig, mesh: Mesh, rules: shd.Rules = shd.TRAIN_RULES
                    ) -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, state of ShapeDtypeStructs carrying their NamedShardings): the parameters as
    `jit(...).lower(...)` takes them for compile-only checks at full size (nothing allocated)."""
    graphdef, abstract = abstract_model(cfg)
    shardings = param_shardings(cfg, mesh, rules)

    def one(var, sharding):
        value = var.get_value()
        return var.replace(value=jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=sharding))

    return graphdef, jax.tree.map(one, abstract, shardings, is_leaf=lambda x: isinstance(x, nnx.Variable))


def create_model(cfg: ModelConfig, seed: int = 0, mesh: Mesh | None = None,
                 rules: shd.Rules = shd.TRAIN_RULES) -> Transformer:
    """A randomly initialised model, each parameter created on its own shards when `mesh` is given."""
    graphdef, _ = abstract_model(cfg)

    def init() -> nnx.State:
        return nnx.split(Transformer(cfg, nnx.Rngs(seed)))[1]

    if mesh is None:
        return nnx.merge(graphdef, jax.jit(init)())
    state = jax.jit(init, out_shardings=param_shardings(cfg, mesh, rules))()
    return nnx.merge(graphdef, state)


def flat_params(state: nnx.State) -> dict[str, nnx.Variable]:
    """{"layers.0.attn.wq": Variable, ...} in a stable order."""
    return {".".join(str(p) for p in path): var for path, var in nnx.to_flat_state(state)}


def path_tuple(dotted: str) -> tuple[Any, ...]:
    """"layers.0.attn.wq" -> ("layers", 0, "attn", "wq") (integer list indices restored)."""
    return tuple(int(p) if p.isdigit() else p for p in dotted.split("."))


def state_from_arrays(cfg: ModelConfig, arrays: dict[str, jax.Array]) -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, state) with each parameter replaced by `arrays[dotted path]` (all required)."""
    graphdef, abstract = abstract_model(cfg)
    flat = flat_params(abstract)
    missing = sorted(set(flat) - set(arrays))
    extra = sorted(set(arrays) - set(flat))
    if missing or extra:
        raise ValueError(f"parameter set mismatch: missing {missing[:5]}, unexpected {extra[:5]}")
    pairs = []
    for name, var in flat.items():
        arr = arrays[name]
        if tuple(arr.shape) != tuple(var.get_value().shape):
            raise ValueError(f"parameter {name}: expected shape {tuple(var.get_value().shape)}, got {tuple(arr.shape)}")
        pairs.append((path_tuple(name), var.replace(value=arr)))
    return graphdef, nnx.from_flat_state(pairs)


def reshard(model: Transformer, mesh: Mesh, rules: shd.Rules, dtype: str | None = None) -> Transformer:
    """The same weights laid out for another mesh/rules (e.g. TRAIN -> SAMPLE), optionally cast."""
    graphdef, state = nnx.split(model)
    cfg = model.cfg if dtype is None else model.cfg.replace(param_dtype=dtype, dtype=dtype)
    shardings = param_shardings(cfg, mesh, rules)

    def move(x):
        return x.astype(cfg.param_dtype)

    new_state = jax.jit(lambda s: jax.tree.map(move, s), out_shardings=shardings)(state)
    if dtype is not None:
        graphdef = nnx.split(nnx.eval_shape(lambda: Transformer(cfg, nnx.Rngs(0))))[0]
    return nnx.merge(graphdef, new_state)


def cast_state(state: nnx.State, dtype: str) -> nnx.State:
    """Every parameter cast to `dtype` (e.g. bf16 weights for sampling)."""
    return jax.tree.map(lambda x: x.astype(jnp.dtype(dtype)), state)
