"""The synth pipeline driven by hand-written fake stages: outputs, stats, restart, sharding, splits."""

from __future__ import annotations

import collections
import contextlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from execverify_jax import config_loader
from execverify_jax.config_loader import ConfigError
from execverify_jax.data import pipeline, records, safe_codec

REPO = Path(__file__).resolve().parents[2]

# A CRUXEval program (sample_0) with every identifier renamed: decontamination must drop it.
CRUX_ORIGINAL = ("def f(nums):\n    output = []\n    for n in nums:\n        output.append((nums.count(n), n))\n"
                 "    output.sort(reverse=True)\n    return output")
CRUX_RENAMED = ("def tally(values):\n    pairs = []\n    for item in values:\n        pairs.append((values.count(item), item))\n"
                "    pairs.sort(reverse=True)\n    return pairs")


@dataclass(frozen=True)
class FakeCell:
    group: str
    method: str
    level: int

    @property
    def key(self) -> str:
        return f"{self.group}|{self.method}|{self.level}"


class FakeStages:
    """Deterministic hand-written programs with every kind of failure mixed in."""

    GROUPS = ("list", "set", "str")

    def cells(self, cfg):
        return [FakeCell(g, m, lv) for lv in cfg.levels for g in self.GROUPS for m in ("a", "b")]

    def shard(self, cells, i, n):
        return list(cells[i::n])

    def cell_info(self, cell):
        return pipeline.CellInfo(cell.key, cell.level, cell.group, cell.method)

    def pool(self, cfg):
        return contextlib.nullcontext(None)

    def synthesize(self, cell, seed, cfg):
        r = random.Random(seed)
        kind = r.randrange(16)
        inputs = [str(r.randrange(1, 50)) for _ in range(cfg.inputs_per_program)]
        if kind == 0:
            return None
        if kind == 1:
            raise RuntimeError("builder bug")
        if kind == 2:
            return {"code": 5, "entry": "f", "inputs": inputs}
        if kind == 3:
            return {"code": CRUX_RENAMED, "entry": "tally", "inputs": ["[1, 2, 2]"], "constraint": {}}
        if kind == 4:
            code = "def f(x):\n    return x // 0"
        elif kind == 5:
            code = "def f(x):\n    BAD = x\n    return BAD"
        elif kind == 6:
            code = "def g(x):\n    return x + 1"  # the same program again and again: duplicates
        elif kind == 8:
            code = "def h(x):\n    if x > 1000:\n        return x\n    return None"  # a legitimate None output
            inputs = ["1", "2"]
        elif kind == 7:
            code = f"def f(x):\n    return {r.randrange(10_000)} // (x - 3)"  # input 3 fails, 5 passes
            inputs = ["3", "5"]
        else:
            code = f"def f(x):\n    y = x * {r.randrange(10_000)}\n    return y - {r.randrange(10_000)}"
        entry = {6: "g", 8: "h"}.get(kind, "f")
        return {"code": code, "entry": entry, "inputs": inputs, "constraint": {"level": cell.level}}

    def check(self, cand):
        return ["forbidden name BAD"] if "BAD" in cand["code"] else []

    def execute(self, pool, cands, cfg):
        out = []
        for c in cands:
            ns: dict = {}
            exec(c["code"], ns)
            per_input = []
            for a in c["inputs"]:
                try:
                    per_input.append((safe_codec.to_jsonable(eval(f"{c['entry']}({a})", ns)), None))
                except Exception as exc:
                    per_input.append((None, f"error:{type(exc).__name__}"))
            out.append(per_input)
        return out

    def trace(self, pool, progs, cfg):
        return [([{"status": "ok", "args": a} for a in p["inputs"]], None) for p in progs]

    def questions(self, prog, traces, cfg, rng):
        qs = [{"kind": "oi", "messages": [{"role": "user", "content": f"input for {prog['code']}"}],
               "answer": {"layout": "oi", "output": prog["outputs"][0]}},
              {"kind": "io_mixed", "messages": [{"role": "user", "content": f"trace {prog['code']}"}],
               "answer": {"layout": "io_mixed", "output": prog["outputs"][0], "subquestions": []}}]
        if rng.random() < 0.1:
            qs.append({"kind": "io_mixed", "answer": {}})  # malformed: no messages
        return qs

    def versions(self):
        return {"fake": "1"}


@pytest.fixture()
def bench(tmp_path: Path) -> Path:
    p = tmp_path / "bench.jsonl"
    p.write_text(json.dumps({"code": CRUX_ORIGINAL, "id": "sample_0"}) + "\n")
    return p


def make_cfg(bench: Path, **kw) -> pipeline.DataConfig:
    base = {"levels": [1, 2], "programs_per_cell": 6, "inputs_per_program": 2, "chunk_size": 5, "attempts": 3,
            "decontam": {"cruxeval": str(bench), "humaneval": False},
            "split": {"heldout_fraction": 0.1, "seed": 7}}
    base.update(kw)
    return config_loader.from_dict(pipeline.DataConfig, base)


def read_all(out: Path, kind: str) -> list[dict]:
    manifest = json.loads((out / "manifest.json").read_text())
    recs = []
    for split in pipeline.SPLITS:
        for f in manifest["files"]["arrayrecord"][kind][split]:
            recs.extend(records.read_arrayrecord(out / f))
    return recs


def test_run_writes_records_manifest_and_stats(tmp_path: Path, bench: Path) -> None:
    cfg = make_cfg(bench)
    out = tmp_path / "out"
    res = pipeline.run_synth(cfg, out, stages=FakeStages(), formats=("arrayrecord", "jsonl"), progress=False)
    assert res.finalized and res.chunks_done == 15 and res.chunks_skipped == 0  # 72 tasks / 5 per chunk
    manifest = json.loads((out / "manifest.json").read_text())
    stats = json.loads((out / "stats.json").read_text())
    assert manifest["status"] == "complete" and manifest["num_shards"] == 1
    assert manifest["config"]["programs_per_cell"] == 6 and manifest["seeds"] == {"global": 0, "split": 7}
    assert manifest["versions"]["fake"] == "1"
    assert len(manifest["completed_chunks"]) == 15

    programs = read_all(out, "programs")
    questions = read_all(out, "questions")
    assert all(not records.validate(p, "program") for p in programs)
    assert all(not records.validate(q, "question") for q in questions)
    assert len({p["id"] for p in programs}) == len(programs) == stats["programs"]
    assert len({q["id"] for q in questions}) == len(questions) == stats["questions"]
    # JSONL holds the same records as ArrayRecord.
    jp = list(records.read_jsonl(out / "programs.jsonl"))
    assert sorted(p["id"] for p in jp) == sorted(p["id"] for p in programs)
    assert len(list(records.read_jsonl(out / "questions.jsonl"))) == len(questions)
    # Every question belongs to a kept program and carries its split.
    split_of = {p["id"]: p["split"] for p in programs}
    assert all(q["split"] == split_of[q["program_id"]] for q in questions)
    # Outputs are what the programs return.
    for p in programs:
        ns: dict = {}
        exec(p["code"], ns)
        assert p["outputs"] == [safe_codec.to_jsonable(eval(f"{p['entry']}({a})", ns)) for a in p["inputs"]]

    counts = stats["rejections"]["counts"]
    for reason in ("synth_failed", "synth_error:RuntimeError", "malformed_candidate:bad_field:code",
                   "constraint:forbidden_name_BAD", "exec:error", "input_dropped:error", "duplicate", "contaminated:cruxeval",
                   "malformed_question:missing_field:messages"):
        assert counts.get(reason, 0) > 0, (reason, counts)
    assert stats["dropped"]["contaminated"]["cruxeval"] == counts["contaminated:cruxeval"]
    ex = stats["rejections"]["examples"]["contaminated:cruxeval"][0]
    assert ex["benchmark_id"] == "sample_0" and ex["exact"]
    # Exactly one copy of the repeated program survives dedup; the CRUXEval copy none.
    assert sum(p["code"] == "def g(x):\n    return x + 1" for p in programs) == 1
    assert not any("tally" in p["code"] for p in programs)
    assert stats["programs_by_level"] == dict(collections.Counter(str(p["level"]) for p in programs))
    assert stats["questions_by_kind"] == dict(collections.Counter(q["kind"] for q in questions))
    assert stats["programs"] + stats["failed_tasks"] == stats["planned_tasks"] == 72
    assert stats["programs_by_split"].get("heldout", 0) >= 1
    nones = [p for p in programs if p["entry"] == "h"]
    assert nones and all(p["outputs"] == [None, None] for p in nones)  # None is a kept output
    dropped_input = [p for p in programs if "// (x - 3)" in p["code"]]
    assert dropped_input and all(p["inputs"] == ["5"] and len(p["outputs"]) == 1 for p in dropped_input)


def _snapshot(out: Path) -> tuple:
    return (read_all(out, "programs"), read_all(out, "questions"),
            (out / "programs.jsonl").read_bytes(), (out / "questions.jsonl").read_bytes())


def test_restart_after_interruption_equals_uninterrupted(tmp_path: Path, bench: Path) -> None:
    cfg = make_cfg(bench)
    ref = tmp_path / "ref"
    pipeline.run_synth(cfg, ref, stages=FakeStages(), formats=("arrayrecord", "jsonl"), progress=False)

    out = tmp_path / "out"
    calls = []

    def interrupt(name: str) -> None:
        calls.append(name)
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated crash after chunk 3")

    with pytest.raises(KeyboardInterrupt):
        pipeline.run_synth(cfg, out, stages=FakeStages(), formats=("arrayrecord", "jsonl"), progress=False,
                           after_chunk=interrupt)
    partial = json.loads((out / "manifest.json").read_text())
    assert partial["status"] == "partial" and partial["completed_chunks"] == calls
    assert not (out / "programs.jsonl").exists()
    assert not list((out / "chunks").glob(".*.tmp"))  # no half-written files under final names

    res = pipeline.run_synth(cfg, out, stages=FakeStages(), formats=("arrayrecord", "jsonl"), progress=False)
    assert res.chunks_skipped == 3 and res.chunks_done == 12 and res.finalized
    assert _snapshot(out) == _snapshot(ref)
    s_out = json.loads((out / "stats.json").read_text())
    s_ref = json.loads((ref / "stats.json").read_text())
    s_out.pop("timings_s"), s_ref.pop("timings_s")
    assert s_out == s_ref
    # Running again is a no-op that keeps the dataset.
    again = pipeline.run_synth(cfg, out, stages=FakeStages(), formats=("arrayrecord", "jsonl"), progress=False)
    assert again.chunks_done == 0 and again.chunks_skipped == 15 and _snapshot(out) == _snapshot(ref)


def test_adding_a_format_later_keeps_the_first(tmp_path: Path, bench: Path) -> None:
    out = tmp_path / "out"
    pipeline.run_synth(make_cfg(bench), out, stages=FakeStages(), formats=("jsonl",), progress=False)
    jsonl = (out / "programs.jsonl").read_bytes()
    res = pipeline.run_synth(make_cfg(bench), out, stages=FakeStages(), formats=("arrayrecord",), progress=False)
    assert res.chunks_done == 0 and res.manifest["formats"] == ["arrayrecord", "jsonl"]
    assert (out / "programs.jsonl").read_bytes() == jsonl
    assert sorted(p["id"] for p in read_all(out, "programs")) == sorted(p["id"] for p in records.read_jsonl(out / "programs.jsonl"))


def test_restart_rejects_a_different_config(tmp_path: Path, bench: Path) -> None:
    out = tmp_path / "out"
    pipeline.run_synth(make_cfg(bench), out, stages=FakeStages(), progress=False)
    with pytest.raises(ConfigError, match="config_hash"):
        pipeline.run_synth(make_cfg(bench, seed=1), out, stages=FakeStages(), progress=False)
    with pytest.raises(ConfigError, match="num_shards"):
        pipeline.run_synth(make_cfg(bench), out, stages=FakeStages(), num_shards=2, progress=False)
    # The worker count changes speed only, so a restart may change it.
    again = pipeline.run_synth(make_cfg(bench, workers=7), out, stages=FakeStages(), progress=False)
    assert again.chunks_done == 0 and again.finalized


def test_shards_are_disjoint_and_cover_the_grid(tmp_path: Path, bench: Path) -> None:
    cfg = make_cfg(bench)
    st = FakeStages()
    tasks = {s: [(t.info.key, t.index) for c in pipeline.plan_shard(st, cfg, s, 3) for t in c] for s in range(3)}
    all_tasks = [(t.info.key, t.index) for c in pipeline.plan_shard(st, cfg, 0, 1) for t in c]
    assert sorted(sum(tasks.values(), [])) == sorted(all_tasks)
    assert len(set(sum(tasks.values(), []))) == len(all_tasks)

    out = tmp_path / "out"
    r0 = pipeline.run_synth(cfg, out, stages=st, shard_index=0, num_shards=2, progress=False)
    assert not r0.finalized
    assert json.loads((out / "manifest.json").read_text())["status"] == "partial"
    r1 = pipeline.run_synth(cfg, out, stages=st, shard_index=1, num_shards=2, progress=False)
    assert r1.finalized
    per_shard = {}
    for s in (0, 1):
        progs = [p for f in sorted((out / "chunks").glob(f"s{s:04d}-*.programs.arrayrecord"))
                 for p in records.read_arrayrecord(f)]
        per_shard[s] = progs
    ids0, ids1 = ({p["id"] for p in per_shard[s]} for s in (0, 1))
    cells0, cells1 = ({(p["group"], p["method"], p["level"]) for p in per_shard[s]} for s in (0, 1))
    assert ids0 and ids1 and not ids0 & ids1 and not cells0 & cells1
    final = read_all(out, "programs")
    # Finalize keeps one copy of a program duplicated across shards.
    assert sum(p["code"] == "def g(x):\n    return x + 1" for p in final) == 1
    assert {p["id"] for p in final} <= ids0 | ids1


def test_malformed_chunk_records_are_skipped_and_counted(tmp_path: Path, bench: Path) -> None:
    cfg = make_cfg(bench)
    out = tmp_path / "out"
    pipeline.run_synth(cfg, out, stages=FakeStages(), progress=False)
    n_before = json.loads((out / "stats.json").read_text())["programs"]
    chunk = out / "chunks" / "s0000-c00000.programs.arrayrecord"
    good = list(records.read_arrayrecord(chunk))
    from array_record.python.array_record_module import ArrayRecordWriter

    w = ArrayRecordWriter(str(chunk), "group_size:1")
    for rec in good:
        w.write(records.encode_record(rec))
    w.write(b"{not json")
    w.write(records.encode_record({"id": "x", "code": "def f(): pass"}))  # missing fields
    w.close()
    (out / "manifest.json").unlink()
    pipeline.finalize(out, cfg, FakeStages(), 1)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["programs"] == n_before
    assert stats["malformed_records_skipped"] == {"bad_json": 1, "missing_field:entry": 1}


def test_assign_splits_is_stratified_seeded_and_order_free() -> None:
    progs = [{"id": f"p{i}", "level": 1 + i % 6, "group": "gs"[(i // 6) % 2], "method": "m"} for i in range(2000)]
    cfg = pipeline.SplitConfig(heldout_fraction=0.05, seed=3)
    a = pipeline.assign_splits(progs, cfg)
    b = pipeline.assign_splits(list(reversed(progs)), cfg)
    assert a == b
    held = [p for p in progs if a[p["id"]] == "heldout"]
    assert abs(len(held) - 100) <= 1
    per_stratum = collections.Counter((p["level"], p["group"]) for p in held)
    assert all(abs(v - 100 / 12) <= 1.01 for v in per_stratum.values()) and len(per_stratum) == 12
    other = pipeline.assign_splits(progs, pipeline.SplitConfig(heldout_fraction=0.05, seed=4))
    assert other != a
    assert set(pipeline.assign_splits(progs, pipeline.SplitConfig(heldout_fraction=0.0)).values()) == {"train"}


def test_config_files_load_and_bad_keys_are_named() -> None:
    for path in sorted((REPO / "configs" / "data").glob("*.yaml")):
        cfg = pipeline.load_config(path)
        assert cfg.inputs_per_program >= 1
    with pytest.raises(ConfigError, match="programs_per_cel"):
        pipeline.load_config(None, ["programs_per_cel=3"])
    with pytest.raises(ConfigError, match="decontam.threshold"):
        pipeline.load_config(None, ["decontam.threshold=2.0"])
    with pytest.raises(ConfigError, match="chunk_size"):
        pipeline.load_config(None, ["chunk_size=0"])
    cfg = pipeline.load_config(None, ["split.heldout_fraction=0.02", "levels=[1, 3]"])
    assert cfg.split.heldout_fraction == 0.02 and cfg.levels == (1, 3)


def test_total_programs_spreads_tasks_over_cells(bench: Path) -> None:
    cfg = make_cfg(bench, total_programs=14)
    chunks = pipeline.plan_shard(FakeStages(), cfg, 0, 1)
    per_cell = collections.Counter(t.info.key for c in chunks for t in c)
    assert sum(per_cell.values()) == 14 and set(per_cell.values()) == {1, 2} and len(per_cell) == 12


def test_cli_help_lists_the_flags(capsys: pytest.CaptureFixture) -> None:
    from execverify_jax import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["synth", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--config", "--out", "--shard", "--num-shards", "--format", "--set", "--verify"):
        assert flag in text


def test_cli_reports_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from execverify_jax import cli

    rc = cli.main(["synth", "--config", str(REPO / "configs/data/small.yaml"), "--out", str(tmp_path / "o"),
                   "--set", "nonsense=1", "--no-progress"])
    assert rc == 2 and "nonsense" in capsys.readouterr().err


def test_data_side_never_imports_jax_or_grain(python_exe: str) -> None:
    import subprocess

    code = ("import sys\n"
            "import execverify_jax.data.pipeline, execverify_jax.data.records, execverify_jax.data.dedup\n"
            "import execverify_jax.commands.synth\n"
            "from execverify_jax.data import pipeline\n"
            "pipeline.RealStages().cells(pipeline.DataConfig())\n"
            "print(sorted(m for m in ('jax', 'grain', 'flax', 'optax', 'orbax') if m in sys.modules))\n")
    out = subprocess.run([python_exe, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_degenerate_programs_are_dropped_and_reported(tmp_path: Path, bench: Path) -> None:
    """signal.keep_all_equal / keep_all_trivial = 0 drop the `h` programs (outputs [None, None]);
    the defaults keep them, and stats.json reports the fractions either way."""
    kept = tmp_path / "kept"
    pipeline.run_synth(make_cfg(bench), kept, stages=FakeStages(), formats=("jsonl",), progress=False)
    stats = json.loads((kept / "stats.json").read_text())
    progs = list(records.read_jsonl(kept / "programs.jsonl"))
    n_h = sum(p["entry"] == "h" for p in progs)
    n_eq = sum(len(set(map(json.dumps, p["outputs"]))) == 1 and len(p["outputs"]) > 1 for p in progs)
    assert n_h > 0 and stats["outputs"]["all_equal"] == n_eq >= n_h
    assert stats["outputs"]["all_equal_fraction"] == round(n_eq / len(progs), 4)
    dropped = tmp_path / "dropped"
    cfg = make_cfg(bench, signal={"keep_all_equal": 0.0, "keep_all_trivial": 0.0})
    pipeline.run_synth(cfg, dropped, stages=FakeStages(), formats=("jsonl",), progress=False)
    stats = json.loads((dropped / "stats.json").read_text())
    progs = list(records.read_jsonl(dropped / "programs.jsonl"))
    assert not any(p["entry"] == "h" for p in progs)
    assert stats["outputs"]["all_equal"] == stats["outputs"]["all_trivial"] == 0
    assert stats["rejections"]["counts"]["degenerate:all_equal"] > 0
    with pytest.raises(ValueError, match="keep_all_equal"):
        make_cfg(bench, signal={"keep_all_equal": 1.5})
