"""Pure parts of the code-generation reward: record validation and output comparison."""

from __future__ import annotations

import pytest

from execverify_jax.data import safe_codec
from execverify_jax.rewards import codegen
from execverify_jax.rewards.config import RewardConfig
from execverify_jax.rewards.whitebox import RecordError


@pytest.mark.parametrize("got,expected,ok", [
    ("3\n", "3\n", True),
    ("3", "3\n\n", True),
    ("1 2\n3  4\n", "1 2 3 4", True),  # whitespace is not significant (APPS)
    ("1.0000001\n", "1.0", True),  # float tokens within 1e-6
    ("1.001\n", "1.0", False),
    ("1000001\n", "1000000", False),  # integer tokens are exact
    ("3\n", "4\n", False),
    ("", "0", False),
    ("PASS\n", "3\n", False),
    ("3\n4\n", ["3", "4"], True),  # expected given as lines
    ("nan", "nan", True),
    ("inf", "1e999", False),
])
def test_stdout_matches(got, expected, ok):
    assert codegen.stdout_matches(got, expected, 1e-6) is ok


@pytest.mark.parametrize("got,expected,ok", [
    (3, 3, True),
    (3, [3], True),  # one-element expected list accepts the bare value
    (1, [1, 2], False),  # but not the first element of a longer list (APPS hole)
    ((1, 2), [1, 2], True),  # tuples compare as lists
    ([(1, 2)], [[1, 2]], True),
    (3.0, 3, True),  # Python ==
    (safe_codec.Opaque("Eq", "<Eq>"), 3, False),
    (None, None, True),
    ({"a": 1}, {"a": 1}, True),
])
def test_call_output_matches(got, expected, ok):
    assert codegen.call_output_matches(got, expected) is ok


def test_load_tests():
    t = codegen.load_tests({"layout": "codegen", "tests": '{"inputs": [[1]], "outputs": [1], "fn_name": "f"}'})
    assert t.fn_name == "f" and t.inputs == [[1]]
    t = codegen.load_tests({"layout": "codegen", "fn_name": None, "tests": {"inputs": ["1"], "outputs": ["1"]}})
    assert t.fn_name is None
    for bad in [{"tests": "not json"}, {"tests": {"inputs": [], "outputs": []}},
                {"tests": {"inputs": [1], "outputs": [1]}},  # stdin tests need strings
                {"fn_name": "import os", "tests": {"inputs": [[1]], "outputs": [1]}}]:
        with pytest.raises(RecordError):
            codegen.load_tests({"layout": "codegen", **bad})


def test_codegen_result_and_extraction():
    cfg = RewardConfig()
    r = codegen.codegen_result([True, False, True, True], 4, "all", cfg)
    assert r.reward == pytest.approx(0.80) and r.details["pass_rate"] == 0.75
    assert codegen.codegen_result([False] * 4, 4, "all", cfg).reward == 0.0  # no bonus at 0
    assert codegen.codegen_result([True] * 10, 20, "single", cfg).details["pass_rate"] == 0.5
    assert codegen.extract_code("<answer>```python\nx = 1\n```</answer>", cfg) == ("x = 1\n", True)
    assert codegen.extract_code("```python\nx = 1\n```", cfg) == (None, False)
    assert codegen.extract_code("<answer>x = 1</answer>", cfg) == (None, True)
