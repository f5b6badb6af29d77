"""Answer extraction under both prompt styles; literal-only values; no execution."""

import pytest

from execverify_jax.eval import extract
from execverify_jax.rewards.config import RewardConfig

CFG = RewardConfig()


@pytest.mark.parametrize("resp,span,source", [
    ("<reasoning>x</reasoning>\n<answer>\nassert f(1) == 2\n</answer>", "assert f(1) == 2", "answer_tag"),
    ("think... [ANSWER]\nassert f(1) == 2\n[/ANSWER] trailing", "assert f(1) == 2", "bracket_tag"),
    ("assert f(1) == 2\n[/ANSWER]\n[PYTHON]junk", "assert f(1) == 2", "bracket_tag"),  # official completion
    ("[ANSWER]\nassert f(1) == 2", "assert f(1) == 2", "bracket_tag"),  # unclosed
    ("assert f(1) == 2 # done", "assert f(1) == 2 # done", "raw"),
    ("", None, "none"),
])
def test_answer_span(resp, span, source):
    assert extract.answer_span(resp, CFG) == (span, source)


@pytest.mark.parametrize("span,want", [
    ("assert f('a', [1]) == [1, 'x']", "[1, 'x']"),
    ("```python\nassert f(3) == {'a': (1, 2)}\n```", "{'a': (1, 2)}"),
    ("assert f(3) == {\n    'a': 1,\n    'b': 2,\n}", "{'a': 1, 'b': 2}"),  # multi-line literal
    ("assert 5 == f(3)", "5"),  # reversed sides
    ("'bhihia'", "'bhihia'"),  # bare literal (official harness takes the text after ==)
    ("f(3) == 7", "7"),  # the `assert` keyword left in the prompt
])
def test_predicted_output_accepts(span, want):
    assert extract.predicted_output(span, "f", CFG) == (want, "")


@pytest.mark.parametrize("span,reason", [
    ("assert f(3) == f(3)", "rhs_not_literal"),  # self-referential assertion (reference 9.1)
    ("assert f(3) == x", "rhs_not_literal"),
    ("assert f(3) == __import__('os').getpid()", "rhs_not_literal"),
    ("assert g(3) == 1", "wrong_call"),
    ("assert f(3) != 1", "bad_assert"),
    ("the answer is probably 7", "no_assert"),
])
def test_predicted_output_rejects(span, reason):
    assert extract.predicted_output(span, "f", CFG) == (None, reason)


def test_predicted_call_args_both_styles():
    assert extract.predicted_call_args("assert f('ba', 'nana') == 'banana'", "f", CFG) == ("'ba', 'nana'", "")
    assert extract.predicted_call_args("```python\nassert f(x=[1, 2]) == 3\n```", "f", CFG) == ("x=[1, 2]", "")
    assert extract.predicted_call_args("f(16) == 17", "f", CFG) == ("16", "")
    assert extract.predicted_call_args("assert 17 == f(16)", "f", CFG) == ("16", "")
    # '????' inside a string (an expected output or input) is a value, not the placeholder
    assert extract.predicted_call_args("assert f('????') == '????'", "f", CFG) == ("'????'", "")


@pytest.mark.parametrize("span,reason", [
    ("assert f(????) == 3", "placeholder_left"),
    ("assert f(g(1)) == 3", "args_not_literal"),
    ("assert f(*[1, 2]) == 3", "args_not_literal"),
    ("assert g(1) == 3", "wrong_function"),
])
def test_predicted_call_args_rejects(span, reason):
    assert extract.predicted_call_args(span, "f", CFG) == (None, reason)


def test_prose_assert_line_is_skipped():
    text = "assert that the loop runs twice, so\nassert f(2) == [1, 2]"
    assert extract.predicted_output(text, "f", CFG) == ("[1, 2]", "")


def test_only_the_first_assert_lines_are_tried():
    # Work is bounded on hostile responses: after 20 unparseable assert lines the search stops.
    junk = "\n".join(["assert (((("] * 25)
    assert extract.predicted_output(junk + "\nassert f(1) == 2", "f", CFG) == (None, "no_assert")
    few = "\n".join(["assert (((("] * 5)
    assert extract.predicted_output(few + "\nassert f(1) == 2", "f", CFG) == ("2", "")
