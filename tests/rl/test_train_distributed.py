"""Multi-controller path on localhost: two JAX processes (2 CPU devices each, gloo collectives,
`jax.distributed.initialize`) run sharded GRPO updates over a 4-device mesh, save and restore an
Orbax checkpoint together, and agree with a single process holding all 4 devices."""

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


def _launch(nproc: int, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(i), str(nproc), str(port), str(out)],
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
