"""Kill -9 and resume: a run SIGKILLed after RL step 3 (last checkpoint at step 2) and restarted
on the same RUN directory writes exactly the metrics of an uninterrupted run, step by step
(same seed, CPU). Exercises params, AdamW state, step, RNG and the grain iterator state."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SETS = ["max_steps=5", "save_every=2", "tensorboard=false", "mesh={data: 1, fsdp: 1, tensor: 1}",
        "data.shuffle=true"]


def _run(out: Path, cache: Path, kill_at: int | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(cache),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    env.pop("XLA_FLAGS", None)
    env.pop("EXECVERIFY_TEST_KILL_AT_STEP", None)
    if kill_at is not None:
        env["EXECVERIFY_TEST_KILL_AT_STEP"] = str(kill_at)
    cmd = [sys.executable, "-m", "execverify_jax.cli", "train", "--config", str(REPO / "configs" / "toy_cpu.yaml"),
           "--out", str(out)]
    for s in SETS:
        cmd += ["--set", s]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)


def _metrics(run: Path) -> list[dict]:
    return [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]


def test_sigkill_and_resume_equals_uninterrupted(tmp_path):
    cache = tmp_path / "xla-cache"
    full = _run(tmp_path / "full", cache)
    assert full.returncode == 0, full.stderr[-2000:]
    killed = _run(tmp_path / "resumed", cache, kill_at=3)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-2000:])
    assert [r["step"] for r in _metrics(tmp_path / "resumed")] == [1, 2, 3]
    resumed = _run(tmp_path / "resumed", cache)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed" in resumed.stdout + resumed.stderr
    a, b = _metrics(tmp_path / "full"), _metrics(tmp_path / "resumed")
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5]
    skip = ("time/", "throughput/")
    for ra, rb in zip(a, b):
        for k in ra:
            if k.startswith(skip):
                continue
            assert ra[k] == pytest.approx(rb[k], rel=1e-6, abs=1e-7), (ra["step"], k, ra[k], rb[k])
