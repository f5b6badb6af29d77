"""Pure metric functions: pass@k (unbiased estimator), accuracy, binary F1, REval's IC score."""

from __future__ import annotations

import math
from typing import Iterable, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with `n` samples of which `c` are correct (Chen et al.,
    2021): 1 - C(n-c, k) / C(n, k), computed as a stable product. Requires 1 <= k <= n."""
    if not 1 <= k <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n, got k={k}, n={n}")
    if not 0 <= c <= n:
        raise ValueError(f"correct count {c} outside [0, {n}]")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """Mean pass@k over problems given as (n, c) pairs; problems with n < k are an error."""
    if not counts:
        return 0.0
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)


def ks_for(n: int) -> list[int]:
    """The pass@k values worth reporting for n samples per problem: 1, 5, 10, ... up to n."""
    return [k for k in (1, 5, 10, 20, 50, 100) if k <= n] or [1]


def accuracy(flags: Iterable[bool]) -> float:
    """Fraction of True (0.0 for an empty sequence)."""
    flags = list(flags)
    return sum(1 for f in flags if f) / len(flags) if flags else 0.0


def binary_scores(pred: Sequence[bool], gold: Sequence[bool]) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of binary predictions (REval coverage; 0 when undefined)."""
    if len(pred) != len(gold):
        raise ValueError(f"{len(pred)} predictions but {len(gold)} labels")
    tp = sum(1 for p, g in zip(pred, gold) if p and g)
    tn = sum(1 for p, g in zip(pred, gold) if not p and not g)
    fp = sum(1 for p, g in zip(pred, gold) if p and not g)
    fn = sum(1 for p, g in zip(pred, gold) if not p and g)
    total = tp + tn + fp + fn
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"acc": (tp + tn) / total if total else 0.0, "precision": prec, "recall": rec, "f1": f1,
            "tp": tp, "tn": tn, "fp": fp, "fn": fn}


def ic_points(coverage: bool, state: bool, path: bool, output: bool) -> float:
    """REval's incremental-consistency points for one (program, input, question) item:
    1 (all four right), 0.5 (all but output), 0.25 (coverage and state only), 0.125 (coverage
    only); every other pattern scores 0 (the chain must hold from the start)."""
    if coverage and state and path and output:
        return 1.0
    if coverage and state and path:
        return 0.5
    if coverage and state and not path and not output:
        return 0.25
    if coverage and not state and not path and not output:
        return 0.125
    return 0.0


def ic_score(rows: Iterable[tuple[bool, bool, bool, bool]]) -> float:
    """100 * mean IC points over (coverage, state, path, output) rows (REval's IC score)."""
    rows = list(rows)
    if not rows:
        return 0.0
    return 100.0 * sum(ic_points(*r) for r in rows) / len(rows)


def safe_round(x: float, nd: int = 4) -> float:
    """Rounds finite floats for reports (NaN/inf pass through)."""
    return round(x, nd) if math.isfinite(x) else x
