"""Input choice and the degenerate-output classification of data/pipeline/signal.py."""

from execverify_jax.data import safe_codec
from execverify_jax.data.pipeline import signal

enc = safe_codec.to_jsonable


def test_trivial_values():
    for v in (True, False, None, 0, 1, "", [], (), {}, set()):
        assert signal.is_trivial(enc(v)), v
    for v in (2, -1, 0.0, "a", [0], (None,), {"a": 1}, 1.5):
        assert not signal.is_trivial(enc(v)), v


def test_degenerate_kinds():
    assert signal.degenerate([enc(5), enc(5), enc(5)]) == "all_equal"
    assert signal.degenerate([enc(True), enc(False)]) == "all_trivial"
    assert signal.degenerate([enc(5)]) is None  # one input: nothing to compare
    assert signal.degenerate([enc(0)]) == "all_trivial"
    assert signal.degenerate([enc(1), enc(2)]) is None
    assert signal.degenerate([enc(1), enc(1.0)]) is None  # 1 and 1.0 are different labels


def test_select_prefers_distinct_non_trivial_outputs():
    outs = [enc(v) for v in (0, 7, 7, True, 9, 7)]
    assert signal.select_inputs(outs, 3) == [0, 1, 4]  # 7, 9 first, then the trivial 0
    assert signal.select_inputs(outs, 2) == [1, 4]
    assert signal.select_inputs(outs, 5) == [0, 1, 2, 3, 4]  # distinct ones, then the first repeat
    assert signal.select_inputs(outs, 10) == list(range(6))
    assert signal.select_inputs([enc(3)] * 4, 3) == [0, 1, 2]


def test_signal_stats():
    progs = [{"outputs": [enc(1), enc(1)]}, {"outputs": [enc(2), enc(3)]}, {"outputs": [enc(None)]},
             {"outputs": [enc(4), enc(4)]}]
    s = signal.signal_stats(progs)
    assert s == {"all_equal_fraction": 0.5, "all_trivial_fraction": 0.5, "all_equal": 2, "all_trivial": 2}
