"""The train state: parameters (NNX state), optax state, step and RNG, laid out on the mesh.

Precision: parameters and the AdamW moments are float32 (`ModelConfig.param_dtype`, the master
copy); the forward/backward runs in `ModelConfig.dtype` (bfloat16 on accelerators), because the
model casts each weight to the compute dtype where it is used. Gradients therefore arrive in fp32
(the cast's transpose) and are accumulated in fp32 (rl/infra/accumulate.py).

Sharding: every parameter follows the model's logical rules (`model/sharding.py`, TRAIN_RULES:
FSDP over `embed`, tensor parallel over heads/mlp/vocab). Optimizer moments have the same shapes
as the parameters and get exactly the same shardings (matched by tree structure, not left to XLA);
scalars (step, counts, RNG) are replicated. Per device the train state is therefore
~(4 + 8) bytes x params / (fsdp x tensor) for fp32 params and Adam moments.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from execverify_jax.model import sharding as shd
from execverify_jax.model.config import ModelConfig
from execverify_jax.model.params import abstract_model, create_model, param_shardings


@struct.dataclass
class TrainState:
    """params: nnx.State of the model's Params; opt_state: optax state; step: int32 scalar
    (optimizer updates done); rng: uint32[2] raw PRNG key (raw so Orbax stores it as an array)."""

    params: Any
    opt_state: Any
    step: jax.Array
    rng: jax.Array


def _replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def with_shardings(abstract: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs carrying `shardings` (a prefix tree of NamedShardings) for `abstract`."""
    return jax.tree.map(
        lambda sh, sub: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh), sub),
        shardings, abstract)


def _is_sharding(x: Any) -> bool:
    return isinstance(x, NamedSharding)


def leaf_shardings(shardings: Any, abstract: Any) -> Any:
    """`abstract`'s tree (Variables kept) with every array leaf replaced by its sharding from the
    prefix tree `shardings` (what `optax.tree_map_params` needs to walk params and state together)."""
    return jax.tree.map(lambda sh, sub: jax.tree.map(lambda _: sh, sub), shardings, abstract,
                        is_leaf=_is_sharding)


def opt_state_shardings(tx: optax.GradientTransformation, abstract_params: Any, p_sh: Any,
                        mesh: Mesh) -> Any:
    """Shardings of `tx.init(params)`: every per-parameter leaf (Adam's mu and nu, any other
    moment) takes exactly its parameter's sharding, found by tree structure
    (`optax.tree_map_params`); everything else (counts, schedule state) is replicated.

    Not read from a compiled `tx.init`: its `zeros_like` outputs carry no sharding, so XLA
    replicates them (15.6x the parameter bytes per device on 8 devices).
    """
    rep = _replicated(mesh)
    abstract_opt = jax.eval_shape(tx.init, abstract_params)
    return optax.tree_map_params(tx, lambda _, sh: sh, abstract_opt, leaf_shardings(p_sh, abstract_params),
                                 transform_non_params=lambda _: rep, is_leaf=_is_sharding)


def state_shardings(model_cfg: ModelConfig, tx: optax.GradientTransformation, mesh: Mesh,
                    rules: shd.Rules = shd.TRAIN_RULES) -> TrainState:
    """A TrainState of NamedShardings: params by the logical rules, optimizer moments exactly like
    their parameters (`opt_state_shardings`), scalars (step, RNG) replicated."""
    _, abstract = abstract_model(model_cfg)
    p_sh = param_shardings(model_cfg, mesh, rules)
    rep = _replicated(mesh)
    return TrainState(params=p_sh, opt_state=opt_state_shardings(tx, abstract, p_sh, mesh), step=rep, rng=rep)


def create_train_state(model_cfg: ModelConfig, tx: optax.GradientTransformation, *, seed: int,
                       mesh: Mesh, rules: shd.Rules = shd.TRAIN_RULES,
                       params: nnx.State | None = None) -> tuple[nnx.GraphDef, TrainState]:
    """(graphdef, state): fresh random parameters (or `params`, e.g. an SFT checkpoint), placed on
    their shards, with the optimizer initialised on the same shards."""
    if params is None:
        model = create_model(model_cfg, seed=seed, mesh=mesh, rules=rules)
        graphdef, params = nnx.split(model)
    else:
        graphdef, _ = abstract_model(model_cfg)
        params = jax.device_put(params, param_shardings(model_cfg, mesh, rules))
    shardings = state_shardings(model_cfg, tx, mesh, rules)
    opt_state = jax.jit(tx.init, out_shardings=shardings.opt_state)(params)
    rep = _replicated(mesh)
    state = TrainState(params=params, opt_state=opt_state,
                       step=jax.device_put(jnp.zeros((), jnp.int32), rep),
                       rng=jax.device_put(jax.random.key_data(jax.random.key(seed + 1)), rep))
    return graphdef, state


def abstract_train_state(model_cfg: ModelConfig, tx: optax.GradientTransformation, mesh: Mesh,
                         rules: shd.Rules = shd.TRAIN_RULES) -> TrainState:
    """ShapeDtypeStructs with shardings: the restore target of a checkpoint."""
    _, abstract = abstract_model(model_cfg)
    shardings = state_shardings(model_cfg, tx, mesh, rules)
    opt_abstract = jax.eval_shape(tx.init, abstract)
    tree = TrainState(params=abstract, opt_state=opt_abstract,
                      step=jax.ShapeDtypeStruct((), jnp.int32),
                      rng=jax.ShapeDtypeStruct((2,), jnp.uint32))
    return with_shardings(tree, shardings)


def num_params(state: TrainState) -> int:
    """Number of parameters."""
    return sum(int(x.size) for x in jax.tree.leaves(state.params))
