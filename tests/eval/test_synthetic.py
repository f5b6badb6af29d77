"""Held-out synthetic questions scored with the stage-I rewards, per kind and level."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from execverify_jax.eval.synthetic import Synthetic

_spec = importlib.util.spec_from_file_location("eval_conftest", Path(__file__).with_name("conftest.py"))
_conf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_conf)


def _write(folder: Path) -> Path:
    programs, questions = _conf.synthetic_records()
    (folder / "programs.jsonl").write_text("\n".join(json.dumps(p) for p in programs) + "\n")
    (folder / "questions.jsonl").write_text("\n".join(json.dumps(q) for q in questions) + "\n{bad json\n")
    return folder


def test_oracle_and_levels(tmp_path, ctx):
    b = Synthetic()
    rep = b.load(_write(tmp_path), "execverify", None)
    assert [it.id for it in rep.items] == ["p1:io", "p2:oi"]  # heldout only
    assert rep.bad_lines == 1
    assert [it.meta["level"] for it in rep.items] == [2, 3]
    oracle = b.oracle(rep.items, ctx)
    verdicts = b.grade(rep.items, [[o] for o in oracle], ctx)
    assert all(vs[0].correct for vs in verdicts)
    s = b.summarize(rep.items, verdicts)
    assert s["kind=io_mixed,level=2"]["accuracy"] == 1.0 and s["kind=oi,level=3"]["mean_reward"] == 2.0
    # Right assertion, one wrong white-box answer: not fully correct, white-box accuracy 2/3.
    partial = oracle[0].replace("    for x in xs:", "    return out")
    v = b.grade(rep.items[:1], [[partial]], ctx)[0][0]
    assert not v.correct and v.details["io"] and abs(v.details["wb_acc"] - 2 / 3) < 1e-9
    wrong_oi = "<answer>\n```python\nassert f([0], 1) == [6]\n```\n</answer>"
    assert not b.grade(rep.items[1:], [[wrong_oi]], ctx)[0][0].correct


def test_arrayrecord_folder_with_manifest(tmp_path, ctx):
    from execverify_jax.data import records

    programs, questions = _conf.synthetic_records()
    records.write_arrayrecord(tmp_path / "programs-heldout-00000.arrayrecord", programs)
    records.write_arrayrecord(tmp_path / "questions-heldout-00000.arrayrecord", questions[:2])
    records.write_arrayrecord(tmp_path / "questions-train-00000.arrayrecord", questions[2:])
    (tmp_path / "manifest.json").write_text(json.dumps({"files": {"arrayrecord": {
        "programs": {"heldout": ["programs-heldout-00000.arrayrecord"]},
        "questions": {"train": ["questions-train-00000.arrayrecord"],
                      "heldout": ["questions-heldout-00000.arrayrecord"]}}}}))
    b = Synthetic()
    rep = b.load(tmp_path, "execverify", None)
    assert [it.id for it in rep.items] == ["p1:io", "p2:oi"] and [it.meta["level"] for it in rep.items] == [2, 3]
    verdicts = b.grade(rep.items, [[o] for o in b.oracle(rep.items, ctx)], ctx)
    assert all(vs[0].correct for vs in verdicts)
