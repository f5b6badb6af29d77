"""Per-token log-probabilities of given tokens under the model (GRPO ratios, SFT cross-entropy).

Memory: the hidden states are computed once; logits are then produced `chunk` positions at a time
inside a `lax.map`, and each chunk is reduced to log-probs with a logsumexp, so at most a
B x chunk x V slab of logits exists at once and no log-softmax array is ever built. The chunk body
is `jax.checkpoint`ed, so under `jax.grad` the backward pass recomputes each slab of logits from
the (saved) hidden states instead of keeping every slab as a residual: no [T, V] block of the
sequence is ever stored. GRPO needs only the C completion positions (`completion_logprobs`), so
logits are never computed for the prompt; packed rows gather their completion positions first
(`gathered_logprobs`) for the same reason.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from execverify_jax.model.transformer import Transformer, project_logits

DEFAULT_CHUNK = 1024  # positions per logits slab in the training steps (B x 1024 x V fp32)


def target_logprobs(model: Transformer, h_BTD: jax.Array, target_BT: jax.Array,
                    temperature: float = 1.0, chunk: int | None = None, with_hit: bool = False
                    ) -> tuple[jax.Array, jax.Array | None]:
    """(logp_BT, hit_BT): log softmax(logits / temperature)[target] at each position of h_BTD,
    and (with_hit) whether the target is the argmax (first index on ties, like jnp.argmax).

    h_BTD are final-normed hidden states aligned with `target_BT` (position t's prediction).
    chunk: positions per logits slab (the last slab is padded); None = all positions at once.
    """
    cfg = model.cfg
    B, T, D = h_BTD.shape

    # Rematerialised: the backward pass recomputes the slab's logits (only h, w, targets saved).
    @functools.partial(jax.checkpoint, prevent_cse=False)
    def one(w, h_BcD, t_Bc):
        logits_BcV = project_logits(cfg, h_BcD, w) / temperature
        chosen_Bc = jnp.take_along_axis(logits_BcV, t_Bc[..., None], axis=-1)[..., 0]
        hit_Bc = (jnp.argmax(logits_BcV, axis=-1) == t_Bc) if with_hit else None
        return chosen_Bc - jax.nn.logsumexp(logits_BcV, axis=-1), hit_Bc

    w = model.head_weight()
    if chunk is None or chunk >= T:
        return one(w, h_BTD, target_BT)
    n = -(-T // chunk)
    pad = n * chunk - T
    h_nBcD = jnp.pad(h_BTD, ((0, 0), (0, pad), (0, 0))).reshape(B, n, chunk, D).swapaxes(0, 1)
    t_nBc = jnp.pad(target_BT, ((0, 0), (0, pad))).reshape(B, n, chunk).swapaxes(0, 1)
    logp_nBc, hit_nBc = jax.lax.map(lambda ht: one(w, ht[0], ht[1]), (h_nBcD, t_nBc))

    def unchunk(x_nBc):
        return None if x_nBc is None else x_nBc.swapaxes(0, 1).reshape(B, n * chunk)[:, :T]

    return unchunk(logp_nBc), unchunk(hit_nBc)


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
    logp_BT, _ = target_logprobs(model, h_BTD[:, :-1], tokens_BT[:, 1:], temperature, chunk)
    return jnp.concatenate([jnp.zeros((tokens_BT.shape[0], 1), logp_BT.dtype), logp_BT], axis=1)


def completion_logprobs(model: Transformer, tokens_BT: jax.Array, C: int,
                        mask_BT: jax.Array | None = None, temperature: float = 1.0,
                        chunk: int | None = None) -> jax.Array:
    """logp_BC of the last C tokens of each row (the completion): `token_logprobs(...)[:, -C:]`,
    but logits are computed for those C positions only."""
    h_BCD = model.hidden(tokens_BT, None, mask_BT)[:, -C - 1:-1]
    return target_logprobs(model, h_BCD, tokens_BT[:, -C:], temperature, chunk)[0]


def gathered_logprobs(model: Transformer, h_BTD: jax.Array, tokens_BT: jax.Array, target_pos_BC: jax.Array,
                      temperature: float = 1.0, chunk: int | None = None) -> jax.Array:
    """logp_BC of the tokens at buffer positions target_pos_BC (each from the hidden state one
    position before it), logits computed for those C positions only.

    For packed rows (rl/infra/packing.py): h_BTD are the final-normed hidden states of a whole
    buffer, target_pos_BC its completion tokens' positions (>= 1; unused columns hold 0 and get
    a meaningless value to be masked). The gather's gradient scatters back into h_BTD.
    """
    h_BCD = jnp.take_along_axis(h_BTD, jnp.maximum(target_pos_BC - 1, 0)[..., None], axis=1)
    target_BC = jnp.take_along_axis(tokens_BT, target_pos_BC, axis=1)
    return target_logprobs(model, h_BCD, target_BC, temperature, chunk)[0]
