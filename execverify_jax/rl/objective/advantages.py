"""Group-relative advantages and the reward-side data shaping of GRPO variants.

Rollouts are laid out group-contiguous: reward_B[g*G:(g+1)*G] are the G samples of prompt g.
  GRPO (paper, verl 0.3.1):  A_i = (r_i - mean_g) / (std_g + eps), std unbiased (ddof = 1)
  Dr.GRPO:                   A_i =  r_i - mean_g
A group whose rewards are all equal gets A = 0 exactly (forced, not left to float rounding of
r - mean, which divided by eps = 1e-6 could otherwise blow a 1-ulp residue up to ~0.01).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from execverify_jax.rl.objective.config import GRPOConfig
from execverify_jax.rl.objective.kl import kl_estimate


def _groups(reward_B: jax.Array, group_size: int) -> jax.Array:
    if reward_B.ndim != 1:
        raise ValueError(f"reward_B: expected a 1-D array, got shape {reward_B.shape}")
    if group_size < 1 or reward_B.shape[0] % group_size:
        raise ValueError(f"group_size={group_size!r} does not divide the {reward_B.shape[0]} rewards")
    return reward_B.astype(jnp.float32).reshape(-1, group_size)


def group_advantages(reward_B: jax.Array, group_size: int, cfg: GRPOConfig) -> jax.Array:
    """Per-sequence advantages from scalar rewards, normalised within each prompt's group."""
    r_BG = _groups(reward_B, group_size)
    if cfg.norm_adv_by_std and group_size < 2:
        raise ValueError(f"group_size={group_size!r}: the unbiased std needs >= 2 samples per group")
    centred_BG = r_BG - r_BG.mean(axis=-1, keepdims=True)
    if cfg.norm_adv_by_std:
        std_B1 = jnp.std(r_BG, axis=-1, keepdims=True, ddof=1)
        centred_BG = centred_BG / (std_B1 + cfg.adv_eps)
    constant_B1 = r_BG.max(axis=-1, keepdims=True) == r_BG.min(axis=-1, keepdims=True)
    return jnp.where(constant_B1, 0.0, centred_BG).reshape(-1)


def shaped_advantages(correct_B: jax.Array, shaping_B: jax.Array, group_size: int,
                      cfg: GRPOConfig) -> jax.Array:
    """Advantages of rewards r = correctness + shaping (a format bonus) with `cfg.format_shaping`.

    "additive" (the plain GRPO of r): the bonus enters the group statistics, so after std
    normalisation [0.2, 0 x 7] and [2.2, 0 x 7] get the same advantages (+2.475 / -0.354): a
    well-formed wrong answer is pushed up as hard as a correct one.
    "tiebreak": GRPO advantages of the correctness part only, plus a penalty
    shaping_i - max{shaping_j : j in the group, correctness_j == correctness_i} <= 0 that only
    separates samples of equal correctness. A well-formed wrong answer therefore never has a
    positive advantage, a well-formed fully correct one never a negative one, and neither is
    ranked against a sample of different correctness by its format.
    """
    if cfg.format_shaping == "additive":
        return group_advantages(correct_B.astype(jnp.float32) + shaping_B, group_size, cfg)
    c_BG = _groups(correct_B, group_size)
    s_BG = _groups(shaping_B, group_size)
    same_BGG = c_BG[:, :, None] == c_BG[:, None, :]
    best_BG = jnp.max(jnp.where(same_BGG, s_BG[:, None, :], -jnp.inf), axis=-1)
    return group_advantages(correct_B, group_size, cfg) + (s_BG - best_BG).reshape(-1)


def stepwise_advantages(adv_B: jax.Array, step_reward_BK: jax.Array, step_valid_BK: jax.Array,
                        segment_BC: jax.Array, group_size: int, cfg: GRPOConfig) -> jax.Array:
    """Per-token advantages of stepwise credit (`grpo.credit: stepwise`).

    step_reward_BK holds K per-step rewards of each sequence (column 0 the output / assertion,
    column k the k-th white-box question); step_valid_BK marks the columns a sequence's question
    has (the same for a whole group). Each column is normalised across its group exactly as GRPO
    normalises sequence rewards (`group_advantages`). segment_BC maps each completion token to
    the advantage it takes: 0 = the sequence's own advantage adv_B (reasoning, tags, surplus
    lines), k >= 1 = step column k - 1. A token pointing at an invalid column takes adv_B.
    """
    B, K = step_reward_BK.shape
    if adv_B.shape != (B,) or segment_BC.shape[0] != B or step_valid_BK.shape != (B, K):
        raise ValueError(f"shapes disagree: adv_B {adv_B.shape}, step_reward_BK {step_reward_BK.shape}, "
                         f"step_valid_BK {step_valid_BK.shape}, segment_BC {segment_BC.shape}")
    if K == 0:
        return jnp.broadcast_to(adv_B[:, None], segment_BC.shape).astype(jnp.float32)
    r_KB = step_reward_BK.astype(jnp.float32).T
    step_adv_BK = jax.vmap(lambda r_B: group_advantages(r_B, group_size, cfg))(r_KB).T
    step_adv_BK = jnp.where(step_valid_BK.astype(bool), step_adv_BK, adv_B[:, None])
    table_BK1 = jnp.concatenate([adv_B[:, None].astype(jnp.float32), step_adv_BK], axis=1)
    seg_BC = jnp.clip(segment_BC.astype(jnp.int32), 0, K)
    return jnp.take_along_axis(table_BK1, seg_BC, axis=1)


def informative_groups(reward_BG: jax.Array) -> jax.Array:
    """Dynamic sampling (DAPO): True for groups whose rewards are not all equal.

    reward_BG has one row per prompt. Groups with identical rewards have zero advantage and give no
    gradient; the loop drops them and samples more prompts until the batch is full.
    """
    if reward_BG.ndim != 2:
        raise ValueError(f"reward_BG: expected shape (prompts, G), got {reward_BG.shape}")
    return reward_BG.max(axis=-1) != reward_BG.min(axis=-1)


def truncated_sequences(completion_BC: jax.Array, mask_BC: jax.Array, stop_ids: tuple[int, ...] | list[int],
                        max_len: int) -> jax.Array:
    """True for completions that hit `max_len` tokens without ending in a stop token.

    Completions are right-padded: mask_BC is 1 on a prefix of each row.
    """
    if not stop_ids:
        raise ValueError("stop_ids: need at least one stop token id")
    len_B = mask_BC.astype(jnp.int32).sum(axis=-1)
    last_B = jnp.take_along_axis(completion_BC, jnp.maximum(len_B - 1, 0)[:, None], axis=-1)[:, 0]
    stopped_B = jnp.isin(last_B, jnp.asarray(stop_ids, dtype=completion_BC.dtype)) & (len_B > 0)
    return (len_B >= max_len) & ~stopped_B


def overlong_filter(mask_BC: jax.Array, truncated_B: jax.Array) -> jax.Array:
    """Overlong filtering (DAPO): truncated sequences leave the loss (mask zeroed).

    They still take part in the advantage statistics of their group, as in DAPO/verl; with a
    sequence-mean aggregation they are also left out of the sequence count S.
    """
    return mask_BC * (~truncated_B.astype(bool))[:, None].astype(mask_BC.dtype)


def kl_penalized_rewards(reward_B: jax.Array, old_logp_BC: jax.Array, ref_logp_BC: jax.Array,
                         mask_BC: jax.Array, coef: float, estimator: str = "k1") -> jax.Array:
    """KL in the reward (verl `use_kl_in_reward`, fixed coefficient): r_i - coef * sum_t KL_t.

    Uses the rollout policy's log-probs; for GRPO verl sums token-level rewards, so the penalty
    enters as a per-sequence sum before group normalisation.
    """
    if coef < 0:
        raise ValueError(f"kl_in_reward_coef={coef!r}: must be >= 0")
    kl_BC = kl_estimate(old_logp_BC, ref_logp_BC, estimator)
    kl_B = jnp.where(mask_BC.astype(bool), kl_BC, 0.0).sum(axis=-1)
    return reward_B.astype(jnp.float32) - coef * kl_B
