"""The training-side JSONL writers (metrics.jsonl, samples.jsonl) write every row whatever its
text: lone surrogates, NUL bytes and non-scalar metric values never crash a step's logging."""

from __future__ import annotations

import json
import types

import numpy as np

from execverify_jax.rl.grpo.trainer import GRPOTrainer
from execverify_jax.rl.infra.metrics import MetricsWriter, read_metrics

TEXTS = ["lone \udc80 surrogate", "nul \x00 byte", "plain", "\ud800"]


def test_metrics_writer_keeps_every_row(tmp_path):
    w = MetricsWriter(tmp_path, tensorboard=False)
    w.write(1, {"loss": 0.5, "nan": float("nan"), "np": np.float32(2.0)})
    w.write(2, {"note": TEXTS[0], "bad": object(), "arr": np.arange(2)})  # not scalars: kept as text
    w.write(3, {"loss": 0.25})
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[0] == {"step": 1, "loss": 0.5, "nan": None, "np": 2.0}
    assert rows[1]["note"] == TEXTS[0] and rows[1]["bad"].startswith("<object") and rows[2]["loss"] == 0.25
    (tmp_path / "metrics.jsonl").open("ab").write(b'{"step": 4, "t": "\xff"}\n[1]\n')
    assert [r["step"] for r in read_metrics(tmp_path) if isinstance(r, dict)] == [1, 2, 3, 4]
    MetricsWriter(tmp_path, resume_step=2, tensorboard=False)  # resuming drops later rows, never crashes
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]


def test_rollout_samples_writer_keeps_every_row(tmp_path):
    # _log_samples needs only these attributes of the trainer (no model, no compile).
    decoded = iter(TEXTS)
    fake = types.SimpleNamespace(
        cfg=types.SimpleNamespace(log_samples=len(TEXTS), grpo=types.SimpleNamespace(group_size=2)),
        pi=0, rl_step=6, run_dir=tmp_path, task=types.SimpleNamespace(decode=lambda ids: next(decoded)))
    results = {i: types.SimpleNamespace(reward=float(i), reason=TEXTS[i]) for i in range(len(TEXTS))}
    tokens_BC = np.zeros((len(TEXTS), 3), np.int32)
    GRPOTrainer._log_samples(fake, [{"id": "q\udc80"}, {"id": "q1"}], tokens_BC, np.full(len(TEXTS), 3), results)
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["response"] for r in rows] == TEXTS and [r["reason"] for r in rows] == TEXTS
    assert [r["question_id"] for r in rows] == ["q\udc80", "q\udc80", "q1", "q1"] and rows[0]["step"] == 7
