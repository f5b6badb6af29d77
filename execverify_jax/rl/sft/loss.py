"""Masked next-token cross-entropy for SFT (assistant tokens only), exact under accumulation.

The paper's SFT (LLaMA-Factory on HF Trainer >= 4.46) averages the CE over all assistant tokens of
the accumulated batch (global token mean): that is the default here, via the same `LossNorm`
mechanism as GRPO (compute `loss_norm(mask)` on the whole batch, pass it to each micro-batch).
`seq-mean-token-mean` (every sample weighs the same) is available as an option.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from execverify_jax.rl.objective.aggregation import LossNorm, aggregate, masked_token_mean


def next_token_targets(ids_BT: jax.Array, loss_mask_BT: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(target_BT, mask_BT) aligned with logits of `ids_BT`: position t predicts token t + 1.

    `loss_mask_BT` marks the tokens to be learned (assistant tokens, including the end-of-turn
    token); the last position has no target and is masked.
    """
    if ids_BT.shape != loss_mask_BT.shape:
        raise ValueError(f"loss_mask_BT: shape {loss_mask_BT.shape} differs from ids_BT {ids_BT.shape}")
    target_BT = jnp.concatenate([ids_BT[:, 1:], jnp.zeros_like(ids_BT[:, :1])], axis=1)
    mask_BT = jnp.concatenate([loss_mask_BT[:, 1:], jnp.zeros_like(loss_mask_BT[:, :1])], axis=1)
    return target_BT, mask_BT


def sft_loss(logits_BTV: jax.Array, target_BT: jax.Array, mask_BT: jax.Array, *,
             norm: LossNorm | None = None, mode: str = "token-mean") -> tuple[jax.Array, dict[str, jax.Array]]:
    """Masked CE of `target_BT` under `logits_BTV` (computed in float32) and metrics.

    norm: the whole batch's `loss_norm(mask)` when called on a micro-batch (defaults to this
    batch's own). Metrics: ce (token-mean CE, whatever `mode`), accuracy (token-mean argmax hit
    rate), num_tokens; all sum exactly across micro-batches.
    """
    if logits_BTV.shape[:2] != target_BT.shape or target_BT.shape != mask_BT.shape:
        raise ValueError(f"shapes disagree: logits_BTV {logits_BTV.shape}, target_BT {target_BT.shape}, "
                         f"mask_BT {mask_BT.shape}")
    logits_BTV = logits_BTV.astype(jnp.float32)
    # Out-of-range ids in padding would index garbage; targets are only read where mask is set.
    safe_target_BT = jnp.where(mask_BT.astype(bool), target_BT, 0)
    picked_BT = jnp.take_along_axis(logits_BTV, safe_target_BT[..., None], axis=-1)[..., 0]
    logp_BT = picked_BT - jax.nn.logsumexp(logits_BTV, axis=-1)
    hit_BT = jnp.argmax(logits_BTV, axis=-1) == safe_target_BT
    return sft_loss_from_logp(logp_BT, hit_BT, mask_BT, norm=norm, mode=mode)


def sft_loss_from_logp(logp_BT: jax.Array, hit_BT: jax.Array, mask_BT: jax.Array, *,
                       norm: LossNorm | None = None, mode: str = "token-mean",
                       segment_ids_BT: jax.Array | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
    """`sft_loss` from the target log-probs and argmax hits (model/logprobs.target_logprobs
    computes both chunk by chunk, so the training step never builds [B, T, V] logits).
    `segment_ids_BT`: packed rows (a segment is a sequence for seq-mean-token-mean)."""
    mask_BT = mask_BT.astype(bool)
    nll_BT = -logp_BT
    loss = aggregate(nll_BT, mask_BT, mode, norm, segment_ids_BC=segment_ids_BT)
    sg = jax.lax.stop_gradient
    metrics = {
        "ce": sg(masked_token_mean(nll_BT, mask_BT, norm)),
        "accuracy": masked_token_mean(hit_BT.astype(jnp.float32), mask_BT, norm),
        "num_tokens": mask_BT.astype(jnp.float32).sum(),
    }
    return loss, metrics
