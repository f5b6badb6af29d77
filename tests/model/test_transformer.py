"""The decoder's full-sequence forward: shapes and dtype, causality, padding on either side, and
the initialisers (the tiny JAX model; no torch)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from execverify_jax.model.config import ModelConfig
from execverify_jax.model.params import create_model
from execverify_jax.model.transformer import _param

V = 512


@pytest.fixture(scope="module")
def forward():
    return nnx.jit(lambda m, t, mask: m(t, mask_BT=mask))


def _tokens(shape, seed=0):
    return np.random.RandomState(seed).randint(0, V, shape).astype(np.int32)


def test_logits_shape_dtype_finite(tiny_jax, forward):
    toks = _tokens((3, 7))
    out = forward(tiny_jax, jnp.asarray(toks), jnp.ones((3, 7), bool))
    assert out.shape == (3, 7, V) and out.dtype == jnp.float32
    assert np.isfinite(np.asarray(out)).all()


def test_causal_a_later_token_does_not_change_earlier_logits(tiny_jax, forward):
    a = _tokens((1, 10))
    b = a.copy()
    b[0, 6] = (b[0, 6] + 1) % V
    la, lb = (np.asarray(forward(tiny_jax, jnp.asarray(t), jnp.ones((1, 10), bool)))[0] for t in (a, b))
    np.testing.assert_allclose(la[:6], lb[:6], atol=1e-6)
    assert np.abs(la[6:] - lb[6:]).max() > 1e-3  # and it does change its own and later ones


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_does_not_change_real_token_logits(tiny_jax, forward, side):
    seq = _tokens((1, 6), seed=1)
    alone = np.asarray(forward(tiny_jax, jnp.asarray(seq), jnp.ones((1, 6), bool)))[0]
    pad = np.full((1, 4), 7, np.int32)  # an arbitrary id: padding is masked, not a special token
    toks = np.concatenate([pad, seq] if side == "left" else [seq, pad], axis=1)
    mask = np.zeros((1, 10), bool)
    real = slice(4, 10) if side == "left" else slice(0, 6)
    mask[0, real] = True
    padded = np.asarray(forward(tiny_jax, jnp.asarray(toks), jnp.asarray(mask)))[0]
    np.testing.assert_allclose(padded[real], alone, atol=1e-5)
    assert np.isfinite(padded).all()  # fully masked rows stay finite


def test_initialisers_are_functions_and_seeded():
    cfg = ModelConfig.tiny(num_layers=1)
    m = create_model(cfg, seed=3)
    assert np.all(np.asarray(m.final_norm.scale.get_value()) == 1.0)
    assert np.all(np.asarray(m.layers.attn.bq.get_value()) == 0.0)
    std = float(np.asarray(m.layers.mlp.w_up.get_value()).std())
    assert 0.018 < std < 0.022
    again = create_model(cfg, seed=3)
    np.testing.assert_array_equal(np.asarray(m.embedding.get_value()), np.asarray(again.embedding.get_value()))


def test_an_init_name_is_no_longer_accepted():
    # Initialisers are jax.nn.initializers functions: a string (or a misspelt name) is an error,
    # where it used to silently give ones.
    with pytest.raises(TypeError):
        _param(nnx.Rngs(0), (2,), ("norm",), jnp.float32, "nromal")
