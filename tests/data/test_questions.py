"""Question generation against hand-worked traces (reference 4.7 worked example and more)."""

from __future__ import annotations

import json
import random
import textwrap

import pytest

from execverify_jax.data import safe_codec
from execverify_jax.data.questions import (QuestionConfig, answer_lines, make_questions,
                                           select_subquestions, unusable_reason)
from execverify_jax.data.questions import _context, _nil_candidates, _path_candidates, _state_candidates
from execverify_jax.data.trace.tracer import trace_program

WORKED = textwrap.dedent("""\
    def helper(x):
        return x * 2

    def main(s, k):
        out = []
        for i, c in enumerate(s):
            if i % 2 == 0:
                out.append(c.upper())
            else:
                out.append(helper(k))
        return out""")
# Lines (as in reference 4.7): 2 `return x * 2`, 5 `out = []`, 6 `for`, 7 `if`, 8 upper, 10 helper
L = {n: WORKED.split("\n")[n - 1] for n in range(1, 12)}


def paths(trace):
    return {(q["line"], q["occurrence"]): q["accept"] for q in _path_candidates(_context(trace))}


def states(trace):
    return {(q["line"], q["occurrence"], q["var"]): (safe_codec.from_jsonable(q["accept"][0]["value"]),
                                                     q["accept"][0]["type"])
            for q in _state_candidates(_context(trace), QuestionConfig())}


def test_worked_example_path_ground_truth():
    t = trace_program(WORKED, "main", "'abc', 3")
    p = paths(t)
    assert p == {
        (6, 1): [L[7]], (7, 1): [L[8]], (8, 1): [L[6]], (6, 2): [L[7]], (7, 2): [L[10]],
        # original: (10, k1) -> `def helper(x):` (its call event); line 10 finishes after the
        # helper returns, so the next line executed *after* it is the loop header
        (10, 1): [L[6]],
        # original: (2, k2) (return line counted twice); returning to the caller accepts both
        # the calling line and the line after it
        (2, 1): [L[10], L[6]],
        (6, 3): [L[7]], (7, 3): [L[8]], (8, 2): [L[6]],
        (6, 4): [L[11]],
        (11, 1): ["-1"],  # original: (11, k2)
    }
    # original asked (5, k1) -> `for ...` only because the *next* line contains "for"; line 5
    # falls through to its sequential successor, so it is not a control-flow question here
    assert (5, 1) not in p


def test_worked_example_state_ground_truth():
    t = trace_program(WORKED, "main", "'abc', 3")
    s = states(t)
    assert s == {
        (5, 1, "out"): ([], "list"),
        (6, 1, "i"): (0, "int"), (6, 1, "c"): ("a", "str"),
        (8, 1, "out"): (["A"], "list"),
        (6, 2, "i"): (1, "int"), (6, 2, "c"): ("b", "str"),
        # not asked by the original (the helper frame broke its event pair)
        (10, 1, "out"): (["A", 6], "list"),
        (6, 3, "i"): (2, "int"), (6, 3, "c"): ("c", "str"),
        (8, 2, "out"): (["A", 6, "C"], "list"),
    }


def test_recursion_counts_are_global_per_line_with_frame_ground_truth():
    code = textwrap.dedent("""\
        def fact(n):
            if n <= 1:
                return 1
            r = n * fact(n - 1)
            return r""")
    t = trace_program(code, "fact", "3")
    p = paths(t)
    # line 2 runs in three frames: the 1st and 2nd executions branch to line 4, the 3rd to line 3
    assert p[(2, 1)] == [code.split("\n")[3]] and p[(2, 2)] == [code.split("\n")[3]]
    assert p[(2, 3)] == ["        return 1"]
    # the innermost return goes back to its caller's line 4, then line 5 of that frame
    assert p[(3, 1)] == ["    r = n * fact(n - 1)", "    return r"]
    # line 5 runs in frames 1 (n=2) and then 0 (n=3): only the last one ends the program
    assert p[(5, 2)] == ["-1"]
    assert p[(5, 1)] == ["    r = n * fact(n - 1)", "    return r"]
    # line 4 recurses: its 1st execution to start is the last to finish, so "after line 4 has
    # been executed for the 1st time" is ambiguous and line 4 is never asked about
    assert not any(line == 4 for line, _ in p)
    assert not any(key[0] == 4 for key in states(t))


def test_nil_and_unreached_candidates():
    code = textwrap.dedent("""\
        def f(x):
            if x > 0:
                y = x + 1
            else:
                y, z = -x, 0
            return y""")
    t = trace_program(code, "f", "2")
    ctx = _context(t)
    nil = {(q["line"], q["var"]) for q in _nil_candidates(ctx)}
    assert nil == {(5, "y"), (5, "z")}
    cfg = QuestionConfig(max_path=5, max_state=5, nil_fraction=1.0, unreached_path_fraction=1.0)
    subs = select_subquestions(t, cfg, random.Random(0))
    nil_qs = [q for q in subs if q["kind"] == "value_type" and q["nil"]]
    assert len(nil_qs) == 2 and all(q["accept"] == [] and q["occurrence"] == 1 for q in nil_qs)
    unreached = [q for q in subs if q["kind"] == "next_statement" and q["line"] == 5]
    assert unreached and unreached[0]["accept"] == ["-1"]
    assert answer_lines({"answer": {"program": {"entry": "f", "args": "2"}, "output": 3,
                                    "subquestions": nil_qs}})[1:] == ["Nil", "Nil"]
    # nil_fraction 0 never asks Nil questions
    subs = select_subquestions(t, QuestionConfig(nil_fraction=0.0), random.Random(0))
    assert not any(q.get("nil") for q in subs)


def test_coverage_questions():
    code = "def f(x):\n    if x:\n        return 1\n    return 2\n"
    t = trace_program(code, "f", "0")
    subs = select_subquestions(t, QuestionConfig(max_path=0, max_state=0, coverage_questions=3),
                               random.Random(1))
    cov = {q["line"]: q["executed"] for q in subs}
    assert cov == {2: True, 3: False, 4: True}


def test_non_literal_values_are_never_asked():
    code = "def f(xs):\n    it = iter(xs)\n    r = range(2)\n    n = None\n    return n\n"
    t = trace_program(code, "f", "[1]")
    s = states(t)
    assert (2, 1, "it") not in s
    assert s[(3, 1, "r")] == (range(2), "range") and s[(4, 1, "n")] == (None, "NoneType")


def test_unusable_traces_give_no_questions():
    cfg = QuestionConfig()
    t = trace_program("def f():\n    raise ValueError\n", "f", "")
    assert unusable_reason(t) == "trace_exception" and make_questions({"id": "x"}, t, cfg, random.Random()) == []
    t = trace_program("def f():\n    while True:\n        pass\n", "f", "", max_steps=10)
    assert unusable_reason(t) == "trace_max_steps"
    t = trace_program("def f():\n    return iter([])\n", "f", "")
    assert unusable_reason(t) == "non_literal_output"


def test_records_schema_and_determinism():
    t = trace_program(WORKED, "main", "'abc', 3")
    cfg = QuestionConfig(layouts=("io_mixed", "oi"), coverage_questions=1)
    a = make_questions({"id": "p1", "code": WORKED}, t, cfg, random.Random(7))
    b = make_questions({"id": "p1", "code": WORKED}, t, cfg, random.Random(7))
    assert a == b
    c = make_questions({"id": "p1", "code": WORKED}, t, cfg, random.Random(8))
    assert [q["answer"] for q in a] != [q["answer"] for q in c]
    io, oi = a
    assert io["kind"] == "io_mixed" and oi["kind"] == "oi" and io["id"] != oi["id"]
    assert io["program_id"] == "p1"
    ans = io["answer"]
    assert ans["layout"] == "io_mixed" and ans["program"] == {"code": WORKED, "entry": "main", "args": "'abc', 3"}
    assert safe_codec.from_jsonable(ans["output"]) == ["A", 6, "C"]
    kinds = [q["kind"] for q in ans["subquestions"]]
    assert kinds == sorted(kinds, key=["next_statement", "value_type", "coverage"].index)
    assert kinds.count("next_statement") == 5 and kinds.count("value_type") == 5
    assert oi["answer"] == {"layout": "oi", "program": ans["program"], "output": ans["output"]}
    json.dumps(a)  # JSON-able
    # the question texts in the prompt follow the subquestion order, numbered from Question2
    user = io["messages"][1]["content"].split("[/EXAMPLE]")[1]
    for i, q in enumerate(ans["subquestions"]):
        line = [ln for ln in user.split("\n") if ln.startswith(f"Question{i + 2}: ")]
        assert len(line) == 1 and f"line {q['line']}:" in line[0]


def test_program_code_mismatch_is_an_error():
    t = trace_program(WORKED, "main", "'abc', 3")
    with pytest.raises(ValueError):
        make_questions({"id": "p", "code": "def g(): pass"}, t, QuestionConfig(), random.Random(0))


def test_io_mixed_eligibility_and_oi_output_length():
    short = "def f(x):\n    return x + 1\n"
    t = trace_program(short, "f", "1")
    recs = make_questions({"id": "s", "code": short}, t, QuestionConfig(layouts=("io_mixed", "oi")), random.Random(0))
    assert [r["kind"] for r in recs] == ["oi"]  # no loop, < 5 lines: not io_mixed (as the paper)
    long_out = "def f(n):\n    return 'x' * n\n"
    t = trace_program(long_out, "f", "200")
    assert make_questions({"id": "l", "code": long_out}, t, QuestionConfig(layouts=("oi",)), random.Random(0)) == []


def test_config_validation():
    with pytest.raises(ValueError, match="nil_fraction"):
        QuestionConfig(nil_fraction=1.5)
    with pytest.raises(ValueError, match="layouts"):
        QuestionConfig(layouts=("bogus",))
    with pytest.raises(ValueError, match="max_path"):
        QuestionConfig(max_path=-1)


def test_cruxeval_questions_are_consistent_with_traces(cruxeval_path):
    """Every generated next-statement answer is a program line or -1; every state answer round-trips."""
    rows = [json.loads(line) for line in cruxeval_path.read_text().splitlines()[:200]]
    rng = random.Random(0)
    n_io = 0
    for row in rows:
        t = trace_program(row["code"], "f", row["input"])
        for rec in make_questions({"id": row["id"], "code": row["code"]}, t,
                                  QuestionConfig(layouts=("io_mixed",), coverage_questions=1), rng):
            n_io += 1
            lines = row["code"].split("\n")
            for q in rec["answer"]["subquestions"]:
                if q["kind"] == "next_statement":
                    assert all(a == "-1" or a in lines for a in q["accept"])
                elif q["kind"] == "value_type" and not q["nil"]:
                    v = safe_codec.from_jsonable(q["accept"][0]["value"])
                    assert type(v).__name__ == q["accept"][0]["type"]
            assert len(answer_lines(rec)) == 1 + len(rec["answer"]["subquestions"])
    assert n_io > 100


def test_helper_called_in_a_loop_counts_across_calls():
    code = textwrap.dedent("""\
        def sq(x):
            y = x * x
            return y

        def f(n):
            t = 0
            for i in range(n):
                t += sq(i)
            return t""")
    t = trace_program(code, "f", "3")
    s = states(t)
    # "line 2 executed for the 3rd time" is line 2 in the 3rd call of sq (x = 2)
    assert s[(2, 1, "y")] == (0, "int") and s[(2, 2, "y")] == (1, "int") and s[(2, 3, "y")] == (4, "int")
    q = {(c["line"], c["occurrence"]): c for c in _path_candidates(_context(t))}
    assert q[(3, 3)]["frame"] == 3 and q[(3, 3)]["frame_occurrence"] == 1
    # returning from the 3rd call: the calling line, or the loop header that runs next
    assert q[(3, 3)]["accept"] == ["        t += sq(i)", "    for i in range(n):"]
    assert s[(8, 3, "t")] == (5, "int")


def test_generator_steps_are_asked_only_where_well_defined():
    code = textwrap.dedent("""\
        def gen(n):
            for i in range(n):
                yield i * 10

        def f(n):
            total = 0
            for v in gen(n):
                total += v
            return total""")
    t = trace_program(code, "f", "2")
    p = paths(t)
    assert (3, 1) not in p  # a yield hands control to the consumer: not asked
    assert (2, 3) not in p  # generator exhaustion returns to next(): not asked
    assert p[(2, 1)] == ["        yield i * 10"]
    assert p[(8, 2)] == ["    for v in gen(n):"]
    assert states(t)[(8, 2, "total")] == (10, "int")


def test_reference_answers_get_full_reward(cruxeval_path):
    """Contract with rewards/: the ground truth written as a response scores the maximum."""
    whitebox = pytest.importorskip("execverify_jax.rewards.whitebox")
    config = pytest.importorskip("execverify_jax.rewards.config")
    rows = [json.loads(line) for line in cruxeval_path.read_text().splitlines()[:120]]
    rng = random.Random(0)
    cfg = QuestionConfig(coverage_questions=1, nil_fraction=0.5, unreached_path_fraction=0.5)
    scored = 0
    for row in rows:
        t = trace_program(row["code"], "f", row["input"])
        for rec in make_questions({"id": row["id"], "code": row["code"]}, t, cfg, rng):
            response = "<reasoning>r</reasoning>\n<answer>\n" + "\n".join(answer_lines(rec)) + "\n</answer>"
            result = whitebox.score_io_mixed(rec["answer"], response, config.RewardConfig())
            assert result.reward == pytest.approx(2.0), (row["id"], result)
            scored += 1
    assert scored > 50


def test_trailing_comments_are_optional_in_next_statement_answers():
    code = "def f(x):\n    if x:  # branch\n        x = 1  # set it\n    return x  # done\n"
    t = trace_program(code, "f", "1")
    p = paths(t)
    assert p[(2, 1)] == ["        x = 1  # set it", "        x = 1"]
    assert p[(4, 1)] == ["-1"]


def test_config_loads_from_yaml_dicts():
    from execverify_jax import config_loader as config

    cfg = config.from_dict(QuestionConfig, {"layouts": ["io_mixed", "oi"], "strict_indent": True})
    assert cfg.layouts == ("io_mixed", "oi") and cfg.strict_indent
    with pytest.raises(config.ConfigError, match="bogus"):
        config.from_dict(QuestionConfig, {"bogus": 1})


def test_compact_io_mixed_prompt_asks_the_same_questions():
    """`io_mixed_prompt: compact`: same records, answers and question texts, a much shorter prompt."""
    t = trace_program(WORKED, "main", "'abc', 3")
    full_cfg = QuestionConfig(layouts=("io_mixed",), coverage_questions=1)
    compact_cfg = QuestionConfig(layouts=("io_mixed",), coverage_questions=1, io_mixed_prompt="compact")
    (full,) = make_questions({"id": "p1", "code": WORKED}, t, full_cfg, random.Random(7))
    (compact,) = make_questions({"id": "p1", "code": WORKED}, t, compact_cfg, random.Random(7))
    assert compact["answer"] == full["answer"] and compact["id"] == full["id"] and compact["kind"] == "io_mixed"
    f_user, c_user = full["messages"][1]["content"], compact["messages"][1]["content"]
    assert len(c_user) < 0.6 * len(f_user)
    questions = [ln for ln in f_user.split("[/EXAMPLE]")[1].split("\n") if ln.startswith("Question")]
    assert [ln for ln in c_user.split("\n") if ln.startswith("Question")] == questions
    for piece in ("????", "Nil", "value; type", "YES or NO", "-1", "<reasoning>", "<answer>"):
        assert piece in c_user, piece
    with pytest.raises(ValueError, match="io_mixed_prompt"):
        QuestionConfig(io_mixed_prompt="short")
