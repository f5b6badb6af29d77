"""RL and optimiser configs: frozen dataclasses whose defaults reproduce the paper's run.

The defaults are verl 0.3.1's GRPO settings as ExecVerify's Stage I/II scripts ran them
(reference §6.2/§6.3): G = 8, 128 prompts per step in 2 mini-batches of 64, clip 0.2/0.2,
dual clip 3, no KL, no entropy, unbiased-std advantages with eps 1e-6, AdamW lr 1e-6 constant,
weight decay 0.01, grad-norm clip 1.0. `docs/GRPO.md` lists every field and the formulas.

Ranges are checked in `__post_init__`; a bad value raises `ConfigError` (a `ValueError`) naming
the field and the value. Pure Python (no jax): the CLI builds these before any accelerator work starts. Load from
YAML with `execverify_jax.config_loader.load(GRPOConfig, path, overrides)`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from execverify_jax.config_loader import bad, check_bool, check_choice, check_int, check_range, check_real

AggMode = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]
AGG_MODES: tuple[str, ...] = (
    "token-mean",
    "seq-mean-token-mean",
    "seq-mean-token-sum",
    "seq-mean-token-sum-norm",
)
Credit = Literal["outcome", "stepwise"]
CREDITS: tuple[str, ...] = ("outcome", "stepwise")
FormatShaping = Literal["tiebreak", "additive"]
FORMAT_SHAPINGS: tuple[str, ...] = ("tiebreak", "additive")
DynamicSignal = Literal["reward", "correctness"]
DYNAMIC_SIGNALS: tuple[str, ...] = ("reward", "correctness")
KLEstimator = Literal["k1", "k2", "k3"]
KL_ESTIMATORS: tuple[str, ...] = ("k1", "k2", "k3")


@dataclasses.dataclass(frozen=True)
class GRPOConfig:
    """GRPO objective and batch structure. Defaults = the paper's verl 0.3.1 run."""

    # Rollout batch structure (verl: rollout.n, train_batch_size, ppo_mini_batch_size, ppo_epochs).
    group_size: int = 8
    prompts_per_step: int = 128
    num_minibatches: int = 2  # optimizer updates per rollout batch per epoch (128 / 64)
    ppo_epochs: int = 1
    micro_batch_size: int = 8  # sequences per accumulation step; does not change the maths
    # Sequence packing of the update (rl/infra/packing.py): rows packed into buffers of pack_len
    # tokens (then micro_batch_size counts buffers); same loss and gradients, fewer padding tokens.
    packing: bool = False
    pack_len: int = 8192
    # Per mini-batch, the buffer length in [longest row, pack_len] (a multiple of pack_len / 16)
    # whose packing computes the fewest tokens (packing.choose_pack_len); false = always pack_len.
    pack_len_auto: bool = True
    max_response_len: int = 4096  # also the constant normaliser of seq-mean-token-sum-norm

    # Advantages.
    norm_adv_by_std: bool = True  # False = Dr.GRPO (r - mean only)
    adv_eps: float = 1e-6
    # Credit assignment: "outcome" = one advantage per sequence (the paper: verl puts the scalar
    # reward on the last token); "stepwise" = each white-box answer line's correctness is its own
    # reward, normalised per question across the group; its tokens get that advantage, the
    # assertion line the output's, every other token the sequence's (docs/GRPO.md).
    credit: Credit = "outcome"
    # How a shaping bonus (reward.format_reward or call_reward > 0; the paper has none, so inert there)
    # enters the advantages: "tiebreak" = GRPO of the correctness part plus a penalty that only
    # separates samples of equal correctness (a well-formed wrong answer never gains);
    # "additive" = GRPO of reward + bonus (before issue 15; can rank a well-formed wrong answer
    # like a correct one after std normalisation).
    format_shaping: FormatShaping = "tiebreak"

    # Clipped surrogate.
    clip_eps_low: float = 0.2
    clip_eps_high: float = 0.2  # > clip_eps_low = DAPO clip-higher
    dual_clip_c: float | None = 3.0  # None disables the dual clip
    max_log_ratio: float = 20.0  # verl (from v0.4.1, PR #1779; not the paper's 0.3.1) clamps log-ratios to +-20

    # Aggregation. verl's name is token-mean, but with 1 sequence per micro-batch the paper's
    # run computed the mean over sequences of per-sequence token means (reference §6.2).
    loss_agg_mode: AggMode = "seq-mean-token-mean"

    # Regularisers (all off in the paper).
    kl_coef: float = 0.0  # KL loss against a frozen reference policy
    kl_estimator: KLEstimator = "k3"
    kl_clamp: float | None = 10.0  # verl clamps its k3 ("low_var_kl") to [-10, 10]
    kl_in_reward_coef: float = 0.0  # r_i - coef * sum_t KL_t (verl use_kl_in_reward)
    kl_in_reward_estimator: KLEstimator = "k1"
    entropy_coef: float = 0.0  # loss -= coef * entropy (aggregated like the loss)

    # DAPO-style data shaping (off in the paper).
    dynamic_sampling: bool = False  # drop groups whose rewards are all equal, refill
    # Most prompt batches generated for one step (verl max_num_gen_batches); then the batch is
    # filled with uninformative groups (zero advantage) rather than stopping the run.
    dynamic_max_rounds: int = 4
    # What makes a group informative: "reward" (DAPO: the rewards are not all equal) or
    # "correctness" (the rewards less the shaping bonuses are not all equal). With a format bonus a
    # group that differs only in format passes "reward" and carries no correctness signal; on the
    # warm demo most io_mixed groups are such (docs/GRPO.md §2, "dynamic sampling").
    dynamic_signal: DynamicSignal = "reward"
    overlong_filter: bool = False  # mask out sequences truncated at max_response_len

    def __post_init__(self) -> None:
        check_int("group_size", self.group_size, 1)
        if self.norm_adv_by_std and self.group_size < 2:
            raise bad("group_size", self.group_size,
                       "the unbiased std needs >= 2 samples per group (or set norm_adv_by_std=false)")
        check_int("prompts_per_step", self.prompts_per_step, 1)
        check_int("num_minibatches", self.num_minibatches, 1)
        if self.prompts_per_step % self.num_minibatches:
            raise bad("num_minibatches", self.num_minibatches,
                       f"must divide prompts_per_step={self.prompts_per_step}")
        check_int("ppo_epochs", self.ppo_epochs, 1)
        check_int("micro_batch_size", self.micro_batch_size, 1)
        check_bool("packing", self.packing)
        check_int("pack_len", self.pack_len, 1)
        check_bool("pack_len_auto", self.pack_len_auto)
        if self.packing and self.entropy_coef > 0:
            raise bad("packing", self.packing, f"has no entropy bonus (entropy_coef={self.entropy_coef!r})")
        check_int("max_response_len", self.max_response_len, 1)
        check_bool("norm_adv_by_std", self.norm_adv_by_std)
        if check_real("adv_eps", self.adv_eps) <= 0:
            raise bad("adv_eps", self.adv_eps, "must be > 0")
        check_choice("credit", self.credit, CREDITS)
        check_choice("format_shaping", self.format_shaping, FORMAT_SHAPINGS)
        for name in ("clip_eps_low", "clip_eps_high"):
            v = check_real(name, getattr(self, name))
            if not 0 < v:
                raise bad(name, v, "must be > 0")
        if self.clip_eps_low >= 1:
            raise bad("clip_eps_low", self.clip_eps_low, "must be < 1 (the ratio floor 1 - eps must stay > 0)")
        if self.dual_clip_c is not None and check_real("dual_clip_c", self.dual_clip_c) <= 1:
            raise bad("dual_clip_c", self.dual_clip_c, "must be > 1 (or null to disable)")
        if check_real("max_log_ratio", self.max_log_ratio) <= 0:
            raise bad("max_log_ratio", self.max_log_ratio, "must be > 0")
        if self.loss_agg_mode not in AGG_MODES:
            raise bad("loss_agg_mode", self.loss_agg_mode, f"must be one of {list(AGG_MODES)}")
        check_range("kl_coef", self.kl_coef, 0.0)
        check_range("kl_in_reward_coef", self.kl_in_reward_coef, 0.0)
        check_range("entropy_coef", self.entropy_coef, 0.0)
        for name in ("kl_estimator", "kl_in_reward_estimator"):
            if getattr(self, name) not in KL_ESTIMATORS:
                raise bad(name, getattr(self, name), f"must be one of {list(KL_ESTIMATORS)}")
        if self.kl_clamp is not None and check_real("kl_clamp", self.kl_clamp) <= 0:
            raise bad("kl_clamp", self.kl_clamp, "must be > 0 (or null to disable)")
        for name in ("dynamic_sampling", "overlong_filter"):
            check_bool(name, getattr(self, name))
        check_int("dynamic_max_rounds", self.dynamic_max_rounds, 1)
        check_choice("dynamic_signal", self.dynamic_signal, DYNAMIC_SIGNALS)

    @property
    def sequences_per_step(self) -> int:
        """Rollouts per RL step (prompts x group size)."""
        return self.prompts_per_step * self.group_size

    @property
    def sequences_per_minibatch(self) -> int:
        """Sequences in one optimizer update."""
        return self.sequences_per_step // self.num_minibatches

    @property
    def uses_reference(self) -> bool:
        """Whether a frozen reference policy's log-probs are needed."""
        return self.kl_coef > 0 or self.kl_in_reward_coef > 0

    @classmethod
    def dr_grpo(cls, **overrides: object) -> "GRPOConfig":
        """Dr.GRPO (Liu et al. 2025): no std normalisation, token sums / constant length."""
        kw: dict = {"norm_adv_by_std": False, "loss_agg_mode": "seq-mean-token-sum-norm"}
        kw.update(overrides)
        return cls(**kw)

    @classmethod
    def dapo(cls, **overrides: object) -> "GRPOConfig":
        """DAPO (Yu et al. 2025): clip-higher 0.28, global token mean, dynamic sampling,
        overlong filtering, no KL."""
        kw: dict = {"clip_eps_high": 0.28, "loss_agg_mode": "token-mean", "dual_clip_c": None,
                    "dynamic_sampling": True, "overlong_filter": True}
        kw.update(overrides)
        return cls(**kw)


Schedule = Literal["constant", "cosine", "linear"]
SCHEDULES: tuple[str, ...] = ("constant", "cosine", "linear")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW + global-norm clipping + LR schedule. Defaults = verl 0.3.1 actor (paper RL).

    Torch's AdamW (which verl and the HF Trainer use) decays every parameter, biases and norm
    scales included; `build_optimizer` does the same. Use `OptimConfig.sft()` for the paper's
    SFT warm-up (LLaMA-Factory/HF Trainer: lr 1e-5, cosine, warmup 10%, no weight decay).
    """

    lr: float = 1e-6
    schedule: Schedule = "constant"
    warmup_ratio: float = 0.0  # fraction of total steps, linear from 0
    warmup_steps: int = 0  # used when > 0, overrides warmup_ratio
    min_lr_ratio: float = 0.0  # cosine/linear decay end value as a fraction of lr
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.01
    grad_clip: float | None = 1.0  # global-norm clip; None disables

    def __post_init__(self) -> None:
        if check_real("lr", self.lr) <= 0:
            raise bad("lr", self.lr, "must be > 0")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", self.schedule, f"must be one of {list(SCHEDULES)}")
        if not 0 <= check_real("warmup_ratio", self.warmup_ratio) < 1:
            raise bad("warmup_ratio", self.warmup_ratio, "must be in [0, 1)")
        check_int("warmup_steps", self.warmup_steps, 0)
        if not 0 <= check_real("min_lr_ratio", self.min_lr_ratio) <= 1:
            raise bad("min_lr_ratio", self.min_lr_ratio, "must be in [0, 1]")
        for name in ("b1", "b2"):
            if not 0 <= check_real(name, getattr(self, name)) < 1:
                raise bad(name, getattr(self, name), "must be in [0, 1)")
        if check_real("eps", self.eps) <= 0:
            raise bad("eps", self.eps, "must be > 0")
        check_range("weight_decay", self.weight_decay, 0.0)
        if self.grad_clip is not None and check_real("grad_clip", self.grad_clip) <= 0:
            raise bad("grad_clip", self.grad_clip, "must be > 0 (or null to disable)")

    def warmup_for(self, total_steps: int) -> int:
        """Warm-up length in optimizer steps for a run of `total_steps`."""
        if self.warmup_steps > 0:
            return self.warmup_steps
        # HF Trainer (the paper's SFT) rounds up; the paper's RL runs had no warm-up.
        return math.ceil(self.warmup_ratio * total_steps)

    @classmethod
    def sft(cls, **overrides: object) -> "OptimConfig":
        """The paper's SFT optimiser (reference §6.1)."""
        kw: dict = {"lr": 1e-5, "schedule": "cosine", "warmup_ratio": 0.1, "weight_decay": 0.0}
        kw.update(overrides)
        return cls(**kw)
