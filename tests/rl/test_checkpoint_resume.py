"""Kill -9 and resume: a run SIGKILLed from outside after RL step 3 (the checkpoint of step 2
complete) and restarted on the same RUN directory writes exactly the metrics of an uninterrupted
run, step by step (same seed, CPU). Exercises params, AdamW state, step, RNG and the grain iterator state."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# On the continuous rollout engine (the default, set explicitly: resume must be exact on it).
SETS = ["max_steps=5", "save_every=2", "tensorboard=false", "mesh={data: 1, fsdp: 1, tensor: 1}",
        "data.shuffle=true", "rollout.engine=continuous"]


def _cmd(out: Path, cache: Path) -> tuple[list[str], dict]:
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(cache),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    env.pop("XLA_FLAGS", None)
    cmd = [sys.executable, "-m", "execverify_jax.cli", "train", "--config", str(REPO / "configs" / "toy_cpu.yaml"),
           "--out", str(out)]
    for s in SETS:
        cmd += ["--set", s]
    return cmd, env


def _run(out: Path, cache: Path) -> subprocess.CompletedProcess:
    cmd, env = _cmd(out, cache)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)


def _steps_logged(run: Path) -> list[int]:
    try:
        return [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
    except (OSError, ValueError):  # not written yet, or a line caught half-written
        return []


def _run_and_kill(out: Path, cache: Path, after_step: int, checkpoint: int) -> int:
    """Starts a run and SIGKILLs it from outside once `after_step` is logged and the checkpoint of
    step `checkpoint` is complete (Orbax renames its temporary directory to the step number only
    when the save is final); returns the exit status."""
    cmd, env = _cmd(out, cache)
    with open(out.parent / f"{out.name}.log", "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            deadline = time.monotonic() + 600
            while proc.poll() is None and time.monotonic() < deadline:
                if after_step in _steps_logged(out) and (out / "checkpoints" / str(checkpoint)).is_dir():
                    proc.send_signal(signal.SIGKILL)
                    break
                time.sleep(0.05)
            return proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()


def _metrics(run: Path) -> list[dict]:
    return [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]


def test_sigkill_and_resume_equals_uninterrupted(tmp_path):
    cache = tmp_path / "xla-cache"
    full = _run(tmp_path / "full", cache)
    assert full.returncode == 0, full.stderr[-2000:]
    killed = _run_and_kill(tmp_path / "resumed", cache, after_step=3, checkpoint=2)
    assert killed == -signal.SIGKILL, (killed, (tmp_path / "resumed.log").read_text()[-2000:])
    assert _steps_logged(tmp_path / "resumed")[:3] == [1, 2, 3]
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
