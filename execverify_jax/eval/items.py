"""The records every benchmark exchanges with the runner: `EvalItem`, `Verdict`, `LoadReport`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator


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


BAD_LINE = object()  # what iter_jsonl yields for a line that is not JSON


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(line index, parsed value) for every non-blank line of a JSONL file; a line that does not
    parse yields BAD_LINE instead of stopping the read (the callers count it). Bytes that are not
    UTF-8 become U+FFFD and raw control characters inside strings are accepted: a response with
    a stray byte or NUL is still graded, not lost."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f):
            if not raw.strip():
                continue
            try:
                yield n, json.loads(raw.decode("utf-8", "replace"), strict=False)
            except (ValueError, RecursionError):
                yield n, BAD_LINE


def read_jsonl_dicts(path: Path, report: LoadReport) -> list[dict]:
    """The JSON objects of a JSONL file; blank lines are skipped, bad lines counted in `report`."""
    out = []
    for _, rec in iter_jsonl(path):
        if isinstance(rec, dict):
            out.append(rec)
        else:
            report.bad_lines += 1
    return out
