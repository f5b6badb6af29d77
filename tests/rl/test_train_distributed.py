"""Multi-controller path on localhost: two JAX processes (2 CPU devices each, gloo collectives,
`jax.distributed.initialize`) run sharded GRPO updates over a 4-device mesh, save and restore an
Orbax checkpoint together, and agree with a single process holding all 4 devices; and the whole
GRPO loop (loader shards, sampler, scoring, updates, checkpoints, resume) runs on two processes."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

WORKER = Path(__file__).with_name("dist_worker.py")
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(nproc: int, out: Path, worker: Path = WORKER, args: tuple = ()) -> None:
    out.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    procs = [subprocess.Popen([sys.executable, str(worker), str(i), str(nproc), str(port), str(out), *map(str, args)],
                              env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(nproc)]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]


@pytest.mark.slow
def test_two_processes_agree_with_one(tmp_path):
    _launch(1, tmp_path / "one")
    _launch(2, tmp_path / "two")
    a, b = np.load(tmp_path / "one" / "result.npz"), np.load(tmp_path / "two" / "result.npz")
    np.testing.assert_allclose(a["metrics"], b["metrics"], rtol=1e-5, atol=1e-6)
    keys = [k for k in a.files if k != "metrics"]
    assert keys
    for k in keys:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)
    # the HF export written from weights sharded over two processes equals the one-process export
    from safetensors.numpy import load_file
    ta = load_file(tmp_path / "one" / "hf" / "model.safetensors")
    tb = load_file(tmp_path / "two" / "hf" / "model.safetensors")
    assert sorted(ta) == sorted(tb) and ta
    for k in ta:
        np.testing.assert_allclose(ta[k], tb[k], rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.mark.slow
def test_grpo_loop_on_two_processes_resumes_exactly(tmp_path):
    from execverify_jax.rl.infra.metrics import read_metrics

    loop_worker = WORKER.with_name("dist_loop_worker.py")
    _launch(2, tmp_path / "straight", loop_worker, (3,))
    _launch(2, tmp_path / "resumed", loop_worker, (2,))
    _launch(2, tmp_path / "resumed", loop_worker, (3,))  # restores step 2 on both processes
    a, b = read_metrics(tmp_path / "straight"), read_metrics(tmp_path / "resumed")
    assert [r["step"] for r in a] == [1, 2, 3] and [r["step"] for r in b] == [1, 2, 3]
    for ra, rb in zip(a, b):
        for k in ("reward/mean_global", "train/loss", "train/grad_norm", "optimizer_step"):
            assert np.isfinite(ra[k])
            np.testing.assert_allclose(ra[k], rb[k], rtol=1e-5, atol=1e-6, err_msg=f"step {ra['step']} {k}")
    assert (tmp_path / "straight" / "checkpoints" / "3").is_dir()


@pytest.mark.slow
def test_dynamic_sampling_on_two_processes(tmp_path):
    # Every process decides from the all-gathered rewards: they keep the same groups and pull the
    # same extra batches (a disagreement would deadlock the collectives or fail the update).
    from execverify_jax.rl.infra.metrics import read_metrics

    loop_worker = WORKER.with_name("dist_loop_worker.py")
    _launch(2, tmp_path / "dyn", loop_worker, (2, "grpo.dynamic_sampling=true", "grpo.dynamic_max_rounds=3"))
    rows = read_metrics(tmp_path / "dyn")
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert 1 <= r["dynamic/rounds"] <= 3 and np.isfinite(r["train/loss"])
        assert np.isclose(r["adv/zero_groups"], r["dynamic/filled_groups"] / 8)
