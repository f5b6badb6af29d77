"""The pipeline with the real sandbox, execution filter, tracer and questions, on hand-written programs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from execverify_jax import config_loader
from execverify_jax.data import pipeline, records, safe_codec

PROGRAMS = {
    "str": ("def f(s, k):\n    out = []\n    for i, c in enumerate(s):\n        if i % k == 0:\n"
            "            out.append(c.upper())\n        else:\n            out.append(c)\n    return ''.join(out)",
            "f", ["'hello', 2", "'abcdef', 3"]),
    "list": ("def helper(x):\n    return x * 2\n\ndef main(xs):\n    total = 0\n    for x in xs:\n"
             "        total += helper(x)\n    return total", "main", ["[1, 2, 3]", "[]"]),
    "set": ("def f(a):\n    s = set(a[1:])\n    s.add(len(a))\n    return [a[0], sorted(s)]", "f",
            ["[0, 3, 1, 3]", "[iter([]), 1]"]),
    "dict": ("def f(d):\n    return d", "f", ["{'a': iter([])}"]),  # not a literal: rejected
    "tuple": ("def f(t):\n    if len(t) > 2:\n        return t[0]\n    return None", "f", ["(1, 2)", "(5, 6, 7)"]),
    "float": ("import random\ndef f(x):\n    return x + random.random()", "f", ["1.0"]),  # nondeterministic
}


class HandStages(pipeline.RealStages):
    """Real sandbox/filter/tracer/questions; hand-written programs instead of the builder."""

    def cells(self, cfg):
        return [pipeline.CellInfo(f"{g}|m|1", 1, g, "m") for g in PROGRAMS]

    def shard(self, cells, i, n):
        return list(cells[i::n])

    def cell_info(self, cell):
        return cell

    def synthesize(self, cell, seed, cfg):
        code, entry, inputs = PROGRAMS[cell.group]
        return {"code": code, "entry": entry, "inputs": inputs, "constraint": None}

    def check(self, cand):
        return []


@pytest.mark.parametrize("fused", [True, False])
def test_real_stages_end_to_end(tmp_path: Path, fused: bool) -> None:
    cfg = config_loader.from_dict(pipeline.DataConfig, {
        "levels": [1], "attempts": 1, "workers": 2, "chunk_size": 2, "fused_filter_trace": fused,
        "questions": {"layouts": ["io_mixed", "oi"]}, "decontam": {"humaneval": False},
        "split": {"heldout_fraction": 0.0}})
    out = tmp_path / "out"
    stages = HandStages()
    res = pipeline.run_synth(cfg, out, stages=stages, formats=("arrayrecord", "jsonl"), progress=False)
    assert res.finalized
    progs = {p["method"] + p["group"]: p for p in records.read_jsonl(out / "programs.jsonl")}
    assert sorted(p["group"] for p in progs.values()) == ["list", "set", "str", "tuple"]
    by_group = {p["group"]: p for p in progs.values()}
    assert [safe_codec.from_jsonable(o) for o in by_group["str"]["outputs"]] == ["HeLlO", "AbcDef"]
    assert [safe_codec.from_jsonable(o) for o in by_group["list"]["outputs"]] == [12, 0]
    # The set program keeps only the input whose result is a literal.
    assert by_group["set"]["inputs"] == ["[0, 3, 1, 3]"] and by_group["set"]["outputs"] == [[0, [1, 3, 4]]]
    stats = json.loads((out / "stats.json").read_text())
    counts = stats["rejections"]["counts"]
    assert counts.get("exec:not_literal") == 1 and counts.get("exec:nondeterministic") == 1
    assert counts.get("input_dropped:not_literal") == 1
    qs = list(records.read_jsonl(out / "questions.jsonl"))
    assert {q["kind"] for q in qs} == {"io_mixed", "oi"}
    assert all(q["program_id"] in {p["id"] for p in progs.values()} for q in qs)
    assert stats["subquestions_by_kind"].get("next_statement", 0) > 0
    report = pipeline.verify(out, cfg, stages=stages, progress=False)
    assert by_group["tuple"]["outputs"] == [None, 5]  # None is a legitimate output
    assert report["ok"] and report["programs"] == 4 and report["output_mismatches"] == 0
