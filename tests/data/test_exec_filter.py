"""Execution filter: kept programs, typed rejection reasons, order, determinism, imports kept."""

import pytest

from execverify_jax.data.exec_filter import (
    Candidate,
    FilterResult,
    extract_candidate,
    filter_programs,
    rejection_counts,
    repr_round_trips,
    strict_equal,
)
from execverify_jax.data.sandbox import Limits, SandboxPool

FAST = Limits(timeout_s=1.0, memory_mb=256)


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(2) as p:
        yield p


def c(body, args="", entry="f"):
    return Candidate(code=body, entry=entry, args=args)


CASES = [
    (c("def f(x, y):\n    return [x, y * 2]", "1, 'a'"), None, [1, "aa"]),
    (c("import math\ndef f(x):\n    return math.ceil(x)", "2.5"), None, 3),  # import kept (§9.10)
    (c("def f(:\n    pass"), "syntax_error", None),
    (c("def g():\n    return 1"), "no_entry", None),
    (c("def f(x):\n    return x", "1,,"), "bad_args", None),
    (c("def f(x):\n    return x", "1), print(2"), "bad_args", None),  # an injected second call
    (c("def f(x):\n    return x", "1)(2"), "bad_args", None),
    (c("def f():\n    return 1 / 0"), "error:ZeroDivisionError", None),
    (c("def f():\n    while True:\n        pass"), "timeout", None),
    (c("def f():\n    return bytearray(10 ** 10)"), "memory", None),
    (c("import os\ndef f():\n    os._exit(0)"), "killed", None),
    (c("def f():\n    while True:\n        print('x' * 1000)"), "output_overflow", None),
    (c("def f():\n    return iter([1])"), "not_literal", None),
    (c("def f():\n    return float('inf')"), "repr_roundtrip", None),
    (c("def f():\n    return [float('nan')]"), "repr_roundtrip", None),
    (c("def f():\n    return range(3)"), "repr_roundtrip", None),
    (c("def f():\n    return frozenset({1})"), "repr_roundtrip", None),
    (c("import random\ndef f():\n    return random.random()"), "nondeterministic", None),
    (c("def f():\n    return id(object())"), "nondeterministic", None),
    (c("def f():\n    return {'b': {1, 2}, 'a': (set(), b'x', 2j, -0.0)}"), None, {"b": {1, 2}, "a": (set(), b"x", 2j, -0.0)}),
]


def test_reasons_values_and_order(pool):
    results = filter_programs(pool, [case[0] for case in CASES], limits=FAST)
    assert [r.candidate for r in results] == [case[0] for case in CASES]
    for r, (cand, reason, value) in zip(results, CASES):
        assert r.reason == reason, (cand.code, r)
        assert r.kept == (reason is None)
        if r.kept:
            assert strict_equal(r.value, value) and repr_round_trips(r.value, r.value_repr)
    counts = rejection_counts(results)
    assert counts["kept"] == 3 and counts["repr_roundtrip"] == 4 and sum(counts.values()) == len(CASES)


def test_hash_order_dependence_is_nondeterministic(pool):
    # list(set of str) depends on the per-process hash seed: the two runs use different workers.
    cand = c("def f():\n    return list({'alpha', 'beta', 'gamma', 'delta', 'eps', 'zeta', 'eta', 'theta'})")
    assert filter_programs(pool, [cand], limits=FAST)[0].reason == "nondeterministic"
    # ...while the set itself is a deterministic value.
    assert filter_programs(pool, [c("def f():\n    return {'alpha', 'beta', 'gamma'}")], limits=FAST)[0].kept


def test_strict_equal_distinguishes_types():
    assert strict_equal([1, (2, "a")], [1, (2, "a")])
    assert not strict_equal(1, 1.0) and not strict_equal(True, 1) and not strict_equal([1], (1,))
    assert not strict_equal({1}, {True}) and not strict_equal({"a": 1, "b": 2}, {"b": 2, "a": 1})
    assert strict_equal(float("nan"), float("nan"))


def test_repr_round_trips():
    assert repr_round_trips({1: "a"}, "{1: 'a'}")
    assert repr_round_trips(set(), "set()")
    assert not repr_round_trips(float("inf"), "inf")
    assert not repr_round_trips(1, "True")
    assert not repr_round_trips([1], "[1, __import__('os')]")


def test_output_is_safe_codec_encoding():
    r = FilterResult(c("def f(): pass"), True, value=(1, {2}), value_repr="(1, {2})")
    assert r.output == {"__t": "tuple", "v": [1, {"__t": "set", "v": [2]}]}


def test_extract_candidate_keeps_imports_constants_and_helpers():
    src = (
        "import math\nfrom functools import reduce\nSCALE = 3\n\n@staticmethod\ndef helper(x):\n    return x\n\n"
        "def f(a, b=2):\n    return math.ceil(a / b) * SCALE\n\nfor i in range(3):\n    print(i)\nprint(f(7, b=2))\n"
    )
    cand = extract_candidate(src)
    assert isinstance(cand, Candidate)
    assert cand.entry == "f" and cand.args == "7, b=2"
    assert "import math" in cand.code and "from functools import reduce" in cand.code and "SCALE = 3" in cand.code
    assert "@staticmethod\ndef helper" in cand.code and "print" not in cand.code and "for i" not in cand.code


def test_extract_candidate_rejections():
    assert extract_candidate("def f(:") == "syntax_error"
    assert extract_candidate("print(len([1]))") == "no_function"
    assert extract_candidate("def f(): return 1\nf()") == "no_print_call"
    assert extract_candidate("def f(): return 1\nprint(f())\nprint(f())") == "multiple_print_calls"


def test_extracted_candidate_passes_the_filter(pool):
    cand = extract_candidate("import math\ndef f(x):\n    return math.floor(x)\nprint(f(3.7))")
    (r,) = filter_programs(pool, [cand], limits=FAST)
    assert r.kept and r.value == 3


def test_runs_parameter(pool):
    rand = c("import random\ndef f():\n    return random.random()")
    assert filter_programs(pool, [rand], limits=FAST, runs=1)[0].kept  # no determinism check
    assert filter_programs(pool, [rand], limits=FAST, runs=3)[0].reason == "nondeterministic"
    with pytest.raises(ValueError):
        filter_programs(pool, [rand], runs=0)
