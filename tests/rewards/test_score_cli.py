"""`execverify score`: scored file, summary, malformed lines skipped and counted, config errors."""

from __future__ import annotations

import json

import pytest

from execverify_jax.cli import main
from execverify_jax.commands.score import ScoreOptions
from execverify_jax.config_loader import ConfigError, load

FILES = ["questions=q.jsonl", "responses=r.jsonl", "out=s.jsonl"]


def test_score_cli(tmp_path, io_record, oi_record, correct_lines, respond, capsys):
    q = tmp_path / "q.jsonl"
    r = tmp_path / "r.jsonl"
    out = tmp_path / "s.jsonl"
    bad_q = {"id": "bad", "answer": {"layout": "io_mixed"}}
    q.write_text("\n".join([json.dumps(io_record), json.dumps(oi_record), "{not json", json.dumps(bad_q)]) + "\n")
    rows = [
        {"question_id": "q1", "response": respond(correct_lines)},
        {"question_id": "q1", "response": respond(["assert f('abc', 2) == 0"] + correct_lines[1:])},
        {"question_id": "q2", "response": "<answer>assert f('abc', 2) == 1</answer>"},
        {"question_id": "q2", "response": "<answer>assert f('abd', 2) == 1</answer>"},
        {"question_id": "missing", "response": "x"},
        {"question_id": "bad", "response": "x"},
        {"question_id": "q1"},
    ]
    r.write_text("\n".join(json.dumps(x) for x in rows) + "\n[1, 2]\n")
    rc = main(["score", "--questions", str(q), "--responses", str(r), "--out", str(out),
               "--workers", "1", "--no-progress", "--set", "reward.oi_timeout_s=3"])
    assert rc == 0
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert [s["reward"] for s in scored] == [2.0, 0.0, 2.0, 0.0]
    assert scored[0]["breakdown"]["correct"] == [True] * 6 and scored[0]["response"] == rows[0]["response"]
    text = capsys.readouterr().out
    assert "io_mixed" in text and "mean reward=1.0000" in text
    assert "skipped malformed lines: 6" in text  # 1 bad JSON + 1 bad record + 2 unknown ids + 1 no text + 1 non-object


def test_score_cli_config_errors(tmp_path):
    assert load(ScoreOptions, None, FILES + ["reward.gated=false", "reward.alpha=0.25"]).reward.alpha == 0.25
    with pytest.raises(ConfigError, match="reward.nope"):
        load(ScoreOptions, None, FILES + ["reward.nope=1"])
    with pytest.raises(ConfigError, match="alpha"):
        load(ScoreOptions, None, FILES + ["reward.alpha=3"])
    y = tmp_path / "c.yaml"
    y.write_text("reward:\n  gated: false\n  format_reward: 0.1\n")
    cfg = load(ScoreOptions, str(y), FILES).reward
    assert cfg.gated is False and cfg.format_reward == 0.1
    assert main(["score", "--questions", "x", "--responses", "y", "--out", "z", "--set", "reward.align=middle"]) == 2
