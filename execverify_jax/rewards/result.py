"""`RewardResult`: the scalar reward plus a JSON-able breakdown for logging."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RewardResult:
    """One scored response.

    reward: the scalar used for training.
    kind: the answer layout scored (`io_mixed`, `oi`, `codegen`).
    format_ok: the response had a well-formed answer block for its layout.
    reason: "" when fully correct, else a short machine-readable cause of the first failure
        (`no_answer`, `bad_assert`, `wrong_call`, `rhs_not_literal`, `wrong_output`,
        `count_mismatch`, `wrong_args`, `timeout`, `tests_failed`, ...).
    details: layout-specific numbers (io, per-question correctness, counts, pass rate...).
    """

    reward: float
    kind: str
    format_ok: bool
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (for score files and metrics)."""
        return {"reward": self.reward, "kind": self.kind, "format": self.format_ok,
                "reason": self.reason, **self.details}
