"""Stop a run at the first non-finite loss or gradient norm, naming the step.

The trainers already fetch each step's metrics to the host (for the metrics file), so the check
costs no extra device sync. It runs before the step is logged or checkpointed: a NaN step never
reaches metrics.jsonl or a checkpoint, and the last checkpoint stays a good one to resume from.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence


def check_finite(step: int, metrics: Mapping[str, float], keys: Sequence[str]) -> None:
    """Raises FloatingPointError if any of `keys` (those present) is NaN or infinite."""
    vals = {k: float(metrics[k]) for k in keys if k in metrics}
    if not all(math.isfinite(v) for v in vals.values()):
        shown = ", ".join(f"{k}={v}" for k, v in vals.items())
        raise FloatingPointError(f"non-finite training metrics at step {step}: {shown}")
