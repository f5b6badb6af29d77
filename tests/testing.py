"""Shared test helpers: a tiny random model built in JAX (no torch, no HF directory).

Importable from every test as `testing` (tests/conftest.py puts this folder on sys.path). Only the
HF parity/import tests need torch (tests/model/conftest.py's `qwen_dir`, `*_torch` fixtures).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from execverify_jax.model import sharding as shd
from execverify_jax.model.config import ModelConfig
from execverify_jax.model.params import create_model, flat_params, param_shardings
from execverify_jax.model.transformer import Transformer


def tiny_config(**kw) -> ModelConfig:
    """Qwen2-style D=64, L=2, N=4, K=2, H=16, F=128, V=512, q/k/v biases, untied head."""
    return ModelConfig.tiny(**kw)


def tiny_model(seed: int = 0, **kw) -> Transformer:
    """A random tiny model whose biases are non-zero and norm scales are not one (the defaults
    would hide a bias or norm bug), like the HF fixture's."""
    model = create_model(tiny_config(**kw), seed=seed)
    rng = np.random.default_rng(seed)
    for name, var in flat_params(nnx.state(model)).items():
        leaf = name.rsplit(".", 1)[-1]
        shape = var.get_value().shape
        if leaf in ("bq", "bk", "bv", "bo"):
            var.set_value(jnp.asarray(rng.normal(0.0, 0.2, shape), jnp.float32))
        elif leaf == "scale":
            var.set_value(jnp.asarray(rng.uniform(0.5, 1.5, shape), jnp.float32))
    return model


def tiny_state(mesh=None, rules: shd.Rules = shd.TRAIN_RULES, seed: int = 0
               ) -> tuple[ModelConfig, nnx.GraphDef, nnx.State]:
    """(cfg, graphdef, params) of `tiny_model(seed)`, placed on `mesh` under `rules` when given."""
    model = tiny_model(seed)
    graphdef, params = nnx.split(model)
    if mesh is not None:
        params = jax.device_put(params, param_shardings(model.cfg, mesh, rules))
    return model.cfg, graphdef, params
