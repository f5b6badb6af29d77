"""Slow end-to-end runs of `execverify synth` with the real stages (run with -m slow)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SMALL = REPO / "configs" / "data" / "small.yaml"


def synth(out: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "execverify_jax", "synth", "--config", str(SMALL), "--out", str(out),
           "--no-progress", *extra]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1200, check=check)


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    sets = ["--set", "total_programs=48", "--set", "chunk_size=8", "--format", "both"]
    ref = tmp_path / "ref"
    synth(ref, *sets)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "execverify_jax", "synth", "--config", str(SMALL), "--out", str(out),
           "--no-progress", *sets]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((out / "chunks").glob("*.json"))) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # a hard crash: no cleanup runs
    proc.wait()
    done = len(list((out / "chunks").glob("*.json")))
    assert 2 <= done < 6, "the run finished before it could be killed"
    assert json.loads((out / "manifest.json").read_text())["status"] == "partial"
    res = synth(out, *sets)
    assert f"{done} already complete" in res.stdout
    for name in ("programs.jsonl", "questions.jsonl"):
        assert (out / name).read_bytes() == (ref / name).read_bytes()


@pytest.mark.slow
def test_small_config_meets_its_contract(tmp_path: Path) -> None:
    out = tmp_path / "small"
    res = synth(out, "--verify")
    report = json.loads(res.stdout[res.stdout.index("{\n  \"ok\""):])
    assert report["ok"] and report["output_mismatches"] == 0 and report["constraint_violations"] == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["programs"] >= 1000
    assert sorted(stats["programs_by_level"]) == ["1", "2", "3", "4", "5", "6"]
    assert len(stats["programs_by_group"]) == 11
    assert set(stats["questions_by_kind"]) == {"io_mixed", "oi"}
    assert {"next_statement", "value_type", "value_type:nil", "coverage"} <= set(stats["subquestions_by_kind"])
    assert stats["programs_by_split"]["heldout"] >= 1
