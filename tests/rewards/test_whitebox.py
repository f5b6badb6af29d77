"""Stage-I white-box reward: correct answers score the max, each wrong part costs, hacks score 0."""

from __future__ import annotations

import ast
import dataclasses
import math

import pytest

from execverify_jax.data import safe_codec
from execverify_jax.rewards import parse, whitebox
from execverify_jax.rewards.config import RewardConfig

CFG = RewardConfig()


def score(record, response, **over):
    return whitebox.score_io_mixed(record["answer"], response, dataclasses.replace(CFG, **over))


def test_all_correct_scores_max(io_record, correct_lines, respond):
    r = score(io_record, respond(correct_lines))
    assert r.reward == 2.0 and r.format_ok and r.reason == ""
    assert r.details["correct"] == [True] * 6 and r.details["io"] is True


@pytest.mark.parametrize("variant", [
    "assert(f('abc', 2)) == ['A', 'bb', 'C']",  # the paper's parenthesised form
    'assert f("abc",2)==["A","bb","C"]',  # spacing and quote style
    "assert (f('abc', 2) == ['A', 'bb', 'C'])",
])
def test_assertion_variants_accepted(io_record, correct_lines, respond, variant):
    assert score(io_record, respond([variant] + correct_lines[1:])).reward == 2.0


def test_fenced_answer_accepted(io_record, correct_lines, respond):
    lines = ["```python", correct_lines[0], "```"] + correct_lines[1:]
    assert score(io_record, respond(lines)).reward == 2.0


@pytest.mark.parametrize("k", range(1, 7))
def test_each_wrong_whitebox_answer_costs_one_share(io_record, correct_lines, respond, k):
    wrong = {1: "    return out", 2: "    for i, c in enumerate(s):", 3: "'c'; str", 4: "['a']; list",
             5: "['A', 'bb']; list", 6: "NO"}
    lines = list(correct_lines)
    lines[k] = wrong[k]
    r = score(io_record, respond(lines))
    assert r.reward == pytest.approx(2.0 * (0.5 + 0.5 * 5 / 6))
    assert r.details["correct"][k - 1] is False and sum(r.details["correct"]) == 5


def test_wrong_output_gates_whitebox_credit(io_record, correct_lines, respond):
    r = score(io_record, respond(["assert f('abc', 2) == ['A', 'bb', 'c']"] + correct_lines[1:]))
    assert r.reward == 0.0 and r.reason == "wrong_output" and r.details["io"] is False
    # Ungated: the white-box half still counts.
    r = score(io_record, respond(["assert f('abc', 2) == ['A', 'bb', 'c']"] + correct_lines[1:]), gated=False)
    assert r.reward == pytest.approx(1.0)


def test_count_mismatch_forfeits_whitebox(io_record, correct_lines, respond):
    r = score(io_record, respond(correct_lines[:-1]))
    assert r.reward == 1.0 and r.reason == "count_mismatch" and not r.format_ok
    r = score(io_record, respond(correct_lines + ["YES"]))
    assert r.reward == 1.0
    # Without forfeiting, the answered prefix counts and missing answers are wrong.
    r = score(io_record, respond(correct_lines[:-1]), forfeit_on_count_mismatch=False)
    assert r.reward == pytest.approx(2.0 * (0.5 + 0.5 * 5 / 6))


def test_no_subquestions_scores_two(io_record, correct_lines, respond):
    io_record["answer"]["subquestions"] = []
    assert score(io_record, respond(correct_lines[:1])).reward == 2.0
    assert score(io_record, respond(["assert f('abc', 2) == []"])).reward == 0.0


def test_weights_and_format_reward(io_record, correct_lines, respond):
    lines = list(correct_lines)
    lines[1] = "    return out"  # one of two path answers wrong; all state/coverage right
    r = score(io_record, respond(lines), path_weight=1.0, state_weight=0.0, coverage_weight=0.0)
    assert r.reward == pytest.approx(2.0 * (0.5 + 0.5 * 0.5))
    r = score(io_record, respond(lines), path_weight=0.0, state_weight=1.0, coverage_weight=0.0)
    assert r.reward == pytest.approx(2.0)
    r = score(io_record, respond(correct_lines), format_reward=0.1)
    assert r.reward == pytest.approx(2.1)
    r = score(io_record, respond(["assert f('abc', 2) == 0"] + correct_lines[1:]), format_reward=0.1)
    assert r.reward == pytest.approx(0.1)  # well-formed but wrong: only the format reward
    assert score(io_record, "no tags at all", format_reward=0.1).reward == 0.0


def test_label_alignment(io_record, correct_lines, respond):
    labelled = [f"Question{i + 1}: {line.strip() if i else line}" for i, line in enumerate(correct_lines)]
    labelled[1], labelled[3] = labelled[3], labelled[1]  # order no longer matters
    assert score(io_record, respond(labelled), align="label").reward == 2.0
    # Repeating a label cannot hedge: the first occurrence wins.
    hedged = labelled + ["Question3: -1"]
    assert score(io_record, respond(hedged), align="label").reward == 1.0  # count mismatch
    assert score(io_record, respond(labelled)).reward < 2.0  # position mode does not strip labels


def test_strict_indent(io_record, correct_lines, respond):
    lines = list(correct_lines)
    lines[1] = "out.append(c * k)"
    assert score(io_record, respond(lines)).reward == 2.0
    assert score(io_record, respond(lines), strict_indent=True).reward < 2.0
    assert score(io_record, respond(correct_lines), strict_indent=True).reward == 2.0


# ------------------------------------------------------------------------------------ hacks


@pytest.mark.parametrize("assertion", [
    "assert f('abc', 2) == f('abc', 2)",
    "assert f('abc', 2) == f('abc', 2) or True",
    "assert f('abc', 2) == ['A', 'bb', 'C'] or True",
    "assert True",
    "assert f('abc', 2)",
    "assert f('abc', 2) != []",
    "assert f('abc', 2) is not None",
    "assert [] == [] == f('abc', 2)",
    "assert f('abc', 2) == ['A', 'bb', 'C'] == ['A', 'bb', 'C']",
    "assert f('abc', 2) == __import__('os').system('echo hi')",
    "assert f('abc', 2) == [x for x in 'ABC']",
    "assert f('abc', 2) == (lambda: ['A', 'bb', 'C'])()",
    "assert f('abc', 2) == (y := ['A', 'bb', 'C'])",
    "assert f('abc', 2) == [f'A', 'bb', 'C']",
    "assert f('abc', 2) == list(map(str, ['A', 'bb', 'C']))",
    "assert f('abc', 2) == out",
    "assert f('abc', 2) == ['A', 'bb', 'C'], 'msg'",
    "assert g('abc', 2) == ['A', 'bb', 'C']",
    "assert f('abd', 2) == ['A', 'bb', 'C']",
    "assert f(*['abc', 2]) == ['A', 'bb', 'C']",
    "assert f('abc', 2) == ['A', 'bb', 'C']; import os",
    "assert f('abc', 2) == ????",
])
def test_assertion_hacks_score_zero(io_record, correct_lines, respond, assertion):
    r = score(io_record, respond([assertion] + correct_lines[1:]))
    assert r.reward == 0.0 and r.details["io"] is False


def test_no_answer_span_and_last_span_wins(io_record, correct_lines, respond):
    assert score(io_record, "\n".join(correct_lines)).reward == 0.0
    assert score(io_record, "<answer>\n" + "\n".join(correct_lines)).reason == "no_answer"
    # An earlier correct span does not help: only the last one is graded.
    r = score(io_record, respond(correct_lines) + "\n<answer>\nassert f('abc', 2) == 1\n</answer>")
    assert r.reward == 0.0


def test_thousands_of_answer_lines_score_zero(io_record, correct_lines, respond):
    r = score(io_record, respond(correct_lines + ["YES"] * 5000))
    assert r.reward == 0.0 and r.reason in ("too_many_lines", "no_answer")


def test_hostile_sizes_and_bytes(io_record, correct_lines, respond):
    mb = "x" * 1_000_000
    assert score(io_record, mb + respond(correct_lines)).reward == 2.0  # long reasoning is fine
    assert score(io_record, respond(correct_lines) + mb).reward == 0.0  # span not in the searched tail
    assert score(io_record, respond([correct_lines[0] + " " * 100_000] + correct_lines[1:])).reward == 0.0
    huge = "assert f('abc', 2) == [" + "1, " * 200_000 + "]"
    assert score(io_record, respond([huge] + correct_lines[1:])).reward == 0.0
    deep = "assert f('abc', 2) == " + "[" * 5000 + "]" * 5000
    assert score(io_record, respond([deep] + correct_lines[1:])).reward == 0.0
    assert score(io_record, respond(["assert f('abc', 2) == " + "9" * 10000] + correct_lines[1:])).reward == 0.0
    raw = respond(correct_lines).encode() + b"\xff\xfe\x80"
    assert score(io_record, raw).reward == 2.0
    assert score(io_record, b"\xff" * 1000 + b"<answer>\x80\x81</answer>").reward == 0.0
    surrogate = respond(["assert f('abc', 2) == ['\ud800']"] + correct_lines[1:])
    assert score(io_record, surrogate).reward == 0.0
    assert score(io_record, None).reward == 0.0


# ------------------------------------------------------------------------------------ graders


def vt(value, type_name, nil=False):
    return {"kind": "value_type", "nil": nil,
            "accept": [] if nil else [{"value": safe_codec.to_jsonable(value), "type": type_name}]}


@pytest.mark.parametrize("answer,value,type_name,expected", [
    ("1; int", 1, "int", True),
    ("1; bool", 1, "int", False),  # the type must match
    ("True; bool", True, "bool", True),
    ("1; bool", True, "bool", False),  # 1 == True, but the value's type is int
    ("1.0; float", 1.0, "float", True),
    ("1; float", 1.0, "float", False),  # typed values: int literal for a float label
    ("'a;b'; str", "a;b", "str", True),  # split at the last ';'
    ("a;b; str", "a;b", "str", True),  # unquoted string (paper) with a ';' inside
    ("abc; str", "abc", "str", True),
    ("'abc'; str", "abc", "str", True),
    ("'abc'; string", "abc", "str", False),
    ("None; NoneType", None, "NoneType", True),
    ("frozenset({1, 2}); frozenset", frozenset({1, 2}), "frozenset", True),
    ("{1, 2}; frozenset", frozenset({1, 2}), "frozenset", False),
    ("range(0, 3); range", range(0, 3), "range", True),
    ("nan; float", math.nan, "float", True),
    ("inf; float", math.inf, "float", True),
    ("{'a': 1}; dict", {"a": 1}, "dict", True),
    ("{'a': True}; dict", {"a": 1}, "dict", False),
    ("[1, (2, 3)]; list", [1, (2, 3)], "list", True),
    ("[1, [2, 3]]; list", [1, (2, 3)], "list", False),
    ("(1+2j); complex", 1 + 2j, "complex", True),
    ("1", 1, "int", False),  # no type
    ("Nil", 1, "int", False),
    ("__import__('os'); int", 1, "int", False),
    ("(x := 1); int", 1, "int", False),
])
def test_value_type(answer, value, type_name, expected):
    assert whitebox.grade_value_type(answer, vt(value, type_name), CFG) is expected


def test_value_type_options():
    assert whitebox.grade_value_type("abc; str", vt("abc", "str"),
                                     dataclasses.replace(CFG, accept_unquoted_str=False)) is False
    assert whitebox.grade_value_type("1; float", vt(1.0, "float"),
                                     dataclasses.replace(CFG, typed_values=False)) is True
    assert whitebox.grade_value_type("0.3333333; float", vt(1 / 3, "float"), CFG) is False
    assert whitebox.grade_value_type("0.3333333; float", vt(1 / 3, "float"),
                                     dataclasses.replace(CFG, float_tol=1e-6)) is True
    assert whitebox.grade_value_type("Nil", vt(None, "", nil=True), CFG) is True
    assert whitebox.grade_value_type("None; NoneType", vt(None, "", nil=True), CFG) is False
    opaque = {"kind": "value_type", "nil": False,
              "accept": [{"value": {"__t": "opaque", "type": "map", "repr": "<map>"}, "type": "map"}]}
    assert whitebox.grade_value_type("<map>; map", opaque, CFG) is False


def test_next_statement_and_coverage():
    sub = {"kind": "next_statement", "accept": ["    return x", "-1"]}
    assert whitebox.grade_next_statement("return x", sub, CFG)
    assert whitebox.grade_next_statement("  -1 ", sub, CFG)
    assert not whitebox.grade_next_statement("return y", sub, CFG)
    assert not whitebox.grade_next_statement("    return x  # done", sub, CFG)
    strict = dataclasses.replace(CFG, strict_indent=True)
    assert whitebox.grade_next_statement("    return x", sub, strict)
    assert not whitebox.grade_next_statement("return x", sub, strict)
    cov = {"kind": "coverage", "executed": False}
    assert whitebox.grade_coverage("no", cov, CFG) and whitebox.grade_coverage("NO.", cov, CFG)
    assert not whitebox.grade_coverage("YES", cov, CFG) and not whitebox.grade_coverage("N", cov, CFG)


def test_io_uses_python_equality_by_default(io_record, respond):
    io_record["answer"]["output"] = 1.0
    io_record["answer"]["subquestions"] = []
    assert score(io_record, respond(["assert f('abc', 2) == 1"])).reward == 2.0
    assert score(io_record, respond(["assert f('abc', 2) == 1"]), io_typed=True).reward == 0.0
    io_record["answer"]["output"] = {"__t": "opaque", "type": "map", "repr": "<map object>"}
    assert score(io_record, respond(["assert f('abc', 2) == '<map object>'"])).reward == 0.0


def test_literal_parser_bounds():
    assert parse.literal_value("[1, {'a': (2, 3.5)}, -4, 1e999]", CFG) == [1, {"a": (2, 3.5)}, -4, math.inf]
    for bad in ["__import__('os')", "x", "f'a'", "lambda: 1", "[i for i in 'a']", "1 + 1", "-'a'",
                "{[1]: 2}", "{**{}}", "...", "b'\\x00' + b''", "set([[1]])", "open('x')", "range(1.5)"]:
        with pytest.raises(parse.LiteralError):
            parse.literal_value(bad, CFG)
    with pytest.raises(parse.LiteralError):
        parse.literal_value("[" * 60 + "]" * 60, CFG)
    with pytest.raises(whitebox.RecordError):
        whitebox.validate_io_mixed({"layout": "io_mixed", "program": {"code": "", "entry": "f", "args": ""},
                                    "output": 1, "subquestions": [{"kind": "bogus"}]})


def test_dict_keyword_constructor_and_rejections():
    assert parse.literal_value("dict(e=1, d=(2, 3))", CFG) == {"e": 1, "d": (2, 3)}
    for bad in ["dict(**{'a': 1})", "set(x=1)", "dict([('a', 1)])", "'abc'.upper()"]:
        with pytest.raises(parse.LiteralError):
            parse.literal_value(bad, CFG)


def test_rewards_package_never_imports_jax():
    import subprocess
    import sys

    code = ("import sys\nimport execverify_jax.rewards.scorer, execverify_jax.rewards.sandboxed, "
            "execverify_jax.commands.score\n"
            "bad = [m for m in ('jax', 'flax', 'optax', 'orbax') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_code_block_extraction_is_linear_and_takes_the_last_block():
    assert parse.last_code_block("```python\na\n```\n```py\nb\n```") == "b\n"
    assert parse.last_code_block("```python\nunterminated") == "unterminated"
    assert parse.last_code_block("no block") is None
    hostile = "```python\n" * 20_000  # quadratic for a lazy DOTALL regex
    assert parse.last_code_block(hostile) == ""
    assert parse.first_assert_line("assertion: x\n  assert f(1) == 2") == "  assert f(1) == 2"


def test_io_only_batches_need_no_pool(io_record, correct_lines, respond):
    from execverify_jax.rewards.scorer import Scorer

    results = Scorer(None, CFG).score_batch([io_record] * 3, [respond(correct_lines), "x", None])
    assert [r.reward for r in results] == [2.0, 0.0, 0.0]


@pytest.mark.parametrize("call,same", [
    ("f(1, 'a')", True), ("f( 1 ,\"a\" )", True), ("(f)((1), ('a'))", True), ("f(1, u'a')", True),
    ("f(1.0, 'a')", False), ("f(True, 'a')", False), ("f(1, 'a', )", True), ("f(1, b'a')", False),
    ("f(1, a='a')", False), ("g(1, 'a')", False), ("f(-1, 'a')", False), ("f(1, ('a'))", True),
    ("f(1, ('a',))", False),
])
def test_call_matches(call, same):
    node = ast.parse(call, mode="eval").body
    assert parse.call_matches(node, "f", "1, 'a'") is same


# ------------------------------------------------------------------ stepwise credit details (issue 15)
def _spans_text(response, r):
    return {seg: response[a:b] for a, b, seg in r.details["step_spans"]}


def test_step_spans_locate_each_answer_line(io_record, correct_lines, respond):
    response = respond(correct_lines, reasoning="line one\nassert f(1) == 2")  # an assert in the reasoning
    r = score(io_record, response)
    got = _spans_text(response, r)
    assert got == {1: correct_lines[0], **{k + 2: correct_lines[k + 1] for k in range(6)}}
    assert r.details["step_rewards"] == [1.0] * 7 and r.details["shaping"] == 0.0


def test_step_spans_with_fewer_and_more_lines(io_record, correct_lines, respond):
    short = respond(correct_lines[:3])  # the assertion and two of six answers
    r = score(io_record, short)
    assert _spans_text(short, r) == {1: correct_lines[0], 2: correct_lines[1], 3: correct_lines[2]}
    assert r.details["step_rewards"] == [1.0] + [0.0] * 6  # count mismatch forfeits every answer
    r = score(io_record, short, forfeit_on_count_mismatch=False)
    assert r.details["step_rewards"] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    extra = respond(correct_lines + ["surplus line"])
    r = score(io_record, extra)
    assert 8 not in _spans_text(extra, r) and "surplus line" not in _spans_text(extra, r).values()
    assert len(r.details["step_spans"]) == 7


def test_step_spans_follow_labels(io_record, correct_lines, respond):
    lines = [f"Question{k + 1}: {line}" for k, line in enumerate(correct_lines)]
    lines[1], lines[2] = lines[2], lines[1]  # out of order: labels decide
    response = respond(lines + ["Question3: again"])  # a repeated label is not a step
    r = score(io_record, response, align="label")
    got = _spans_text(response, r)
    assert got[3] == lines[1] and got[2] == lines[2] and len(got) == 7


def test_step_rewards_gated_and_ungated(io_record, correct_lines, respond):
    wrong = respond(["assert f('abc', 2) == ['A', 'bb', 'c']"] + correct_lines[1:])
    assert score(io_record, wrong).details["step_rewards"] == [0.0] * 7
    assert score(io_record, wrong, gated=False).details["step_rewards"] == [0.0] + [1.0] * 6


def test_shaping_is_reported_inside_the_reward(io_record, correct_lines, respond):
    r = score(io_record, respond(["assert f('abc', 2) == ['A', 'bb', 'c']"] + correct_lines[1:]), format_reward=0.2)
    assert r.reward == pytest.approx(0.2) and r.details["shaping"] == pytest.approx(0.2)
    r = score(io_record, respond(correct_lines), format_reward=0.2)
    assert r.reward == pytest.approx(2.2) and r.details["shaping"] == pytest.approx(0.2)


def test_call_bonus_needs_the_questions_call(io_record, correct_lines, respond):
    # right call, wrong output: the bonus (and the format bonus), nothing else; reported as shaping
    r = score(io_record, respond(["assert f('abc', 2) == 0"] + correct_lines[1:]), format_reward=0.2, call_reward=0.3)
    assert r.reward == pytest.approx(0.5) and r.details["shaping"] == pytest.approx(0.5)
    assert r.reason == "wrong_output"
    # a call of its own (the small policy's usual error): no call bonus, only the format bonus
    r = score(io_record, respond(["assert f('abd', 2) == 0"] + correct_lines[1:]), format_reward=0.2, call_reward=0.3)
    assert r.reason == "wrong_call" and r.reward == pytest.approx(0.2) and r.details["shaping"] == pytest.approx(0.2)
    r = score(io_record, respond(["assert f('abc', 2, 3) == 0"] + correct_lines[1:]), call_reward=0.3)
    assert r.reward == 0.0
    # fully correct: 2 + both bonuses; a malformed assertion gets neither
    r = score(io_record, respond(correct_lines), format_reward=0.2, call_reward=0.3)
    assert r.reward == pytest.approx(2.5) and r.details["shaping"] == pytest.approx(0.5)
    assert score(io_record, respond(["assert f('abc', 2) =="] + correct_lines[1:]), call_reward=0.3).reward == 0.0
    # off by default (the paper): the same right-call wrong-output answer scores 0
    assert score(io_record, respond(["assert f('abc', 2) == 0"] + correct_lines[1:])).reward == 0.0

