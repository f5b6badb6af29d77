"""Per-token log-probabilities of given tokens under the model (what GRPO's ratio needs).

Memory: the hidden states are computed once; logits are then produced `chunk` positions at a time
inside a `lax.map`, and each chunk is reduced to log-probs with a logsumexp, so at most a
B x chunk x V slab of logits exists at once and no log-softmax array is ever built.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from execverify_jax.model.transformer import Transformer


def _chunk_logp(model: Transformer, h_BTD: jax.Array, targets_BT: jax.Array,
                temperature: float) -> jax.Array:
    logits_BTV = model.logits(h_BTD) / temperature
    chosen_BT = jnp.take_along_axis(logits_BTV, targets_BT[..., None], axis=-1)[..., 0]
    return chosen_BT - jax.nn.logsumexp(logits_BTV, axis=-1)


def token_logprobs(model: Transformer, tokens_BT: jax.Array, mask_BT: jax.Array | None = None,
                   positions_BT: jax.Array | None = None, temperature: float = 1.0,
                   chunk: int | None = None) -> jax.Array:
    """logp_BT[b, t] = log p(tokens[b, t] | tokens[b, :t]) at `temperature`; logp_BT[:, 0] = 0.

    Args:
      tokens_BT: prompt + completion ids (either padding side; pads are scored but meaningless,
        so mask them out of any loss).
      mask_BT: True for real tokens (default: all real).
      positions_BT: explicit position ids (default: count real tokens).
      temperature: divide logits by it (match the sampler's temperature for GRPO ratios).
      chunk: positions per logits slab (the last slab is padded); None = all positions at once.
    """
    h_BTD = model.hidden(tokens_BT, positions_BT, mask_BT)
    # Hidden state at t predicts token t + 1.
    h_BTD, targets_BT = h_BTD[:, :-1], tokens_BT[:, 1:]
    B, T1, D = h_BTD.shape
    if chunk is None or chunk >= T1:
        logp_BT = _chunk_logp(model, h_BTD, targets_BT, temperature)
    else:
        n = -(-T1 // chunk)
        pad = n * chunk - T1
        h_nBcD = jnp.pad(h_BTD, ((0, 0), (0, pad), (0, 0))).reshape(B, n, chunk, D).swapaxes(0, 1)
        t_nBc = jnp.pad(targets_BT, ((0, 0), (0, pad))).reshape(B, n, chunk).swapaxes(0, 1)
        logp_nBc = jax.lax.map(lambda ht: _chunk_logp(model, ht[0], ht[1], temperature), (h_nBcD, t_nBc))
        logp_BT = logp_nBc.swapaxes(0, 1).reshape(B, n * chunk)[:, :T1]
    return jnp.concatenate([jnp.zeros((B, 1), logp_BT.dtype), logp_BT], axis=1)
