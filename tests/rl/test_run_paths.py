"""Run directories on non-local filesystems (issue 12): `gs://bucket/run` stays a URI (pathlib made
it the local directory `gs:/bucket/run` on every host). Offline, `etils.epath.testing.mock_epath`
serves `gs://` from a temporary directory, so what is exercised is our code's path handling and
the append-free writes an object store needs, not GCS itself."""

import json
import os

import pytest
from etils import epath
from etils.epath import testing as epath_testing

from execverify_jax.paths import append_lines, is_remote, run_path
from execverify_jax.rl.infra.metrics import MetricsWriter, read_metrics


@pytest.fixture
def fake_gcs(tmp_path, monkeypatch):
    """gs://X/... is stored under tmp_path/X/...; returns tmp_path. Local paths are untouched."""
    monkeypatch.chdir(tmp_path)  # a stray pathlib "gs:/..." directory would land here

    def local(p):
        s = os.fspath(p)
        return str(tmp_path / s[len("gs://"):]) if s.startswith("gs://") else s

    def one(fn, p, *a, **k):
        return fn(local(p), *a, **k)

    def two(fn, p, dst, *a, **k):
        return fn(local(p), local(dst), *a, **k)

    def glob(fn, p):
        return ["gs://" + os.path.relpath(x, tmp_path) for x in fn(local(p))]

    def listdir(fn, p):
        return fn(local(p))

    with epath_testing.mock_epath(open=one, exists=one, isdir=one, listdir=listdir, makedirs=one, mkdir=one,
                                  remove=one, rmtree=one, stat=one, glob=glob, rename=two, replace=two, copy=two):
        yield tmp_path


def test_run_path_keeps_uri_and_absolutises_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = run_path("gs://bucket/run") / "checkpoints"
    assert str(p) == "gs://bucket/run/checkpoints" and is_remote(p)
    assert str(run_path("runs/a")) == str(tmp_path / "runs" / "a") and not is_remote(run_path("runs/a"))


def test_metrics_and_samples_on_gs(fake_gcs):
    run = "gs://bucket/run"
    w = MetricsWriter(run, tensorboard=False)
    w.write(1, {"loss": 1.5})
    w.write(2, {"loss": float("nan")})
    append_lines(run_path(run) / "samples.jsonl", [json.dumps({"step": 1})])
    append_lines(run_path(run) / "samples.jsonl", [json.dumps({"step": 2})])
    assert [r["step"] for r in read_metrics(run)] == [1, 2]
    assert read_metrics(run)[1]["loss"] is None
    assert (fake_gcs / "bucket" / "run" / "metrics.jsonl").is_file()
    lines = (fake_gcs / "bucket" / "run" / "samples.jsonl").read_text().splitlines()
    assert [json.loads(l)["step"] for l in lines] == [1, 2]
    # resuming at step 1 drops the later line, as for a local run
    MetricsWriter(run, resume_step=1, tensorboard=False)
    assert [r["step"] for r in read_metrics(run)] == [1]
    assert not (fake_gcs / "gs:").exists()


def test_checkpointer_directory_on_gs(fake_gcs, monkeypatch):
    """Orbax's CheckpointManager opens (creates, lists) the gs:// directory through epath. Array
    writes go through tensorstore's GCS driver, which this offline test cannot reach."""
    from orbax.checkpoint._src.path import gcs_utils

    from execverify_jax.rl.infra.checkpoint import RunCheckpointer

    # Orbax asks the GCS API (google-cloud-storage) whether the bucket has hierarchical namespaces.
    monkeypatch.setattr(gcs_utils, "is_hierarchical_namespace_enabled", lambda path: False)

    ck = RunCheckpointer("gs://bucket/run", keep=1, async_save=False)
    assert str(ck.dir) == "gs://bucket/run/checkpoints" and isinstance(ck.dir, epath.Path)
    assert (fake_gcs / "bucket" / "run" / "checkpoints").is_dir()  # created through epath
    assert ck.latest_step() is None
    ck.close()
    assert not (fake_gcs / "gs:").exists()
