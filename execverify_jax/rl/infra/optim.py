"""Builds the optax optimiser described by an `OptimConfig` (torch AdamW semantics).

Order matters and matches torch: clip the *accumulated* gradient by global norm, then AdamW
(decoupled weight decay scaled by the learning rate, applied to every parameter).
"""

from __future__ import annotations

import optax

from execverify_jax.rl.objective.config import OptimConfig


def lr_schedule(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    """Learning rate per optimizer step: linear warm-up from 0, then constant/cosine/linear."""
    if total_steps < 1:
        raise ValueError(f"total_steps={total_steps!r}: must be >= 1")
    warmup = min(cfg.warmup_for(total_steps), total_steps)
    end = cfg.lr * cfg.min_lr_ratio
    if cfg.schedule == "constant":
        after = optax.constant_schedule(cfg.lr)
    elif cfg.schedule == "cosine":
        after = optax.cosine_decay_schedule(cfg.lr, max(total_steps - warmup, 1), alpha=cfg.min_lr_ratio)
    else:
        after = optax.linear_schedule(cfg.lr, end, max(total_steps - warmup, 1))
    if warmup == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, cfg.lr, warmup), after], [warmup])


def build_optimizer(cfg: OptimConfig, total_steps: int) -> optax.GradientTransformation:
    """Global-norm clip (if set) followed by AdamW with the configured schedule."""
    parts = []
    if cfg.grad_clip is not None:
        parts.append(optax.clip_by_global_norm(cfg.grad_clip))
    parts.append(optax.adamw(lr_schedule(cfg, total_steps), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                             weight_decay=cfg.weight_decay))
    return optax.chain(*parts)
