"""REval: ground truth recomputed by the tracer; oracle answers score 100% on every task (where a
literal answer exists), wrong answers 0, IC follows REval's chain, both prompt styles parse."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from execverify_jax.data import safe_codec
from execverify_jax.data.trace import tracer
from execverify_jax.eval.items import Verdict
from execverify_jax.eval.reval import REval, TASKS
from execverify_jax.eval.reval_grading import fill_template, parse_state_answer, state_matches

# HumanEval-derived (0, 1, 13) and ClassEval-derived (85, 86, 100) programs.
PIDS = {0, 1, 13, 85, 86, 100}


def _subset(dreval_dir, style="execverify", tasks=TASKS, semantics="reval"):
    b = REval(tasks, "reval-ic", state_semantics=semantics)
    rep = b.load(dreval_dir, style, None)
    assert rep.bad_lines == 0 and not rep.skipped
    return b, [it for it in rep.items if it.meta["pid"] in PIDS]


def _to_official(resp: str) -> str:
    return resp.replace("<answer>", "[ANSWER]").replace("</answer>", "[/ANSWER]")


def test_counts_match_the_reference(dreval_dir):
    b = REval(TASKS, "reval-ic")
    rep = b.load(dreval_dir, "execverify", None)
    by_task = {t: sum(1 for it in rep.items if it.task == f"reval-{t}") for t in TASKS}
    assert by_task == {"coverage": 3152, "path": 3152, "state": 3152, "output": 690}  # reference 7.3


def test_classeval_inputs_are_the_first_test_methods(dreval_dir):
    # The traced call of a ClassEval input is the first test method of the k-th test class, whose
    # body (without `self.`) is the input text shown to the model.
    b = REval(TASKS, "x")
    b.load(dreval_dir, "execverify", 5)
    for pid in (85, 86, 100):
        prog, tests = b.programs[pid], b.tests[pid]
        assert tests is not None and len(tests) >= len(prog["inputs"])


@pytest.mark.parametrize("style,semantics", [("execverify", "reval"), ("official", "reval"),
                                             ("execverify", "frame")])
def test_oracle_scores_100_and_wrong_scores_0(dreval_dir, ctx, style, semantics):
    b, items = _subset(dreval_dir, style, semantics=semantics)
    oracle = b.oracle(items, ctx)
    verdicts = b.grade(items, [[o or ""] for o in oracle], ctx)
    # Without an oracle: state values with no literal form (datetime objects...), flagged as such
    # by the grader, and a few output snippets whose expected value is not a literal ({'a': str}).
    missing = [(it, vs[0]) for it, o, vs in zip(items, oracle, verdicts) if o is None]
    assert all(v.details.get("unanswerable") for it, v in missing if it.task == "reval-state")
    assert sum(it.task == "reval-output" for it, _ in missing) <= 2
    assert len(missing) < 0.05 * len(items)
    wrong = [(it.id, vs[0].reason) for it, vs, o in zip(items, verdicts, oracle) if o is not None and not vs[0].correct]
    assert wrong == []
    # The other style's tags parse the same.
    verdicts2 = b.grade(items, [[_to_official(o or "")] for o in oracle], ctx)
    assert [v[0].correct for v in verdicts2] == [v[0].correct for v in verdicts]
    summary = b.summarize(items, verdicts)
    assert summary["reval-coverage"]["f1"] == 1.0 and summary["reval-path"]["acc"] == 1.0
    answerable = [it for it, o in zip(items, oracle) if o is not None]
    sub = b.summarize(answerable, [vs for vs, o in zip(verdicts, oracle) if o is not None])
    assert sub["reval-state"]["acc"] == 1.0 and sub["reval-output"]["acc"] == 1.0
    # Wrong answers: flip coverage, a line that is never next, a wrong state, a wrong output.
    bad = []
    for it, o in zip(items, oracle):
        task = it.task.split("-")[1]
        if task == "coverage":
            bad.append("<answer>NO</answer>" if "YES" in (o or "") else "<answer>YES</answer>")
        elif task == "path":
            bad.append("<answer>this line does not exist</answer>")
        elif task == "state":
            bad.append("<answer>'no such value'; str</answer>" if "Nil" not in (o or "") else "<answer>1; int</answer>")
        else:
            bad.append("<answer>assert True</answer>")
    bv = b.grade(items, [[r] for r in bad], ctx)
    assert not any(vs[0].correct for vs in bv)
    assert b.summarize(items, bv)["reval-ic"]["ic_score"] == 0.0


def test_ic_chain(dreval_dir, ctx):
    b, items = _subset(dreval_dir)
    oracle = b.oracle(items, ctx)
    ok = b.grade(items, [[o or ""] for o in oracle], ctx)
    # Only coverage right: every complete row scores 0.125.
    only_cov = [vs if it.task == "reval-coverage" else [Verdict(False, None, "x")] for it, vs in zip(items, ok)]
    rows = [it for it in items if it.task == "reval-coverage"]
    cov_right = sum(1 for it, vs in zip(items, ok) if it.task == "reval-coverage" and vs[0].correct)
    assert cov_right == len(rows)
    assert b.ic(items, only_cov) == pytest.approx(12.5)
    # Everything but output right: 0.5 per row. Rows with a question that has no literal answer
    # (unanswerable state questions, see the test above) are left out, so that every remaining
    # state and path answer of the oracle is right (asserted: the chain is then fully exercised).
    def row(it):
        return it.meta["pid"], it.meta["input_idx"], it.meta.get("q")

    unanswerable = {row(it) for it, o in zip(items, oracle) if o is None and it.task != "reval-output"}
    kept = [(it, vs) for it, vs in zip(items, ok) if it.task == "reval-output" or row(it) not in unanswerable]
    assert all(vs[0].correct for it, vs in kept if it.task in ("reval-state", "reval-path"))
    assert sum(it.task == "reval-state" for it, _ in kept) >= 10
    no_out = [vs if it.task != "reval-output" else [Verdict(False, None, "x")] for it, vs in kept]
    assert b.ic([it for it, _ in kept], no_out) == pytest.approx(50.0)


def test_probe_agrees_with_the_tracer(dreval_dir, ctx):
    # With the `frame` rule, for plain-name state questions of function items, the probe's
    # values are the tracer's own after-states of the same line.
    b, items = _subset(dreval_dir, tasks=("state",))
    b.state_semantics = "frame"
    gts = b.ground_truth(items, ctx)
    checked = 0
    for it in items:
        prog = b.programs[it.meta["pid"]]
        if prog.get("test") or not it.meta["var"].isidentifier():
            continue
        tr = tracer.trace_program(prog["code"], prog["entry_point"], "*" + prog["inputs"][it.meta["input_idx"]])
        want = []
        for s in tr["steps"]:
            if s["line"] == it.meta["line"]:
                v = tracer.state_after(tr, s["i"]).get(it.meta["var"])
                if v is not None and v not in want:
                    want.append(v)
        got = gts[(it.meta["pid"], it.meta["input_idx"])]["questions"][it.meta["q"]]["state"]["values"]
        assert [g["value"] for g in got] == [w["value"] for w in want], it.id
        checked += 1
    assert checked >= 5


def test_state_answer_parsing():
    assert parse_state_answer("Nil") == ("nil", None, "")
    assert parse_state_answer("[1, 2]; list") == ("value", [1, 2], "list")
    assert parse_state_answer("'a'; string") == ("value", "a", "str")
    assert parse_state_answer("(1, 'x'); tuple[int, str]") == ("value", (1, "x"), "tuple")
    assert parse_state_answer("3; <class 'int'>") == ("value", 3, "int")
    assert parse_state_answer("None; NoneType") == ("value", None, "NoneType")
    assert parse_state_answer("str; type") == ("value", "<class 'str'>", "type")
    assert parse_state_answer("abc; str") is None  # unquoted string: not a literal (REval: eval fails)
    assert parse_state_answer("__import__('os'); int") is None
    assert parse_state_answer("5") is None


def test_state_matching_rules():
    enc = safe_codec.to_jsonable
    st = {"nil": False, "values": [{"type": "float", "value": enc(0.30000000000000004)}, {"type": "int", "value": 3}]}
    assert state_matches(("value", 0.3, "float"), st)  # within 1e-6
    assert state_matches(("value", 3, "int"), st)
    assert not state_matches(("value", 3.0, "int"), st)  # value type must be the answered type
    assert not state_matches(("value", 4, "int"), st)
    assert not state_matches(("nil", None, ""), st)
    assert state_matches(("nil", None, ""), {"nil": True, "values": []})
    assert state_matches(("value", None, "NoneType"), {"nil": False, "values": [{"type": "NoneType", "value": None}]})


def test_fill_template():
    t = "a = A(3)\nassertEqual(a.f(2), ??)\nassertTrue(??)"
    assert fill_template(t, "a = A(3)\nassertEqual(a.f(2), 5)\nassertTrue(True)")[0] is not None
    assert fill_template(t, "self.assertEqual(a.f(2), 5)\nself.assertTrue(1)")[0] is not None  # right-aligned
    assert fill_template(t, "a = A(3)\nassertEqual(a.f(2), a.f(2))\nassertTrue(True)")[1] == "answer_differs_from_template"
    assert fill_template(t, "a = A(4)\nassertEqual(a.f(2), 5)\nassertTrue(True)")[1] == "answer_differs_from_template"
    assert fill_template(t, "assert True")[0] is None  # REval penalty pattern, rejected structurally


@pytest.mark.slow
def test_full_reval_oracle(dreval_dir, ctx):
    b = REval(TASKS, "reval-ic")
    items = b.load(dreval_dir, "execverify", None).items
    oracle = b.oracle(items, ctx)
    verdicts = b.grade(items, [[o or ""] for o in oracle], ctx)
    wrong = [it.id for it, vs, o in zip(items, verdicts, oracle) if o is not None and not vs[0].correct]
    assert wrong == []
    gt_failed = sum(1 for vs in verdicts if vs[0].reason == "ground_truth_failed")
    # 13 of 690 pairs need gensim, network access or numpy<2 (reported, not hidden).
    assert gt_failed <= 330


def _emulated(dreval_dir, tmp_path, pids):
    script = Path(__file__).with_name("reval_emulation.py")
    out = subprocess.run([sys.executable, str(script), str(dreval_dir), *map(str, sorted(pids))], cwd=tmp_path,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def _cross_check(dreval_dir, ctx, tmp_path, pids):
    b = REval(TASKS, "reval-ic", state_semantics="reval")
    items = [it for it in b.load(dreval_dir, "execverify", None).items if not pids or it.meta["pid"] in pids]
    gts = b.ground_truth(items, ctx)
    compared = 0
    for rec in _emulated(dreval_dir, tmp_path, pids):
        gt = gts[(rec["pid"], rec["k"])]
        if "error" in rec or gt["status"] != "ok":
            continue  # a module or the network is missing on one side (the sandbox has no network)
        for q, want in rec["questions"].items():
            got = gt["questions"][int(q)]
            values = sorted({json.dumps(v["value"], sort_keys=True) for v in got["state"]["values"]})
            assert (got["covered"], got["next"], values) == (want["covered"], want["next"], want["values"]), \
                (rec["pid"], rec["k"], q)
            compared += 1
    return compared


def test_ground_truth_matches_an_independent_reval_emulation(dreval_dir, ctx, tmp_path):
    # Coverage, next-line sets and (with REval's state rule) state values equal those of an
    # independent implementation of REval's definitions, on HumanEval and ClassEval programs.
    assert _cross_check(dreval_dir, ctx, tmp_path, PIDS) > 50


@pytest.mark.slow
def test_ground_truth_matches_reval_emulation_everywhere(dreval_dir, ctx, tmp_path):
    assert _cross_check(dreval_dir, ctx, tmp_path, set()) >= 3000  # every pair both sides can run
