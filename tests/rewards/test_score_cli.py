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
    # every response line has its row, in order; those that could not be scored say why
    assert [s["reward"] for s in scored] == [2.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert [s["breakdown"]["reason"] for s in scored[4:]] == ["unknown_question", "unknown_question", "no_response_text", "not_an_object"]
    assert scored[7] == {"response_line": 8, "reward": 0.0, "breakdown": {"reward": 0.0, "kind": None, "format": False, "reason": "not_an_object"}}
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


# -------------------------------------------- every row arrives, whatever its text
SURROGATE = "lone \udc80 and \ud800 surrogates"


def _score(tmp_path, io_record, response_lines: list[bytes]):
    from execverify_jax.cli import main

    q, r, out = tmp_path / "q.jsonl", tmp_path / "r.jsonl", tmp_path / "s.jsonl"
    q.write_text(json.dumps(io_record) + "\n")
    r.write_bytes(b"\n".join(response_lines) + b"\n")
    assert main(["score", "--questions", str(q), "--responses", str(r), "--out", str(out), "--no-progress"]) == 0
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def test_score_writes_every_row_of_a_batch_with_hostile_text(tmp_path, io_record, correct_lines, respond):
    good = respond(correct_lines)
    hostile = [
        json.dumps({"question_id": "q1", "response": good + "\udc80"}).encode(),  # valid JSON: "\udc80"
        json.dumps({"question_id": "q1", "response": "\udc80"}).encode(),
        b'{"question_id": "q1", "response": "raw \x00 nul"}',
        b'{"question_id": "q1", "response": "not utf-8 \xff\xfe"}',
        b"{torn line",
        json.dumps({"question_id": "nope", "response": SURROGATE}).encode(),
    ]
    lines = [json.dumps({"question_id": "q1", "response": good, "n": i}).encode() for i in range(40)]
    lines[20:20] = hostile  # the bad rows in the middle of the batch
    scored = _score(tmp_path, io_record, lines)
    assert len(scored) == len(lines)
    assert [s.get("n") for s in scored if "n" in s] == list(range(40))
    assert all(s["reward"] == 2.0 for s in scored if "n" in s)
    mid = scored[20:26]
    assert mid[0]["response"] == good + "\udc80" and mid[0]["reward"] == 2.0  # text kept exactly
    assert mid[1]["response"] == "\udc80" and mid[1]["breakdown"]["reason"] == "no_answer"
    assert mid[2]["response"] == "raw \x00 nul" and mid[3]["response"] == "not utf-8 \ufffd\ufffd"
    assert mid[4] == {"response_line": 25, "reward": 0.0,
                      "breakdown": {"reward": 0.0, "kind": None, "format": False, "reason": "invalid_json"}}
    assert mid[5]["reward"] == 0.0 and mid[5]["breakdown"]["reason"] == "unknown_question"


def test_score_row_whose_scoring_fails_is_written_with_reward_zero(tmp_path, io_record, correct_lines, respond, monkeypatch):
    from execverify_jax.rewards import scorer as scorer_mod

    real = scorer_mod.Scorer.submit_batch

    def flaky(self, questions, responses):
        futures = real(self, questions, responses)
        broken = type(futures[1])()
        broken.set_exception(RuntimeError("scorer bug"))
        return [futures[0], broken] + list(futures[2:])

    monkeypatch.setattr(scorer_mod.Scorer, "submit_batch", flaky)
    line = json.dumps({"question_id": "q1", "response": respond(correct_lines)}).encode()
    scored = _score(tmp_path, io_record, [line] * 3)
    assert [s["reward"] for s in scored] == [2.0, 0.0, 2.0]
    assert scored[1]["breakdown"]["reason"] == "scoring_error: RuntimeError: scorer bug"
