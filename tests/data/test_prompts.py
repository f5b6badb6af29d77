"""Prompt layouts: line numbering, section and question order, answer rules, registry."""

from __future__ import annotations

import pytest

from execverify_jax.data import prompts
from execverify_jax.data.prompts import PromptSpec

CODE = "def f(a):\n    b = a + 1\n\n    return b\n"


def test_number_lines_keeps_numbers_across_blank_lines():
    assert prompts.number_lines("x = 1\n\n  \ny = 2") == "1\tx = 1\n\n\n4\ty = 2"


def test_ordinal():
    assert [prompts.ordinal(k) for k in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]


def test_io_mixed_layout():
    spec = PromptSpec(code=CODE, entry="f", args="1",
                      questions=("While executing f(1), which line ...?", "Is line 2: ...?"))
    msgs = prompts.render("io_mixed", spec)
    assert msgs[0] == {"role": "system", "content": "You are a programming expert."}
    assert msgs[1]["role"] == "user" and len(msgs) == 2
    user = msgs[1]["content"]
    program = "Here is the code content:\n1\tdef f(a):\n2\t    b = a + 1\n\n4\t    return b\n\n6\tassert f(1) == ????"
    assert program in user
    # order: intro, format-only example, the program, the questions, the rules, the format
    order = ["WARNING", "[EXAMPLE]", "[/EXAMPLE]", program, "Question1: Fill the assertion statement.",
             "Question2: While executing f(1)", "Question3: Is line 2:",
             "Guidelines for the next-statement", "Guidelines for the value and type",
             "Absolute format rules", "<reasoning>", "</answer>"]
    positions = [user.rindex(s) if s.startswith(("Question", "<reasoning>", "</answer>")) else user.index(s)
                 for s in order]
    assert positions == sorted(positions)
    assert "Answer Nil if the line is not executed." in user
    assert "Answer -1 if the line is never executed" in user
    assert "coverage" not in user  # no coverage questions, no coverage rules
    # the default indentation rule is stated, and the example answer follows it
    assert "leading whitespace (indentation) is ignored" in user
    assert "<answer>\nassert(f(1.1, 2)) == 1\n1; int\nreturn ans\n</answer>" in user
    # the example's numbered program (7 lines, blank line 8, assertion on line 9)
    assert "7\t    return ans\n\n9\tassert(f(1.1, 2)) == ????" in user


def test_io_mixed_strict_indent_and_coverage_rules():
    spec = PromptSpec(code=CODE, entry="f", args="1", questions=("q",), strict_indent=True,
                      kinds=frozenset({"next_statement", "value_type", "coverage"}))
    user = prompts.render("io_mixed", spec)[1]["content"]
    assert "the leading whitespace must match exactly" in user
    assert "leading whitespace (indentation) is ignored" not in user
    assert "<answer>\nassert(f(1.1, 2)) == 1\n1; int\n    return ans\n</answer>" in user
    assert "Answer YES if the line is executed" in user


def test_question_texts():
    q = prompts.next_statement_question("f", "1, 'a'", 5, "        x += 1", 2)
    assert q == ("While executing f(1, 'a'), which line of code is executed immediately after "
                 "line 5: x += 1 has been executed for the 2nd time?")
    q = prompts.value_type_question("f", "1", 3, "    y = 2", "y", 1)
    assert q == ("Is line 3: y = 2 executed when f(1) is called? If so, what are the value and "
                 "type of the variable 'y' after line 3 has been executed for the 1st time?")


def test_oi_and_cruxeval_prompts():
    msgs = prompts.render("oi", PromptSpec(code=CODE, entry="f", output="2"))
    user = msgs[1]["content"]
    assert msgs[0]["content"] == "You are a programming expert."
    assert user.startswith("Fill in the missing assertion.")  # no stray quote (reference 4.5)
    assert "```python\ndef f(a):\n    b = a + 1\n\n    return b\nassert f(????) == 2\n```" in user
    assert "<reasoning>" in user and "<answer>" in user
    out = prompts.cruxeval_messages(CODE, "f", args="1")[1]["content"]
    assert "assert f(1) == ????\n```" in out
    assert prompts.cruxeval_messages(CODE, "f", output="2") == msgs
    with pytest.raises(ValueError):
        prompts.cruxeval_messages(CODE, "f", args="1", output="2")


def test_registry():
    assert {"io_mixed", "oi", "cruxeval_input", "cruxeval_output"} <= set(prompts.LAYOUTS)
    with pytest.raises(ValueError, match="unknown prompt layout"):
        prompts.render("nope", PromptSpec(code=CODE, entry="f"))
    with pytest.raises(ValueError, match="registered twice"):
        prompts.register("io_mixed")(lambda spec: [])
