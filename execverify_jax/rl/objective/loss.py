"""The GRPO policy loss (verl 0.3.1's clipped surrogate with dual clip) as a pure JAX function.

Per token, with rho = exp(logp - old_logp) and the sequence's advantage A:
  L1 = -A * rho,  L2 = -A * clip(rho, 1 - eps_low, 1 + eps_high),  L = max(L1, L2)
  if A < 0 and dual clip is on:  L = min(L, -c * A)
  l = L + kl_coef * KL(pi || ref) - entropy_coef * H
aggregated with `cfg.loss_agg_mode` (execverify_jax/rl/objective/aggregation.py). Pass `norm` = the
`loss_norm` of the whole mini-batch when calling on a micro-batch: the returned loss and every
metric except `*_max` then sum exactly to the full-batch values (rl/infra/accumulate.py does that).
Formulas, defaults and the differences to verl/TRL/tunix are in docs/GRPO.md.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from execverify_jax.rl.objective.aggregation import LossNorm, aggregate, loss_norm, masked_token_mean
from execverify_jax.rl.objective.config import GRPOConfig
from execverify_jax.rl.objective.kl import kl_estimate


def _check_shapes(logp_BC: jax.Array, old_logp_BC: jax.Array, adv_B: jax.Array, mask_BC: jax.Array,
                  **optional: jax.Array | None) -> None:
    if logp_BC.ndim != 2:
        raise ValueError(f"logp_BC: expected shape (B, C), got {logp_BC.shape}")
    for name, arr in {"old_logp_BC": old_logp_BC, "mask_BC": mask_BC, **optional}.items():
        if arr is not None and arr.shape != logp_BC.shape:
            raise ValueError(f"{name}: shape {arr.shape} differs from logp_BC {logp_BC.shape}")
    if adv_B.shape not in (logp_BC.shape[:1], logp_BC.shape):
        raise ValueError(f"adv_B: expected shape ({logp_BC.shape[0]},) or {logp_BC.shape} (per token), "
                         f"got {adv_B.shape}")


def clipped_surrogate(ratio_BC: jax.Array, adv_B1: jax.Array, cfg: GRPOConfig) -> tuple[jax.Array, jax.Array]:
    """(per-token clipped loss, per-token 'dual clip binds' flags) for ratios and advantages."""
    l1_BC = -adv_B1 * ratio_BC
    l2_BC = -adv_B1 * jnp.clip(ratio_BC, 1.0 - cfg.clip_eps_low, 1.0 + cfg.clip_eps_high)
    clipped_BC = jnp.maximum(l1_BC, l2_BC)
    if cfg.dual_clip_c is None:
        return clipped_BC, jnp.zeros(ratio_BC.shape, bool)
    l3_B1 = -adv_B1 * cfg.dual_clip_c
    neg_B1 = adv_B1 < 0
    dual_BC = neg_B1 & (clipped_BC > l3_B1)
    return jnp.where(neg_B1, jnp.minimum(clipped_BC, l3_B1), clipped_BC), dual_BC


def policy_loss(logp_BC: jax.Array, old_logp_BC: jax.Array, adv_B: jax.Array, mask_BC: jax.Array,
                cfg: GRPOConfig, ref_logp_BC: jax.Array | None = None, entropy_BC: jax.Array | None = None,
                *, norm: LossNorm | None = None, segment_ids_BC: jax.Array | None = None
                ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """GRPO loss of a batch of completions and its metrics.

    logp_BC: log pi_theta of the sampled tokens (differentiable); old_logp_BC: log pi_old of the
    same tokens, recomputed by the caller before the update (gradient stopped here); adv_B: one
    advantage per sequence, or per token with shape (B, C) (stepwise credit); mask_BC: 1 on completion tokens that count; ref_logp_BC: frozen
    reference log-probs (needed when cfg.kl_coef > 0, else only monitored); entropy_BC: per-token
    policy entropy (needed when cfg.entropy_coef > 0; must be differentiable for the bonus to act).
    norm: the mini-batch's `loss_norm` (defaults to this batch's own). segment_ids_BC: packed
    rows (rl/infra/packing.py): the arrays are then per packed token, each segment is one
    sequence for the seq-mean-* modes, and adv_B must be per token.

    Metrics (float32 scalars): pg_loss, kl_loss (when kl_coef > 0), kl_ref (token-mean KL to the
    reference, when given), entropy (when given), approx_kl (token-mean k3 of pi_old vs pi),
    clip_frac_low / clip_frac_high (tokens where the low/high clip zeroes the gradient),
    dual_clip_frac, ratio_mean, ratio_max, num_tokens. All are sums of micro-batch values except
    `*_max` (combine with max).
    """
    _check_shapes(logp_BC, old_logp_BC, adv_B, mask_BC, ref_logp_BC=ref_logp_BC, entropy_BC=entropy_BC)
    if cfg.kl_coef > 0 and ref_logp_BC is None:
        raise ValueError(f"kl_coef={cfg.kl_coef!r} > 0 needs ref_logp_BC")
    if cfg.entropy_coef > 0 and entropy_BC is None:
        raise ValueError(f"entropy_coef={cfg.entropy_coef!r} > 0 needs entropy_BC")
    if norm is None:
        norm = loss_norm(mask_BC, segment_ids_BC)
    mask_BC = mask_BC.astype(bool)

    # Padding may hold garbage (inf/NaN log-probs). Replace it with 0 *before* any arithmetic:
    # a `where` after exp/log would still send 0 * inf = NaN back through the unused branch.
    def clean(x_BC: jax.Array) -> jax.Array:
        return jnp.where(mask_BC, x_BC.astype(jnp.float32), 0.0)

    logp_BC = clean(logp_BC)
    old_logp_BC = clean(jax.lax.stop_gradient(old_logp_BC))
    ref_logp_BC = None if ref_logp_BC is None else clean(jax.lax.stop_gradient(ref_logp_BC))
    entropy_BC = None if entropy_BC is None else clean(entropy_BC)
    adv_B1 = jax.lax.stop_gradient(adv_B).astype(jnp.float32)
    # One advantage per sequence broadcasts over its tokens; stepwise credit passes one per token
    # (B, C). Either way every token's loss uses only its own advantage, so the aggregation, and
    # its exactness under micro-batch accumulation, is unchanged.
    adv_B1 = adv_B1[:, None] if adv_B1.ndim == 1 else clean(adv_B1)

    # verl (from v0.4.1, PR #1779) clamps the log-ratio to +-20 so exp cannot overflow.
    log_ratio_BC = jnp.clip(logp_BC - old_logp_BC, -cfg.max_log_ratio, cfg.max_log_ratio)
    ratio_BC = jnp.exp(log_ratio_BC)
    pg_BC, dual_BC = clipped_surrogate(ratio_BC, adv_B1, cfg)

    def agg(x_BC: jax.Array) -> jax.Array:
        return aggregate(x_BC, mask_BC, cfg.loss_agg_mode, norm, cfg.max_response_len, segment_ids_BC)

    total_BC = pg_BC
    metrics: dict[str, jax.Array] = {}
    if ref_logp_BC is not None:
        kl_BC = kl_estimate(logp_BC, ref_logp_BC, cfg.kl_estimator, cfg.kl_clamp, cfg.max_log_ratio)
        metrics["kl_ref"] = masked_token_mean(kl_BC, mask_BC, norm)
        if cfg.kl_coef > 0:
            total_BC = total_BC + cfg.kl_coef * kl_BC
            metrics["kl_loss"] = agg(kl_BC)
    if entropy_BC is not None:
        metrics["entropy"] = masked_token_mean(entropy_BC, mask_BC, norm)
        if cfg.entropy_coef > 0:
            total_BC = total_BC - cfg.entropy_coef * entropy_BC
    loss = agg(total_BC)

    sg = jax.lax.stop_gradient
    ratio_sg_BC = sg(ratio_BC)
    high_BC = (adv_B1 > 0) & (ratio_sg_BC > 1.0 + cfg.clip_eps_high)
    low_BC = (adv_B1 < 0) & (ratio_sg_BC < 1.0 - cfg.clip_eps_low)
    f32 = jnp.float32
    metrics.update(
        pg_loss=sg(agg(pg_BC)),
        # k3 of KL(pi_old || pi) from samples of pi_old: (rho - 1) - log rho.
        approx_kl=masked_token_mean(ratio_sg_BC - 1.0 - sg(log_ratio_BC), mask_BC, norm),
        clip_frac_low=masked_token_mean(low_BC.astype(f32), mask_BC, norm),
        clip_frac_high=masked_token_mean(high_BC.astype(f32), mask_BC, norm),
        dual_clip_frac=masked_token_mean(dual_BC.astype(f32), mask_BC, norm),
        ratio_mean=masked_token_mean(ratio_sg_BC, mask_BC, norm),
        ratio_max=jnp.max(jnp.where(mask_BC, ratio_sg_BC, 0.0), initial=0.0),
        num_tokens=mask_BC.astype(f32).sum(),
    )
    metrics = {k: sg(v) for k, v in metrics.items()}
    return loss, metrics
