"""Per-token KL estimators between the policy and a frozen reference (Schulman's k1/k2/k3).

With samples drawn from the policy pi and d = log ref(o_t) - log pi(o_t):
  k1 = -d                    unbiased for KL(pi||ref), high variance, can be negative
  k2 = d^2 / 2               biased, low variance
  k3 = exp(d) - d - 1        unbiased, >= 0, low variance (verl "low_var_kl", TRL, EasyDeL)
tunix's GRPO default is k1 and verl/TRL's is k3; we default to k3 (docs/GRPO.md).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from execverify_jax.rl.objective.config import KL_ESTIMATORS


def kl_estimate(logp_BC: jax.Array, ref_logp_BC: jax.Array, estimator: str = "k3",
                clamp: float | None = 10.0, max_log_ratio: float = 20.0) -> jax.Array:
    """Per-token KL(pi || ref) estimate; the reference side carries no gradient.

    For k3, d is clipped to +-`max_log_ratio` before exp and the result clipped to [-clamp, clamp]
    (verl's numerics); k1 and k2 are not clamped.
    """
    if estimator not in KL_ESTIMATORS:
        raise ValueError(f"kl_estimator={estimator!r}: must be one of {list(KL_ESTIMATORS)}")
    d_BC = jax.lax.stop_gradient(ref_logp_BC).astype(jnp.float32) - logp_BC.astype(jnp.float32)
    if estimator == "k1":
        return -d_BC
    if estimator == "k2":
        return 0.5 * jnp.square(d_BC)
    d_BC = jnp.clip(d_BC, -max_log_ratio, max_log_ratio)
    kl_BC = jnp.exp(d_BC) - d_BC - 1.0
    if clamp is not None:
        kl_BC = jnp.clip(kl_BC, -clamp, clamp)
    return kl_BC
