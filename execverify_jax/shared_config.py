"""Config sections shared by several commands: the device mesh and the sampling knobs.

Pure Python (no jax): `TrainConfig`, the eval/generate configs and `model/sharding.py` all use
these one definitions. Values are checked with the `config_loader` helpers (`ConfigError`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from execverify_jax.config_loader import ConfigError, bad, check_bool, check_choice, check_int, check_range

MESH_AXES = ("data", "fsdp", "tensor")


@dataclass(frozen=True)
class MeshConfig:
    """Mesh axis sizes; -1 means "all remaining devices" (at most one axis may be -1).

    In YAML a mapping (`mesh: {data: 1, fsdp: -1}`) or the CLI shorthand string
    (`mesh: "data=1,fsdp=-1"`, also `--mesh data=1,fsdp=-1`); omitted axes keep their defaults.
    """

    data: int = -1
    fsdp: int = 1
    tensor: int = 1

    def __post_init__(self) -> None:
        for axis in MESH_AXES:
            if isinstance(getattr(self, axis), bool) or not isinstance(getattr(self, axis), int):
                raise bad(f"mesh.{axis}", getattr(self, axis), "must be an integer")
        sizes = [self.data, self.fsdp, self.tensor]
        if sum(s == -1 for s in sizes) > 1:
            raise ConfigError(f"at most one mesh axis may be -1, got {self}", "mesh")
        if any(s == 0 or s < -1 for s in sizes):
            raise ConfigError(f"mesh axis sizes must be positive or -1, got {self}", "mesh")

    @classmethod
    def parse(cls, spec: str) -> "MeshConfig":
        """"data=-1,fsdp=2,tensor=1" -> MeshConfig; unknown axes and bad sizes are errors."""
        sizes: dict[str, int] = {}
        for item in filter(None, (s.strip() for s in spec.split(","))):
            name, sep, value = item.partition("=")
            if not sep or name.strip() not in MESH_AXES:
                raise ConfigError(f"bad mesh item {item!r}: expected AXIS=SIZE with AXIS in {MESH_AXES}", "mesh")
            try:
                sizes[name.strip()] = int(value)
            except ValueError:
                raise ConfigError(f"bad mesh size in {item!r}: {value!r} is not an integer", "mesh") from None
        return cls(**sizes)


@dataclass(frozen=True)
class SamplingConfig:
    """How completions are sampled, everywhere (eval, generate, filter-difficulty, RL rollouts).

    temperature 0 means greedy decoding (top_p/top_k are then ignored); top_p null or 1 and
    top_k null mean no truncation. RL rollouts additionally require temperature > 0 (checked by
    `RolloutSection`): G identical greedy samples per prompt would give zero advantages.
    Subclasses add their own fields and may change the defaults.

    engine: which generator (model/generation.py). continuous (default) = the slot engine of
    model/engine.py: `slots` rows in flight, refilled as rows finish, `steps_per_call` decode
    steps between admission checks, attention over the live length in `block`-position blocks,
    free slots filled `prefill_batch` rows per admission prefill (a padded batch of that many
    rows: large values waste prefill work when only a few slots are free); while rows wait, a
    decode call ends as soon as `admit_min` slots are free; `prefill_granule` (0 = off) pads an
    admission's prompts to a multiple of it when shorter than their bucket; `share_prompts`
    (default true) prefills each distinct prompt once for all its rows (the G samples of a GRPO
    group) and copies its keys/values into their slots (false: every row prefilled on admission).
    static = the batched Sampler (each call runs to its longest row). For the same seed the two
    draw different *sampled* tokens (different key schedules); greedy output is the same.
    """

    max_new_tokens: int = 1024
    temperature: float = 1.0
    top_p: float | None = None
    top_k: int | None = None
    engine: Literal["static", "continuous"] = "continuous"
    slots: int = 64
    steps_per_call: int = 16
    block: int = 128
    prefill_batch: int = 8
    admit_min: int = 1
    prefill_granule: int = 0
    share_prompts: bool = True

    def __post_init__(self) -> None:
        check_int("max_new_tokens", self.max_new_tokens, 1)
        check_choice("engine", self.engine, ENGINES)
        for name in ("slots", "steps_per_call", "block", "prefill_batch", "admit_min"):
            check_int(name, getattr(self, name), 1)
        check_int("prefill_granule", self.prefill_granule, 0)
        check_bool("share_prompts", self.share_prompts)
        check_range("temperature", self.temperature, 0.0)
        if self.top_p is not None:
            check_range("top_p", self.top_p, 0.0, 1.0, lo_open=True)
        if self.top_k is not None:
            check_int("top_k", self.top_k, 1)

    @property
    def greedy(self) -> bool:
        """Temperature 0: argmax decoding."""
        return self.temperature == 0


@dataclass(frozen=True)
class GenerationConfig(SamplingConfig):
    """Decoding options of `execverify eval` (its `generation:` section) and `execverify generate`.

    n: samples per prompt (pass@k); temperature 0 (the default here) = greedy, the paper's setting.
    batch_size: prompts per call of the static sampler (engine: static); the continuous engine
    takes every prompt in one call and keeps `slots` rows in flight.
    raw_prompts: encode an item's `raw_prompt` as-is (completion style) instead of the chat template.
    dtype: inference numerics (auto: float32 on CPU, bfloat16 otherwise; see model/config.py).
    """

    max_new_tokens: int = 1024
    temperature: float = 0.0
    batch_size: int = 16
    n: int = 1
    seed: int = 0
    raw_prompts: bool = False
    dtype: str = "auto"
    mesh: MeshConfig = field(default_factory=MeshConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("batch_size", self.batch_size, 1)
        check_int("n", self.n, 1)
        check_choice("dtype", self.dtype, DTYPES)


DTYPES = ("auto", "float32", "bfloat16", "bf16-matmul")
ENGINES = ("static", "continuous")  # model/generation.py's (this module imports no jax)
