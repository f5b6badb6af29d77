"""The train state: parameters (NNX state), optax state, step and RNG, laid out on the mesh.

Precision: parameters and the AdamW moments are float32 (`ModelConfig.param_dtype`, the master
copy); the forward/backward runs in `ModelConfig.dtype` (bfloat16 on accelerators), because the
model casts each weight to the compute dtype where it is used. Gradients therefore arrive in fp32
(the cast's transpose) and are accumulated in fp32 (rl/infra/accumulate.py).

Sharding: every parameter follows the model's logical rules (`model/sharding.py`, TRAIN_RULES:
FSDP over `embed`, tensor parallel over heads/mlp/vocab). Optimizer moments have the same shapes
as the parameters and get the same shardings; scalars (step, counts, RNG) are replicated.
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


def state_shardings(model_cfg: ModelConfig, tx: optax.GradientTransformation, mesh: Mesh,
                    rules: shd.Rules = shd.TRAIN_RULES) -> TrainState:
    """A TrainState of NamedShardings: params by the logical rules; the optimizer state as XLA
    lays out `tx.init` of those params (moments take their parameter's sharding), read from the
    compiled init without allocating anything."""
    _, abstract = abstract_model(model_cfg)
    p_sh = param_shardings(model_cfg, mesh, rules)
    p_in = with_shardings(abstract, p_sh)
    rep = _replicated(mesh)
    o_sh = jax.jit(tx.init).lower(p_in).compile().output_shardings
    # Scalars (Adam's count) come back on a single device; keep everything on the mesh.
    o_sh = jax.tree.map(lambda sh: sh if isinstance(sh, NamedSharding) and sh.mesh == mesh else rep, o_sh)
    return TrainState(params=p_sh, opt_state=o_sh, step=rep, rng=rep)


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
