"""Integration with the question generator: its records and reference answers score the max.

Skips when `data/questions.py` / `data/trace/tracer.py` are not importable (they are another area).
"""

from __future__ import annotations

import random

import pytest

from execverify_jax.rewards.scorer import Scorer
from execverify_jax.rewards.config import RewardConfig

PROGRAMS = [
    ("def f(nums, k):\n    out = []\n    for i, n in enumerate(nums):\n        if n % k == 0:\n"
     "            out.append(n // k)\n        else:\n            out.append(-n)\n    total = sum(out)\n"
     "    return out, total\n", "f", "[3, 4, 6, 7], 3"),
    ("def g(s):\n    seen = set()\n    res = ''\n    for ch in s:\n        if ch in seen:\n"
     "            continue\n        seen.add(ch)\n        res += ch.upper()\n    return res\n", "g", "'abcab'"),
]


@pytest.mark.parametrize("strict", [False, True])
def test_generator_records_score_max(pool, strict):
    questions = pytest.importorskip("execverify_jax.data.questions")
    trace_mod = pytest.importorskip("execverify_jax.data.trace.tracer")
    qcfg = questions.QuestionConfig(layouts=("io_mixed", "oi"), strict_indent=strict, coverage_questions=2)
    scorer = Scorer(pool, RewardConfig())
    n_scored = 0
    for code, entry, args in PROGRAMS:
        trace = trace_mod.trace_in_sandbox(pool, code, entry, args)
        records = questions.make_questions({"id": entry, "code": code}, trace, qcfg, random.Random(0))
        assert records, f"no questions for {entry}: {questions.unusable_reason(trace)}"
        for rec in records:
            if rec["answer"]["layout"] == "io_mixed":
                lines = questions.answer_lines(rec)
                r = scorer.score(rec, "<answer>\n" + "\n".join(lines) + "\n</answer>")
                assert r.reward == 2.0, (r, lines)
                n_scored += 1
                for k in range(1, len(lines)):  # each wrong white-box answer costs its share
                    bad = list(lines)
                    bad[k] = "wrong answer"
                    r = scorer.score(rec, "<answer>\n" + "\n".join(bad) + "\n</answer>")
                    assert r.reward == pytest.approx(1.0 + (len(lines) - 2) / (len(lines) - 1))
            else:
                prog = rec["answer"]["program"]
                r = scorer.score(rec, f"<answer>\nassert {prog['entry']}({prog['args']}) == ????x\n</answer>")
                assert r.reward == 0.0  # placeholder
                r = scorer.score(rec, f"<answer>\nassert {prog['entry']}({prog['args']}) == 0\n</answer>")
                assert r.reward == 2.0, r
                n_scored += 1
    assert n_scored >= 3
