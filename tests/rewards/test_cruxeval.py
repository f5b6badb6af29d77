"""CRUXEval ground truth scores as correct, shifted answers as wrong (parity with the original)."""

from __future__ import annotations

import ast
import json

from execverify_jax.data import safe_codec
from execverify_jax.rewards.scorer import Scorer
from execverify_jax.rewards.config import RewardConfig

PRELUDE = "from typing import *\nfrom itertools import *\nfrom collections import *\nimport bisect"


def _items(path):
    return [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]


def _record(it, layout):
    ans = {"layout": layout, "program": {"code": it["code"], "entry": "f", "args": it["input"]},
           "output": safe_codec.to_jsonable(ast.literal_eval(it["output"]))}
    if layout == "io_mixed":
        ans["subquestions"] = []
    return {"id": it["id"], "answer": ans}


def test_cruxeval_output_prediction(cruxeval_path):
    items = _items(cruxeval_path)
    qs = [_record(it, "io_mixed") for it in items]
    right = [f"<answer>\nassert f({it['input']}) == {it['output']}\n</answer>" for it in items]
    wrong = [f"<answer>\nassert f({it['input']}) == {items[(i + 1) % len(items)]['output']}\n</answer>"
             for i, it in enumerate(items)]
    scorer = Scorer(None, RewardConfig())
    assert all(r.reward == 2.0 for r in scorer.score_batch(qs, right))
    wrong_scores = [r.reward for r in scorer.score_batch(qs, wrong)]
    # Only items whose neighbour has an equal output (e.g. both '') may pass.
    equal = [ast.literal_eval(it["output"]) == ast.literal_eval(items[(i + 1) % len(items)]["output"])
             for i, it in enumerate(items)]
    assert [s == 2.0 for s in wrong_scores] == equal


def test_cruxeval_input_prediction(pool, cruxeval_path):
    items = _items(cruxeval_path)[:120]
    literal = []
    for it in items:  # CRUXEval has a few non-literal inputs ("''.join(...)"): not answers here
        try:
            ast.literal_eval(f"({it['input']},)")
            literal.append(it)
        except (ValueError, SyntaxError):
            pass
    qs = [_record(it, "oi") for it in literal]
    right = [f"<answer>\n```python\nassert f({it['input']}) == {it['output']}\n```\n</answer>" for it in literal]
    scorer = Scorer(pool, RewardConfig(prelude=PRELUDE))
    results = scorer.score_batch(qs, right)
    assert all(r.reward == 2.0 for r in results), [r for r in results if r.reward != 2.0][:3]
