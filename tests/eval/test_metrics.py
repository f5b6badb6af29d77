"""Known answers of the metric functions (pass@k estimator, F1, REval IC)."""

import math

import pytest

from execverify_jax.eval import metrics


def test_pass_at_k_known_values():
    assert metrics.pass_at_k(5, 1, 1) == pytest.approx(0.2)
    assert metrics.pass_at_k(10, 5, 5) == pytest.approx(1 - 1 / math.comb(10, 5))
    assert metrics.pass_at_k(10, 0, 3) == 0.0
    assert metrics.pass_at_k(4, 2, 3) == 1.0  # fewer than k failures: some k-subset always passes
    # Matches the closed form 1 - C(n-c, k) / C(n, k) everywhere on a grid.
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                want = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert metrics.pass_at_k(n, c, k) == pytest.approx(want)


def test_pass_at_k_rejects_bad_k():
    with pytest.raises(ValueError):
        metrics.pass_at_k(3, 1, 4)
    with pytest.raises(ValueError):
        metrics.pass_at_k(3, 4, 1)


def test_binary_scores():
    s = metrics.binary_scores([True, True, False, False], [True, False, True, False])
    assert (s["tp"], s["fp"], s["fn"], s["tn"]) == (1, 1, 1, 1)
    assert s["acc"] == 0.5 and s["precision"] == 0.5 and s["recall"] == 0.5 and s["f1"] == 0.5
    assert metrics.binary_scores([False], [False])["f1"] == 0.0  # undefined -> 0, as REval


@pytest.mark.parametrize("row,points", [
    ((True, True, True, True), 1.0), ((True, True, True, False), 0.5), ((True, True, False, False), 0.25),
    ((True, False, False, False), 0.125), ((False, True, True, True), 0.0), ((True, False, True, True), 0.0),
    ((True, True, False, True), 0.0), ((False, False, False, False), 0.0)])
def test_ic_points(row, points):
    assert metrics.ic_points(*row) == points


def test_ic_score_mean():
    assert metrics.ic_score([(True, True, True, True), (True, False, False, False)]) == pytest.approx(56.25)
