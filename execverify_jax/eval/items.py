"""The records every benchmark exchanges with the runner: `EvalItem`, `Verdict`, `LoadReport`."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from execverify_jax.jsonl import read_jsonl


@dataclass(frozen=True)
class EvalItem:
    """One prompt of a benchmark.

    id: unique within the benchmark run (responses files are keyed by it).
    messages: chat messages `[{"role", "content"}]` (the prompt the model sees).
    task: sub-task name used for per-task metrics (e.g. `cruxeval-o`, `reval-path`, `oi`).
    meta: JSON-able ground truth and bookkeeping the benchmark's grader needs.
    raw_prompt: for completion-style ("official") prompts, the text to continue as-is (no chat
        template); None means the messages are chat-templated.
    """

    id: str
    messages: list[dict[str, str]]
    task: str
    meta: dict[str, Any] = field(default_factory=dict)
    raw_prompt: str | None = None

    def prompt_record(self) -> dict[str, Any]:
        """The `--write-prompts` line: id, messages (and the raw prompt when there is one)."""
        rec: dict[str, Any] = {"id": self.id, "task": self.task, "messages": self.messages}
        if self.raw_prompt is not None:
            rec["raw_prompt"] = self.raw_prompt
        return rec


@dataclass(frozen=True)
class Verdict:
    """The grade of one response.

    correct: the response counts as solved (pass@k uses this).
    parsed: what the grader understood the answer to be (text; None when nothing parsed).
    reason: "" when correct, else a short machine-readable cause (`no_answer`, `wrong_output`...).
    score: a benchmark-specific scalar (reward, pass rate); 1.0/0.0 when not meaningful.
    details: JSON-able extras (e.g. the coverage prediction for F1, the pass rate).
    """

    correct: bool
    parsed: str | None
    reason: str = ""
    score: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def unparsable(self) -> bool:
        """True when no answer could be extracted from the response at all."""
        return self.parsed is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for samples.jsonl."""
        return {"correct": self.correct, "parsed": self.parsed, "reason": self.reason,
                "score": self.score, **({"details": self.details} if self.details else {})}


@dataclass
class LoadReport:
    """Items of a benchmark plus what was skipped while loading (never fatal)."""

    items: list[EvalItem]
    bad_lines: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    def skip(self, reason: str, example: str = "") -> None:
        """Counts one skipped record under `reason` (keeps a few examples for the report)."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if example and len(self.examples) < 5:
            self.examples.append(f"{reason}: {example[:200]}")


def read_jsonl_dicts(path: Path, report: LoadReport) -> list[dict]:
    """The JSON objects of a JSONL file; blank lines are skipped, bad lines counted in `report`."""
    bad: collections.Counter = collections.Counter()
    out = [rec for _, rec in read_jsonl(path, bad)]
    report.bad_lines += sum(bad.values())
    return out
