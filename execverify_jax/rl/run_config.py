"""`TrainConfig`: everything `execverify train` and `execverify sft` read (YAML + `--set`).

Pure Python (no jax). Nested sections are frozen dataclasses; `execverify_jax.config_loader.load`
rejects unknown keys and wrong types naming the key and value. GRPO/optimizer defaults are the
paper's (rl/objective/config.py); the model, data and rollout sections say what to train and how to sample.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from execverify_jax.config_loader import bad, check_int
from execverify_jax.rewards.config import RewardConfig
from execverify_jax.rl.objective.config import GRPOConfig, OptimConfig
from execverify_jax.shared_config import MeshConfig, SamplingConfig


@dataclass(frozen=True)
class ModelSection:
    """Which policy: `init` (an Orbax checkpoint dir of `execverify import-hf`/`sft`, or a HF
    directory) or, without it, a fresh `preset` with `overrides` (ModelConfig fields)."""

    init: str | None = None
    preset: str = "tiny"
    overrides: dict[str, Any] = field(default_factory=dict)
    dtype: str | None = None  # compute dtype override (bfloat16 on accelerators, float32 on CPU)
    remat: bool | None = None  # rematerialise blocks in the backward pass


@dataclass(frozen=True)
class DataSection:
    """Prompts: `kind` questions (a `synth` output dir or a question JSONL), codegen (Eurus-style
    JSONL, or a synth dir whose programs become problems), or toy (tests/benchmarks)."""

    kind: Literal["questions", "codegen", "toy"] = "questions"
    path: str | None = None
    split: str = "train"
    tokenizer: str | None = None  # HF tokenizer dir (default: the model's init dir)
    buckets: tuple[int, ...] = (256, 512, 1024, 2048)  # prompt length buckets (max = max prompt len)
    shuffle: bool = True
    num_epochs: int | None = 1  # stage I: 4, stage II: 5 (paper); null = forever (use max_steps)
    worker_count: int = 0  # grain worker processes
    layouts: tuple[str, ...] | None = None  # keep only these question kinds (e.g. [io_mixed, oi])
    toy: dict[str, Any] = field(default_factory=dict)  # ToyTask kwargs


@dataclass(frozen=True)
class RolloutSection(SamplingConfig):
    """Sampling of the G completions per prompt (paper: T = 1, top_p = 1, 4096 new tokens).

    The sampling knobs are the shared `SamplingConfig`'s; rollouts additionally need T > 0.
    """

    max_new_tokens: int = 4096
    temperature: float = 1.0
    top_p: float | None = 1.0
    top_k: int | None = None
    prompts_per_call: int | None = None  # static engine: generation chunk (prompts); its scoring overlaps the next
    completion_buckets: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048, 4096, 8192)
    logprob_chunk: int | None = None  # positions per logits slab in the log-prob pass
    # Sampling layout: true = before each rollout, copy the weights device-to-device into the
    # sampling layout (SAMPLE_RULES: no FSDP, so no per-token weight all-gathers) in
    # `sample_dtype` (e.g. bfloat16: half the memory); false = sample from the training arrays.
    sample_reshard: bool = False
    sample_dtype: str | None = None
    # Generation engine (SamplingConfig's engine / slots / steps_per_call / block): continuous
    # (default) = model/engine.py, decode slots refilled as rows finish, each row scored as soon
    # as it finishes (prompts_per_call is ignored); static = the batched Sampler, chunks of
    # prompts_per_call prompts run to their longest row.

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.temperature > 0:
            raise bad("temperature", self.temperature,
                      "RL rollouts need temperature > 0 (0 = greedy: the G samples of a group would be "
                      "identical and every advantage 0)")


@dataclass(frozen=True)
class SFTSection:
    """`execverify sft`: data (ShareGPT JSONL, or `rationales` built from a synth dir's traces)."""

    data: str | None = None
    source: Literal["sharegpt", "rationales"] = "sharegpt"
    epochs: int = 2
    batch_size: int = 128  # sequences per optimizer step
    micro_batch_size: int = 2
    max_len: int = 4096  # cutoff_len
    buckets: tuple[int, ...] = (512, 1024, 2048, 4096)
    max_samples: int | None = 30000
    rationale_max_steps: int = 40  # trace steps written into a built-in rationale
    optim: OptimConfig = field(default_factory=OptimConfig.sft)
    mode: Literal["token-mean", "seq-mean-token-mean"] = "token-mean"
    # Sequence packing (rl/infra/packing.py): each batch's examples packed into buffers of
    # pack_len tokens (micro_batch_size then counts buffers); same loss and gradients.
    packing: bool = False
    pack_len: int = 8192


@dataclass(frozen=True)
class TrainConfig:
    """A GRPO run (stage I or II) or an SFT run."""

    seed: int = 0
    stage: Literal["I", "II", "toy", "sft"] = "I"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    rollout: RolloutSection = field(default_factory=RolloutSection)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    sft: SFTSection = field(default_factory=SFTSection)
    mesh: MeshConfig = field(default_factory=MeshConfig)
    max_steps: int | None = None  # RL steps (each = prompts_per_step prompts); null = until data ends
    total_steps_hint: int | None = None  # for LR schedules when max_steps is null
    save_every: int = 50
    keep_checkpoints: int = 3
    async_checkpoints: bool = True
    sandbox_workers: int | None = None
    tensorboard: bool = True
    progress: bool = True
    log_samples: int = 2  # completions per step written to RUN/samples.jsonl

    def __post_init__(self) -> None:
        check_int("save_every", self.save_every, 1)
        if self.max_steps is not None:
            check_int("max_steps", self.max_steps, 1)

    def replace(self, **kw: Any) -> "TrainConfig":
        """A copy with top-level fields changed."""
        return dataclasses.replace(self, **kw)
