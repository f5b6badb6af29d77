"""Normalized-AST dedup and n-gram decontamination (CRUXEval, REval, HumanEval)."""

from __future__ import annotations

import json
from pathlib import Path

from execverify_jax.data import dedup

A = '''def count_pairs(nums: list[int]) -> int:
    """Counts pairs."""
    total = 0  # running total
    for i, n in enumerate(nums):
        if n > i:
            total += nums.count(n)
    return total
'''
A_RENAMED = '''def g(xs):
    acc = 0
    for k,   v in enumerate(xs):
        if v > k:
            acc += xs.count(v)
    return acc'''
A_OTHER_CONST = A_RENAMED.replace("acc = 0", "acc = 5")
B = '''def g(xs):
    acc = 0
    for k, v in enumerate(xs):
        if v < k:
            acc += xs.index(v)
    return acc'''


def test_renamed_reformatted_copies_share_a_fingerprint() -> None:
    assert dedup.normalize_code(A) == dedup.normalize_code(A_RENAMED)
    assert dedup.fingerprint(A) == dedup.fingerprint(A_RENAMED)
    assert dedup.fingerprint(A) != dedup.fingerprint(B)  # different method and comparison
    assert dedup.fingerprint(A) != dedup.fingerprint(A_OTHER_CONST)
    assert dedup.fingerprint(A, normalize_constants=True) == dedup.fingerprint(A_OTHER_CONST, normalize_constants=True)


def test_normalization_keeps_builtins_attributes_and_imports() -> None:
    code = "import math\ndef h(s, k):\n    return math.ceil(len(s.upper()) / k) + sorted(s, reverse=True).count(k)"
    norm = dedup.normalize_code(code)
    for kept in ("math.ceil", "len(", ".upper()", "sorted(", "reverse=True", ".count("):
        assert kept in norm
    assert "def f0(v0, v1)" in norm
    # Keyword arguments of user functions follow their renamed parameters.
    kw = "def a(x, y):\n    return x - y\ndef b(z):\n    return a(y=z, x=1)"
    kw2 = "def p(m, n):\n    return m - n\ndef q(w):\n    return p(n=w, m=1)"
    assert dedup.normalize_code(kw) == dedup.normalize_code(kw2)


def test_unparsable_code_still_fingerprints() -> None:
    assert dedup.fingerprint("def (:") == dedup.fingerprint("def   (:")
    assert dedup.code_tokens("x = (") != []


def _index(tmp_path: Path, programs: list[tuple[str, str]]) -> dedup.Decontaminator:
    p = tmp_path / "b.jsonl"
    p.write_text("".join(json.dumps({"code": c, "id": i}) + "\n" for i, c in programs))
    d = dedup.Decontaminator(n=13, threshold=0.5)
    d.add(dedup.load_cruxeval(p))
    return d


def test_decontamination_flags_copies_and_near_copies(tmp_path: Path) -> None:
    d = _index(tmp_path, [("bench_a", A)])
    hit = d.check(A_RENAMED)
    assert hit is not None and hit.exact and hit.benchmark_id == "bench_a"
    near = A_RENAMED.replace("    return acc", "    acc = acc * 2\n    return acc")
    hit = d.check(near)
    assert hit is not None and not hit.exact and hit.overlap >= 0.5
    assert d.check(B) is None
    assert d.check("def f(s):\n    return s.swapcase().zfill(9)") is None


def test_cruxeval_copy_with_renamed_variables_is_dropped(cruxeval_path: Path) -> None:
    d = dedup.Decontaminator()
    d.add(dedup.load_cruxeval(cruxeval_path))
    assert len(d) == 800
    copy = ("def tally(values):\n    pairs = []\n    for item in values:\n        pairs.append((values.count(item), item))\n"
            "    pairs.sort(reverse=True)\n    return pairs")
    hit = d.check(copy)
    assert hit is not None and hit.benchmark == "cruxeval" and hit.benchmark_id == "sample_0"


def test_reval_and_humaneval_sources_load(shared_data: Path) -> None:
    d = dedup.Decontaminator()
    d.add(dedup.load_dreval(shared_data / "benchmarks" / "DREval_data.jsonl"))
    he = dedup.load_humaneval()
    d.add(he)
    assert len(he) == 164 and {p.benchmark for p in d.programs} == {"reval", "humaneval"}
    # HumanEval/0 reformatted, renamed and without its docstring is still caught.
    copy = '''def close(xs, t):
    for a, x in enumerate(xs):
        for b, y in enumerate(xs):
            if a != b:
                d = abs(x - y)
                if d < t:
                    return True
    return False'''
    hit = d.check(copy)
    assert hit is not None and hit.benchmark in ("humaneval", "reval")
