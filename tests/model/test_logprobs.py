"""token_logprobs: equals log_softmax of the full logits, chunked == unchunked, temperature, padding."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special
from flax import nnx

from execverify_jax.model.logprobs import token_logprobs


def test_token_logprobs_match_reference(qwen_jax, qwen_torch):
    import torch
    rng = np.random.RandomState(2)
    tokens = rng.randint(0, 512, (3, 21)).astype(np.int32)
    mask = np.ones_like(tokens, bool)
    mask[1, :6] = False  # a left-padded row
    fn = nnx.jit(token_logprobs, static_argnames=("temperature", "chunk"))
    full = np.asarray(fn(qwen_jax, jnp.asarray(tokens), jnp.asarray(mask)))
    chunked = np.asarray(fn(qwen_jax, jnp.asarray(tokens), jnp.asarray(mask), chunk=6))
    hot = np.asarray(fn(qwen_jax, jnp.asarray(tokens), jnp.asarray(mask), temperature=0.6, chunk=8))
    with torch.no_grad():
        logits = qwen_torch(torch.tensor(tokens, dtype=torch.long),
                            attention_mask=torch.tensor(mask.astype(np.int64))).logits.numpy()
    for T, got in ((1.0, full), (1.0, chunked), (0.6, hot)):
        ref = np.take_along_axis(scipy.special.log_softmax(logits[:, :-1] / T, -1),
                                 tokens[:, 1:, None], -1)[..., 0]
        assert got.shape == tokens.shape and (got[:, 0] == 0).all()
        valid = mask[:, 1:] & mask[:, :-1]
        np.testing.assert_allclose(got[:, 1:][valid], ref[valid], atol=1e-4)
    np.testing.assert_allclose(full, chunked, atol=1e-5)


def test_token_logprobs_gradient_flows(tiny_jax):
    tokens = jnp.asarray(np.random.RandomState(0).randint(0, 512, (2, 9)), jnp.int32)
    grads = nnx.jit(nnx.grad(lambda m: token_logprobs(m, tokens, chunk=4).sum()))(tiny_jax)
    norms = [float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads)]
    assert all(np.isfinite(norms)) and sum(n > 0 for n in norms) == len(norms)
