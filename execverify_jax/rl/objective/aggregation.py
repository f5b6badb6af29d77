"""Loss aggregation over (sequence, token) grids, exact under micro-batch accumulation.

Every mode is written as a weighted sum  L = sum_{i,t} w_it * l_it  whose weights only use
per-sequence quantities (the sequence's own token count n_i) and *global* mini-batch constants
(`LossNorm`: total tokens N, non-empty sequences S). A sequence never straddles micro-batches, so
computing `LossNorm` once on the whole mini-batch and summing the micro-batch losses gives exactly
the full-batch loss, and therefore exactly its gradient. Averaging per-micro-batch means (what
verl 0.3.x and older TRL did; verl PR #906, TRL #3021) is not: it reweights tokens by their
micro-batch's size.

Modes (verl's names; m_it is the 0/1 mask, C_norm a constant length):
  token-mean               sum_it m l / N
  seq-mean-token-mean      (1/S) sum_i (sum_t m l) / n_i
  seq-mean-token-sum       (1/S) sum_i  sum_t m l
  seq-mean-token-sum-norm  (1/S) sum_i (sum_t m l) / C_norm        (Dr.GRPO)
Sequences with no unmasked token (padding rows, overlong-filtered ones) contribute nothing and are
not counted in S.

Packed rows (rl/infra/packing.py) hold several sequences: pass their `segment_ids_BC` (0 =
padding) and a sequence is a (row, segment id) pair instead of a row, so n_i and S are counted per
segment and every mode gives the padded layout's loss.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from execverify_jax.rl.objective.config import AGG_MODES


class LossNorm(NamedTuple):
    """Global normalisers of one mini-batch (float32 scalars, so they trace without recompiles)."""

    num_tokens: jax.Array  # N: unmasked tokens in the whole mini-batch
    num_seqs: jax.Array  # S: sequences with at least one unmasked token


def segment_counts(m_BC: jax.Array, segment_ids_BC: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(n_S, n_BC): unmasked tokens of every (row, segment) and each token's own segment's."""
    B, C = m_BC.shape
    # Segment ids are < C + 1 (at most C segments in C tokens), so this global id is unique.
    gid_BC = jnp.arange(B, dtype=jnp.int32)[:, None] * (C + 1) + segment_ids_BC.astype(jnp.int32)
    n_S = jax.ops.segment_sum(m_BC.ravel(), gid_BC.ravel(), num_segments=B * (C + 1))
    return n_S, n_S[gid_BC]


def loss_norm(mask_BC: jax.Array, segment_ids_BC: jax.Array | None = None) -> LossNorm:
    """The normalisers of the batch `mask_BC` (packed: with its segment ids); call it on the full
    mini-batch, before splitting."""
    m_BC = mask_BC.astype(jnp.float32)
    n_B = m_BC.sum(axis=-1) if segment_ids_BC is None else segment_counts(m_BC, segment_ids_BC)[0]
    return LossNorm(num_tokens=n_B.sum(), num_seqs=(n_B > 0).astype(jnp.float32).sum())


def combine_norms(norms: list[LossNorm]) -> LossNorm:
    """The normaliser of a mini-batch made of parts whose `loss_norm`s are given."""
    return LossNorm(num_tokens=sum(n.num_tokens for n in norms), num_seqs=sum(n.num_seqs for n in norms))


def token_weights(mask_BC: jax.Array, mode: str, norm: LossNorm | None = None,
                  norm_len: int | None = None, segment_ids_BC: jax.Array | None = None) -> jax.Array:
    """w_BC such that the aggregated loss is sum(w_BC * l_BC); see the module docstring.

    `norm` defaults to this batch's own `loss_norm` (right for an un-split batch only).
    `norm_len` is C_norm, required by seq-mean-token-sum-norm. `segment_ids_BC`: packed rows.
    """
    if mode not in AGG_MODES:
        raise ValueError(f"loss_agg_mode={mode!r}: must be one of {list(AGG_MODES)}")
    m_BC = mask_BC.astype(jnp.float32)
    if norm is None:
        norm = loss_norm(mask_BC, segment_ids_BC)
    # max(., 1) keeps an all-masked batch at loss 0 instead of 0/0 = NaN.
    num_tokens = jnp.maximum(norm.num_tokens, 1.0)
    num_seqs = jnp.maximum(norm.num_seqs, 1.0)
    if mode == "token-mean":
        return m_BC / num_tokens
    if mode == "seq-mean-token-mean":
        n_B1 = (m_BC.sum(axis=-1, keepdims=True) if segment_ids_BC is None
                else segment_counts(m_BC, segment_ids_BC)[1])
        n_B1 = jnp.maximum(n_B1, 1.0)
        return m_BC / n_B1 / num_seqs
    if mode == "seq-mean-token-sum":
        return m_BC / num_seqs
    if norm_len is None or norm_len <= 0:
        raise ValueError(f"norm_len={norm_len!r}: seq-mean-token-sum-norm needs a positive constant length")
    return m_BC / (num_seqs * float(norm_len))


def aggregate(loss_BC: jax.Array, mask_BC: jax.Array, mode: str, norm: LossNorm | None = None,
              norm_len: int | None = None, segment_ids_BC: jax.Array | None = None) -> jax.Array:
    """Aggregates per-token values into a scalar with `mode` (see `token_weights`).

    Masked positions are zeroed with `where`, not multiplied, so NaN/inf in padding cannot leak
    into the loss or its gradient.
    """
    w_BC = token_weights(mask_BC, mode, norm, norm_len, segment_ids_BC)
    safe_BC = jnp.where(mask_BC.astype(bool), loss_BC, 0.0)
    return jnp.sum(w_BC * safe_BC)


def masked_token_mean(x_BC: jax.Array, mask_BC: jax.Array, norm: LossNorm | None = None) -> jax.Array:
    """Token mean of a metric over the mini-batch; sums exactly across micro-batches."""
    return aggregate(x_BC, mask_BC, "token-mean", norm)
