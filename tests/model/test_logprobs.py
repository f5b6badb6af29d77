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


def _loss_grads(fn, params, graphdef):
    """(value, grads) of sum(fn(model)) with the model merged from params inside the trace."""
    return jax.jit(jax.value_and_grad(lambda p: fn(nnx.merge(graphdef, p)).sum()))(params)


def test_chunked_target_logprobs_and_hits_equal_full_incl_grads(qwen_jax):
    from execverify_jax.model.logprobs import completion_logprobs, target_logprobs
    graphdef, params = nnx.split(qwen_jax)
    rng = np.random.RandomState(5)
    tokens = jnp.asarray(rng.randint(0, 512, (2, 19)), jnp.int32)
    mask = jnp.ones((2, 19), bool).at[1, :4].set(False)
    target = jnp.asarray(rng.randint(0, 512, (2, 19)), jnp.int32)

    def stats(m, chunk):
        h = m.hidden(tokens, None, mask)
        logp, hit = target_logprobs(m, h, target, temperature=0.7, chunk=chunk, with_hit=True)
        logits = m.logits(h) / 0.7
        ref = jnp.take_along_axis(jax.nn.log_softmax(logits, -1), target[..., None], -1)[..., 0]
        return logp, hit, ref, jnp.argmax(logits, -1) == target

    logp, hit, ref, ref_hit = jax.jit(lambda p: stats(nnx.merge(graphdef, p), 5))(params)
    np.testing.assert_allclose(np.asarray(logp), np.asarray(ref), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(hit), np.asarray(ref_hit))
    v_full, g_full = _loss_grads(lambda m: stats(m, None)[0], params, graphdef)
    v_chunk, g_chunk = _loss_grads(lambda m: stats(m, 5)[0], params, graphdef)
    np.testing.assert_allclose(float(v_chunk), float(v_full), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g_chunk), jax.tree.leaves(g_full)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    # Completion positions only == the tail of the full-sequence log-probs.
    C = 7
    tail = jax.jit(lambda p: token_logprobs(nnx.merge(graphdef, p), tokens, mask, chunk=4)[:, -C:])(params)
    comp = jax.jit(lambda p: completion_logprobs(nnx.merge(graphdef, p), tokens, C, mask, chunk=4))(params)
    np.testing.assert_allclose(np.asarray(comp), np.asarray(tail), atol=1e-6)


def test_chunked_logprob_grad_never_saves_full_logits():
    """Under grad, the compiled temporaries of a chunked log-prob pass stay below one
    [B, T, V] fp32 logits array (the unchunked pass needs several)."""
    from execverify_jax.model.config import ModelConfig
    from execverify_jax.model.logprobs import completion_logprobs
    cfg = ModelConfig.tiny(vocab_size=4096, hidden_size=32, intermediate_size=64, num_heads=2,
                           num_kv_heads=1, attention="chunked", attention_chunk=64)
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: __import__(
        "execverify_jax.model.transformer", fromlist=["Transformer"]).Transformer(cfg, nnx.Rngs(0))))
    B, T = 2, 512
    tokens = jax.ShapeDtypeStruct((B, T), jnp.int32)
    mask = jax.ShapeDtypeStruct((B, T), jnp.bool_)

    def temp_bytes(chunk):
        fn = jax.jit(jax.grad(lambda p, t, m: completion_logprobs(nnx.merge(graphdef, p), t, T - 1, m,
                                                                  chunk=chunk).sum()))
        return fn.lower(abstract, tokens, mask).compile().memory_analysis().temp_size_in_bytes

    full_logits = B * T * cfg.vocab_size * 4
    assert temp_bytes(None) > 2 * full_logits
    assert temp_bytes(64) < full_logits
