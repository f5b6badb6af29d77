"""Per-step metrics: RUN/metrics.jsonl, TensorBoard event files, and reward breakdown summaries.

Resuming: lines of metrics.jsonl with a step after the restored checkpoint are dropped (they
belong to the steps that are about to be re-run), so a resumed run's file equals an uninterrupted
run's. TensorBoard gets `purge_step` for the same reason. Only process 0 writes.
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

import numpy as np

from execverify_jax.data import records
from execverify_jax.paths import PathLike, append_lines, read_text, run_path, write_text

# Sub-question kinds of io_mixed answers -> the paper's names.
KIND_METRIC = {"next_statement": "path", "value_type": "state", "coverage": "coverage"}


def reward_metrics(results: Sequence[Any], lengths: Sequence[int], truncated: Sequence[bool]) -> dict[str, float]:
    """Reward mean/std overall and per question kind; io/path/state/coverage accuracies from the
    breakdowns; format rate; response length; truncation rate."""
    r = np.asarray([float(x.reward) for x in results], np.float64)
    out: dict[str, float] = {"reward/mean": float(r.mean()), "reward/std": float(r.std()),
                             "format_rate": float(np.mean([bool(x.format_ok) for x in results])),
                             "response_len/mean": float(np.mean(lengths)),
                             "response_len/max": float(np.max(lengths)),
                             "truncated_rate": float(np.mean(truncated))}
    kinds = sorted({x.kind for x in results})
    for k in kinds:
        rk = [float(x.reward) for x in results if x.kind == k]
        out[f"reward/{k}/mean"] = float(np.mean(rk))
        out[f"reward/{k}/std"] = float(np.std(rk))
    io = [bool(x.details.get("io")) for x in results if x.kind in ("io_mixed", "oi") and "io" in x.details]
    io_mixed = [bool(x.details.get("io")) for x in results if x.kind == "io_mixed"]
    if io_mixed:
        out["acc/io"] = float(np.mean(io_mixed))
    oi = [bool(x.details.get("io")) for x in results if x.kind == "oi"]
    if oi:
        out["acc/oi"] = float(np.mean(oi))
    if io:
        out["acc/io_any"] = float(np.mean(io))
    hits: dict[str, list[float]] = {}
    for x in results:
        if x.kind != "io_mixed":
            continue
        kinds_q = x.details.get("question_kinds") or []
        correct = list(x.details.get("correct") or [])
        correct += [False] * (len(kinds_q) - len(correct))  # unanswered questions are wrong
        nil = list(x.details.get("question_nil") or []) + [False] * len(kinds_q)
        for kq, c, is_nil in zip(kinds_q, correct, nil):
            hits.setdefault(KIND_METRIC.get(kq, kq), []).append(float(bool(c)))
            if is_nil:  # value/type questions about unexecuted lines (answer Nil), also in acc/state
                hits.setdefault("nil", []).append(float(bool(c)))
    for name, v in hits.items():
        out[f"acc/{name}"] = float(np.mean(v))
    rates = [float(x.details["pass_rate"]) for x in results if x.kind == "codegen" and "pass_rate" in x.details]
    if rates:
        out["acc/pass_rate"] = float(np.mean(rates))
        out["acc/all_tests"] = float(np.mean([p == 1.0 for p in rates]))
    return out


class MetricsWriter:
    """Appends one JSON line per step to RUN/metrics.jsonl and scalars to RUN/tb/."""

    def __init__(self, run_dir: PathLike, resume_step: int | None = None, enabled: bool = True,
                 tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.path = run_path(run_dir) / "metrics.jsonl"
        self.tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            keep = []
            for line in read_text(self.path).splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a torn last line from a killed run
                if resume_step is not None and isinstance(row, dict) and row.get("step", 0) <= resume_step:
                    keep.append(line)
            write_text(self.path, "".join(l + "\n" for l in keep))
        if tensorboard:
            from tensorboardX import SummaryWriter
            self.tb = SummaryWriter(str(run_path(run_dir) / "tb"),
                                    purge_step=None if resume_step is None else resume_step + 1)

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        """Writes the step's scalars (non-finite values are written as null in the JSON)."""
        if not self.enabled:
            return
        row: dict[str, Any] = {"step": step}
        for k, v in sorted(metrics.items(), key=lambda kv: str(kv[0])):
            try:
                v = float(v)
                row[str(k)] = v if math.isfinite(v) else None
            except (TypeError, ValueError):  # not a scalar: kept as text, never a crash
                row[str(k)] = v if isinstance(v, str) else records.jsonable(v)
        append_lines(self.path, [records.json_text(row)])
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, float):
                    self.tb.add_scalar(k, v, step)
            self.tb.flush()

    def close(self) -> None:
        """Flushes and closes TensorBoard."""
        if self.tb is not None:
            self.tb.close()


def read_metrics(run_dir: PathLike) -> list[dict]:
    """The rows of RUN/metrics.jsonl (skipping torn lines)."""
    rows = []
    p = run_path(run_dir) / "metrics.jsonl"
    for line in read_text(p).splitlines() if p.exists() else []:
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows
