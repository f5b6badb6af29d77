"""KV cache: a left-padded prefill then token-by-token decode gives the full forward's logits."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from execverify_jax.model.kv_cache import KVCache
from execverify_jax.model.sampler import left_pad


def test_cached_decode_equals_full_forward(tiny_jax):
    """Prefill a left-padded batch, then feed the rest token by token: logits == full forward."""
    model = tiny_jax
    rng = np.random.RandomState(0)
    seqs = [list(rng.randint(0, 512, n)) for n in (7, 12)]
    P_, extra = 8, 4  # prompts are the first len-4 tokens; the last 4 are decoded one by one
    prompt_BP, lengths_B = left_pad([s[:-extra] for s in seqs], P_, 0)
    cache = KVCache.init(2, 2, P_ + extra, 2, 16)

    @nnx.jit
    def step(m, toks, cache, lengths):
        return m.decode_step(toks, cache, lengths)

    logits, cache = step(model, jnp.asarray(prompt_BP), cache, jnp.asarray(lengths_B))
    got = [np.asarray(logits[:, -1])]
    for t in range(extra - 1):
        toks = jnp.asarray([[s[len(s) - extra + t]] for s in seqs], jnp.int32)
        logits, cache = step(model, toks, cache, cache.lengths_B + 1)
        got.append(np.asarray(logits[:, 0]))
    forward = nnx.jit(lambda m, t: m(t))
    for b, s in enumerate(seqs):
        full = np.asarray(forward(model, jnp.asarray([s])))[0]
        want = full[len(s) - extra - 1: len(s) - 1]
        np.testing.assert_allclose(np.stack([g[b] for g in got]), want, atol=2e-5)
