"""CRUXEval-O/-I and LCB-Exec: oracle answers score 100%, wrong ones 0, either response format
parses under either prompt style. Strict scoring (the training reward's rule) never runs the
model's text; official scoring evaluates the answer expression in the sandbox as the official
harness does, rejecting what that harness rejects."""

from __future__ import annotations

import pytest

from execverify_jax.eval import extract
from execverify_jax.eval.cruxeval import CruxEval, lcb_args

# CRUXEval-I items whose ground-truth input has no literal form (a lambda argument): under the
# hardened rule (literal arguments only) no answer can express that input.
NO_LITERAL_INPUT = {"sample_344", "sample_364"}


def _load(path, mode, style, limit, source="cruxeval", scoring="strict"):
    b = CruxEval(("cruxeval-" + mode[0]) if source == "cruxeval" else "lcb-exec", mode, source)
    b.scoring = scoring
    return b, b.load(path, style, limit)


def _official_form(resp: str) -> str:
    """Our `<answer>` oracle rewritten as an official-prompt completion (`... [/ANSWER]`)."""
    line = resp.split("```python\n")[1].split("\n```")[0]
    return line + "\n[/ANSWER]"


def _flat(verdicts):
    return [vs[0] for vs in verdicts]


@pytest.mark.parametrize("style", ["execverify", "official"])
def test_output_oracle_and_wrong(cruxeval_path, ctx, style):
    b, rep = _load(cruxeval_path, "output", style, 60)
    assert len(rep.items) == 60 and rep.bad_lines == 0
    oracle = b.oracle(rep.items, ctx)
    assert all(v.correct for v in _flat(b.grade(rep.items, [[o] for o in oracle], ctx)))
    # The other style's format parses too (official completions under our prompt and vice versa).
    other = [[_official_form(o)] for o in oracle] if style == "execverify" else [[o] for o in oracle]
    assert all(v.correct for v in _flat(b.grade(rep.items, other, ctx)))
    wrong = [[f"<answer>assert f({it.meta['args']}) == 'not the output'</answer>"] for it in rep.items]
    assert not any(v.correct for v in _flat(b.grade(rep.items, wrong, ctx)))
    hack = [[f"<answer>assert f({it.meta['args']}) == f({it.meta['args']})</answer>"] for it in rep.items]
    verdicts = _flat(b.grade(rep.items, hack, ctx))
    assert not any(v.correct for v in verdicts) and {v.reason for v in verdicts} == {"rhs_not_literal"}


@pytest.mark.parametrize("style", ["execverify", "official"])
def test_input_oracle_and_wrong(cruxeval_path, ctx, style):
    b, rep = _load(cruxeval_path, "input", style, 60)
    oracle = b.oracle(rep.items, ctx)
    assert all(o is not None for o in oracle)
    assert all(v.correct for v in _flat(b.grade(rep.items, [[o] for o in oracle], ctx)))
    official = [[_official_form(o)] for o in oracle]
    assert all(v.correct for v in _flat(b.grade(rep.items, official, ctx)))
    # A rewritten function in the answer is ignored: the ground-truth function runs.
    cheat = [[f"<answer>\n```python\ndef f(*a):\n    return {it.meta['output']}\nassert f(0) == {it.meta['output']}\n```\n</answer>"]
             for it in rep.items]
    cheat_ok = [v.correct for v in _flat(b.grade(rep.items, cheat, ctx))]
    assert sum(cheat_ok) < 5  # only items where f(0) really gives the output could pass
    bad = [["<answer>assert f(g(1)) == 1</answer>"] for _ in rep.items]
    assert {v.reason for v in _flat(b.grade(rep.items, bad, ctx))} == {"args_not_literal"}


def test_input_prediction_runs_ground_truth(cruxeval_path, ctx):
    b, rep = _load(cruxeval_path, "input", "execverify", 1)
    it = rep.items[0]  # sample_0: f(nums) counts occurrences
    right = [[extract.canonical_response(f"assert f({it.meta['args']}) == 0")]]  # wrong RHS is ignored
    wrong = [["<answer>assert f([1, 2]) == " + it.meta["output"] + "</answer>"]]
    assert b.grade([it], right, ctx)[0][0].correct
    assert not b.grade([it], wrong, ctx)[0][0].correct


@pytest.mark.slow
@pytest.mark.parametrize("scoring", ["strict", "official"])
@pytest.mark.parametrize("mode", ["output", "input"])
def test_full_cruxeval_oracle(cruxeval_path, ctx, mode, scoring):
    b, rep = _load(cruxeval_path, mode, "execverify", None, scoring=scoring)
    assert len(rep.items) == 800
    oracle = b.oracle(rep.items, ctx)
    verdicts = _flat(b.grade(rep.items, [[o or ""] for o in oracle], ctx))
    failed = {it.id for it, v in zip(rep.items, verdicts) if not v.correct}
    # Official scoring runs the dataset's own argument text (lambdas included): nothing fails.
    assert failed == (NO_LITERAL_INPUT if mode == "input" and scoring == "strict" else set())


def test_official_output_scoring(cruxeval_path, ctx):
    b, rep = _load(cruxeval_path, "output", "official", 30, scoring="official")
    oracle = b.oracle(rep.items, ctx)
    assert all(v.correct for v in _flat(b.grade(rep.items, [[_official_form(o)] for o in oracle], ctx)))
    # An expression that evaluates to the output is accepted (the harness runs it), and it runs
    # with the ground-truth program loaded: here `f` itself on another spelling of the input.
    expr = [[f"[ANSWER]assert f({it.meta['args']}) == [{it.meta['output']}, 0][0][/ANSWER]"] for it in rep.items]
    assert all(v.correct for v in _flat(b.grade(rep.items, expr, ctx)))
    via_f = [[f"<answer>assert f({it.meta['args']}) == f(*[{it.meta['args']}])</answer>"] for it in rep.items[:3]]
    assert all(v.correct for v in _flat(b.grade(rep.items[:3], via_f, ctx)))
    # Rejected as the harness rejects it: the answer contains the ground-truth call.
    hack = [[f"<answer>assert f({it.meta['args']}) == f({it.meta['args']})</answer>"] for it in rep.items]
    verdicts = _flat(b.grade(rep.items, hack, ctx))
    assert not any(v.correct for v in verdicts) and {v.reason for v in verdicts} == {"calls_ground_truth_input"}
    wrong = [[f"<answer>assert f({it.meta['args']}) == 'not ' + 'the output'</answer>"] for it in rep.items]
    assert not any(v.correct for v in _flat(b.grade(rep.items, wrong, ctx)))
    # A value that claims to equal everything passes the official harness's `assert out == X`,
    # but only literal values cross the sandbox boundary: it equals nothing here.
    liar = "type('L', (), {'__eq__': lambda s, o: True, '__hash__': lambda s: 0})()"
    lie = [[f"<answer>assert f({it.meta['args']}) == {liar}</answer>"] for it in rep.items[:3]]
    assert not any(v.correct for v in _flat(b.grade(rep.items[:3], lie, ctx)))
    raising = _flat(b.grade(rep.items[:1], [["<answer>assert f(0) == 1 // 0</answer>"]], ctx))[0]
    assert not raising.correct and raising.reason == "error"


def test_official_input_scoring(cruxeval_path, ctx):
    b, rep = _load(cruxeval_path, "input", "official", 30, scoring="official")
    # Argument expressions run (strict scoring rejects them as args_not_literal).
    expr = [[f"[ANSWER]assert f(*[{it.meta['args']}]) == {it.meta['output']}[/ANSWER]"] for it in rep.items]
    assert all(v.correct for v in _flat(b.grade(rep.items, expr, ctx)))
    b.scoring = "strict"
    assert {v.reason for v in _flat(b.grade(rep.items, expr, ctx))} == {"args_not_literal"}
    b.scoring = "official"
    # The ground-truth f runs, not a function the answer defines; a call of another name fails.
    cheat = [[f"<answer>\n```python\ndef f(*a):\n    return {it.meta['output']}\nassert f(0) == {it.meta['output']}\n```\n</answer>"]
             for it in rep.items]
    assert sum(v.correct for v in _flat(b.grade(rep.items, cheat, ctx))) < 5
    other = [[f"<answer>assert g({it.meta['args']}) == {it.meta['output']}</answer>"] for it in rep.items]
    assert {v.reason for v in _flat(b.grade(rep.items, other, ctx))} == {"wrong_function"}
    # The asserted right side is ignored: the ground-truth output is what the value is compared with.
    right_args = [[f"<answer>assert f({it.meta['args']}) == 'anything'</answer>"] for it in rep.items]
    assert all(v.correct for v in _flat(b.grade(rep.items, right_args, ctx)))


def test_lcb_schema(lcb_file, ctx):
    b, rep = _load(lcb_file, "output", "execverify", None, source="lcb")
    assert [it.id for it in rep.items] == ["sample_0", "sample_1", "sample_2"] and rep.bad_lines == 1
    assert rep.items[0].meta["args"] == "n = 10" and rep.items[0].meta["entry"] == "punishmentNumber"
    assert "assert punishmentNumber(n = 10) == ????" in rep.items[0].messages[-1]["content"]
    oracle = b.oracle(rep.items, ctx)
    assert all(v.correct for v in _flat(b.grade(rep.items, [[o] for o in oracle], ctx)))
    wrong = [["[ANSWER]assert punishmentNumber(n = 10) == 127[/ANSWER]"]] * 3
    assert not any(v.correct for v in _flat(b.grade(rep.items, wrong, ctx)))
    _, off = _load(lcb_file, "output", "official", None, source="lcb")
    assert off.items[1].raw_prompt.endswith("assert splitWords(words = ['one.two.three', 'four.five', 'six'], "
                                            "separator = '.') == ??\n[/PYTHON]\n[ANSWER]\n")


def test_lcb_args():
    assert lcb_args("g", "g(a = 1, b = [2])") == "a = 1, b = [2]"
    assert lcb_args("g", "1, 2") == "1, 2"
