"""Logical axis names, THE rules table (logical -> mesh axes), mesh construction, multi-host init.

Every parameter carries `logical_axes` metadata (e.g. ("embed", "mlp")) and every key activation
is constrained with `shard(x, (BATCH, LENGTH, ACT_EMBED))`. Only this module knows how those names
map onto the mesh axes ("data", "fsdp", "tensor"):

  logical name     TRAIN_RULES          SAMPLE_RULES         what it is
  ---------------  -------------------  -------------------  ------------------------------------
  batch            (data, fsdp)         (data, fsdp)         activation / cache batch
  length           -                    -                    sequence (T) and cache (S) axes
  act_embed        -                    -                    activation width D
  act_heads        tensor               tensor               activation q heads N
  act_kv_heads     tensor               tensor               activation / cache kv heads K
  act_mlp          tensor               tensor               activation MLP hidden F
  act_vocab        tensor               tensor               logits V
  vocab            tensor               tensor, fsdp         embedding / lm_head vocab rows
  embed            fsdp                 -                    weight width D (FSDP shards it)
  q_heads          tensor               tensor, fsdp         weight q heads N
  kv_heads         tensor               tensor, fsdp         weight kv heads K
  mlp              tensor               tensor, fsdp         weight MLP hidden F
  head_dim / norm  -                    -                    never sharded
  layers           -                    -                    the stacked-layer axis L

Sampling moves fsdp from D to the heads / MLP / vocab axes (tensor parallelism over the fsdp
devices): decode is latency-bound, and re-gathering every weight each token (FSDP) would dominate,
while a fully replicated copy of a 7B model (15 GB bf16) would not fit next to the train state.
A mesh axis is used at most once per array, and a dimension that the mesh axes do not divide is
left replicated (e.g. 2 kv heads on tensor=4), so any mesh shape is valid for any model.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from typing import Iterator, Mapping, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

# The mesh config lives in shared_config (pure Python: TrainConfig and the CLI build it without jax).
from execverify_jax.shared_config import MESH_AXES, MeshConfig  # noqa: F401  (re-exported)

# Logical names: weights.
VOCAB = "vocab"
EMBED = "embed"
Q_HEADS = "q_heads"
KV_HEADS = "kv_heads"
HEAD_DIM = "head_dim"
MLP = "mlp"
NORM = "norm"
# Logical names: activations and the KV cache.
BATCH = "batch"
LENGTH = "length"
ACT_EMBED = "act_embed"
ACT_HEADS = "act_heads"
ACT_KV_HEADS = "act_kv_heads"
ACT_MLP = "act_mlp"
ACT_VOCAB = "act_vocab"
LAYERS = "layers"

Rules = Mapping[str, tuple[str, ...]]

TRAIN_RULES: Rules = {
    BATCH: ("data", "fsdp"), LENGTH: (), ACT_EMBED: (), ACT_HEADS: ("tensor",),
    ACT_KV_HEADS: ("tensor",), ACT_MLP: ("tensor",), ACT_VOCAB: ("tensor",),
    VOCAB: ("tensor",), EMBED: ("fsdp",), Q_HEADS: ("tensor",), KV_HEADS: ("tensor",),
    MLP: ("tensor",), HEAD_DIM: (), NORM: (), LAYERS: (),
}
# Sampling: weights tensor-parallel over tensor x fsdp (heads, MLP hidden, vocab), never on D, so a
# decode step moves only (small) activations, never weights; activations and the KV cache stay
# batch-sharded over data x fsdp as in training.
SAMPLE_RULES: Rules = {**TRAIN_RULES, EMBED: (), VOCAB: ("tensor", "fsdp"), Q_HEADS: ("tensor", "fsdp"),
                       KV_HEADS: ("tensor", "fsdp"), MLP: ("tensor", "fsdp")}


def make_mesh(cfg: MeshConfig | Mapping[str, int] | None = None,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ("data", "fsdp", "tensor") mesh with Auto axes (GSPMD style), e.g. {data: -1, tensor: 2}.

    We build `Mesh(...)` directly: `jax.make_mesh` defaults to Explicit axes, under which
    `with_sharding_constraint` on these axes fails.
    """
    if cfg is None:
        cfg = MeshConfig()
    if isinstance(cfg, Mapping):
        unknown = sorted(set(cfg) - set(MESH_AXES))
        if unknown:
            raise ValueError(f"unknown mesh axis {unknown[0]!r}; axes are {MESH_AXES}")
        cfg = MeshConfig(**cfg)
    devices = list(jax.devices() if devices is None else devices)
    sizes = [cfg.data, cfg.fsdp, cfg.tensor]  # MeshConfig checked them (one -1 at most, no 0)
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(f"{len(devices)} devices are not divisible by the fixed mesh axes {cfg}")
        sizes[sizes.index(-1)] = len(devices) // known
    if math.prod(sizes) != len(devices):
        if math.prod(sizes) > len(devices):
            raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices, "
                             f"have {len(devices)}")
        devices = devices[: math.prod(sizes)]
    return Mesh(np.asarray(devices, dtype=object).reshape(sizes), MESH_AXES)


def single_device_mesh(device: jax.Device | None = None) -> Mesh:
    """A 1x1x1 mesh on one device (the reference layout)."""
    return make_mesh(MeshConfig(1, 1, 1), [device or jax.devices()[0]])


def maybe_initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                                 process_id: int | None = None) -> bool:
    """Calls `jax.distributed.initialize()` when configured or on a multi-host launch; idempotent.

    Explicit arguments win; otherwise it runs only if EXECVERIFY_DISTRIBUTED=1 or a known launcher
    variable (TPU pod / SLURM / JAX_COORDINATOR_ADDRESS) is set. Returns whether it initialized.
    """
    if getattr(maybe_initialize_distributed, "_done", False):
        return False
    explicit = coordinator is not None or num_processes is not None
    env = any(os.environ.get(k) for k in ("JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID", "TPU_WORKER_HOSTNAMES"))
    if not explicit and os.environ.get("EXECVERIFY_DISTRIBUTED") != "1" and not env:
        return False
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
    maybe_initialize_distributed._done = True  # type: ignore[attr-defined]
    return True


def logical_to_spec(logical_axes: Sequence[str | None], shape: Sequence[int] | None,
                    mesh: Mesh, rules: Rules) -> PartitionSpec:
    """PartitionSpec for an array with these logical axes under `rules` on `mesh`.

    Mesh axes of size 1 are dropped, a mesh axis is used at most once, and a dimension that is not
    divisible by its mesh axes' product stays replicated (shape=None skips that check).
    """
    used: set[str] = set()
    out: list[str | tuple[str, ...] | None] = []
    for i, name in enumerate(logical_axes):
        if name is None:
            out.append(None)
            continue
        if name not in rules:
            raise KeyError(f"logical axis {name!r} has no sharding rule; known: {sorted(rules)}")
        axes = tuple(a for a in rules[name] if a not in used and mesh.shape.get(a, 1) > 1)
        if shape is not None and axes:
            # Keep the longest prefix of mesh axes that divides the dimension.
            while axes and shape[i] % math.prod(mesh.shape[a] for a in axes):
                axes = axes[:-1]
        used.update(axes)
        out.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    return PartitionSpec(*out)


def named_sharding(logical_axes: Sequence[str | None], shape: Sequence[int] | None,
                   mesh: Mesh, rules: Rules) -> NamedSharding:
    """NamedSharding for logical axes (see `logical_to_spec`)."""
    return NamedSharding(mesh, logical_to_spec(logical_axes, shape, mesh, rules))


def state_shardings(abstract_state, mesh: Mesh, rules: Rules):
    """Shardings pytree for an (abstract) nnx.State whose Variables carry `logical_axes`."""
    def one(var):
        axes = var.get_metadata().get("logical_axes")
        if axes is None:
            raise ValueError(f"parameter of shape {var.get_value().shape} has no logical_axes metadata")
        return named_sharding(axes, var.get_value().shape, mesh, rules)

    return jax.tree.map(one, abstract_state, is_leaf=lambda x: isinstance(x, nnx.Variable))


# ---- activation constraints ------------------------------------------------------------------
# The rules in force while tracing. Set by `use_rules` around jit tracing (trainer, sampler); when
# unset, `shard` is a no-op, so the model runs unchanged on one device and in unit tests.
_ACTIVE = threading.local()


@contextlib.contextmanager
def use_rules(mesh: Mesh | None, rules: Rules) -> Iterator[None]:
    """Within this context, `shard(x, names)` constrains activations on `mesh` under `rules`."""
    prev = getattr(_ACTIVE, "value", None)
    _ACTIVE.value = (mesh, rules) if mesh is not None else None
    try:
        yield
    finally:
        _ACTIVE.value = prev


def active() -> tuple[Mesh, Rules] | None:
    """(mesh, rules) of the enclosing `use_rules`, or None."""
    return getattr(_ACTIVE, "value", None)


def data_parallel_size(mesh: Mesh | None, rules: Rules = TRAIN_RULES) -> int:
    """Devices the batch axis is split over: the product of the mesh axes of the `batch` rule
    (1 without a mesh)."""
    if mesh is None:
        return 1
    return math.prod(mesh.shape.get(a, 1) for a in rules[BATCH])


def layout_key(mesh: Mesh | None, rules: Rules) -> tuple:
    """A hashable (mesh, rules) key, passed as a static argument the jitted function ignores.

    `shard` constraints are read while a function traces, and jit's trace cache is keyed on the
    function and its arguments only (shared by every wrapper of the same function in a process),
    so without this key a trace made without a mesh would be reused by a caller that has one."""
    return (mesh, None if mesh is None else tuple(sorted((k, tuple(v)) for k, v in rules.items())))


class WithLayout:
    """A jitted function called with `layout=layout_key(mesh, rules)` (calls and `.lower`)."""

    def __init__(self, jitted, mesh: Mesh | None, rules: Rules) -> None:
        self.jitted, self.layout = jitted, layout_key(mesh, rules)

    def __call__(self, *args, **kwargs):
        return self.jitted(*args, layout=self.layout, **kwargs)

    def lower(self, *args, **kwargs):
        return self.jitted.lower(*args, layout=self.layout, **kwargs)


def shard(x: jax.Array, logical_axes: Sequence[str | None]) -> jax.Array:
    """Sharding constraint on an activation by logical names; identity when no rules are active."""
    active = getattr(_ACTIVE, "value", None)
    if active is None:
        return x
    mesh, rules = active
    if mesh.size == 1:
        return x
    assert len(logical_axes) == x.ndim, (logical_axes, x.shape)
    return jax.lax.with_sharding_constraint(x, named_sharding(logical_axes, x.shape, mesh, rules))


def to_host(x: jax.Array | np.ndarray) -> np.ndarray:
    """The global value of an array as numpy, on every process.

    A multi-host sharded array is not fully addressable: `np.asarray`/`device_get` refuse it, so
    its shards are all-gathered (every process must call this, like any collective). Fully
    replicated and single-host arrays are fetched directly.
    """
    if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def parse_mesh_spec(spec: str) -> MeshConfig:
    """"data=-1,fsdp=2,tensor=1" -> MeshConfig (the CLI form); unknown axes and bad sizes are errors."""
    return MeshConfig.parse(spec)
