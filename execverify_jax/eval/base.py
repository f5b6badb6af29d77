"""What a benchmark module provides, and the grading context the runner hands it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from execverify_jax.eval.items import EvalItem, LoadReport, Verdict
from execverify_jax.rewards.config import RewardConfig

STYLES = ("execverify", "official")


@dataclass
class GradeContext:
    """Shared grading resources. The sandbox pool is started on first use (scoring `--responses`
    for output prediction needs none) and closed by the runner.

    timeout_s: wall limit of one ground-truth / test run (the paper used 0.5 s, which flakes
        under load; the default is a few seconds, with CPU-time limits from the sandbox).
    trace_timeout_s: wall limit of one REval ground-truth trace job.
    workers: sandbox worker processes (None: one per CPU).
    """

    timeout_s: float = 3.0
    trace_timeout_s: float = 60.0
    workers: int | None = None
    preload: tuple[str, ...] = ()
    _pool: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def pool(self) -> Any:
        """The sandbox pool (started lazily, thread-safe)."""
        with self._lock:
            if self._pool is None:
                from execverify_jax.data.sandbox import SandboxPool
                from execverify_jax.eval.sandboxed import HUMANEVAL_TARGET, REVAL_TARGET, SNIPPET_TARGET
                from execverify_jax.rewards.scorer import PRELOAD

                self._pool = SandboxPool(self.workers, preload=(*PRELOAD, REVAL_TARGET, SNIPPET_TARGET,
                                                                HUMANEVAL_TARGET, *self.preload))
            return self._pool

    def limits(self, timeout_s: float | None = None, memory_mb: int = 1024) -> Any:
        """Sandbox `Limits` with the given wall time (default `timeout_s`)."""
        from execverify_jax.data.sandbox import Limits

        return Limits(timeout_s=timeout_s or self.timeout_s, memory_mb=memory_mb)

    def reward_config(self, **overrides: Any) -> RewardConfig:
        """A RewardConfig with this context's timeout (the rewards' grading rules otherwise)."""
        return RewardConfig(oi_timeout_s=self.timeout_s, codegen_test_timeout_s=self.timeout_s,
                            codegen_all_timeout_s=self.timeout_s * 4 + 1.0, **overrides)

    def close(self) -> None:
        """Stops the pool if one was started."""
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None


class Benchmark(Protocol):
    """A benchmark: items from a data path, grades of responses, and its metrics."""

    name: str

    def load(self, data: Path, style: str, limit: int | None) -> LoadReport:
        """Reads the data; malformed records are skipped and counted in the report."""

    def grade(self, items: list[EvalItem], responses: list[list[str]], ctx: GradeContext) -> list[list[Verdict]]:
        """One verdict per response (responses[i] are the samples of items[i])."""

    def summarize(self, items: list[EvalItem], verdicts: list[list[Verdict]]) -> dict[str, Any]:
        """Benchmark-specific metrics (the runner adds accuracy / pass@k per task)."""

    def oracle(self, items: list[EvalItem], ctx: GradeContext) -> list[str | None]:
        """A correct response per item built from the ground truth (None: not expressible)."""
