"""Every JSONL writer writes every row whatever its text: lone surrogates, NUL bytes, non-UTF-8
input and rows json cannot encode never crash a writer or cost the rows after them."""

from __future__ import annotations

import json

import numpy as np

from execverify_jax.data import records
from execverify_jax.data.questions import dumps_record
from execverify_jax.jsonl import BadLine, read_jsonl
from execverify_jax.eval.runner import write_jsonl as eval_write_jsonl

SURROGATE = "lone \udc80 and \ud800 surrogates"
NASTY_TEXTS = [SURROGATE, "nul \x00 byte", "bidi \u202e and emoji \U0001F600", "\udcff" * 3, "plain"]


class _HostileRepr:
    def __repr__(self):
        raise RuntimeError("no repr for you")


def _bad_rows():
    """Rows plain json.dumps(ensure_ascii=False) + UTF-8 encoding cannot write."""
    cyclic: list = []
    cyclic.append(cyclic)
    return [
        {"text": SURROGATE},
        {SURROGATE: "a surrogate in a key"},
        {"bytes": b"\xff\xfe not utf-8", "set": {3}, "np": np.float32(0.5), "npi": np.int64(7)},
        {(1, 2): "tuple key", None: "none key", 3: "int key"},
        {"cycle": cyclic},
        {"hostile": _HostileRepr()},
    ]


def _batch():
    good = [{"i": i, "text": t} for i, t in enumerate(NASTY_TEXTS)]
    bad = _bad_rows()
    return good[:2] + bad[:3] + good[2:4] + bad[3:] + good[4:]  # bad rows in the middle


def test_json_text_round_trips_text_and_is_always_utf8():
    for text in NASTY_TEXTS:
        line = records.json_text({"t": text})
        line.encode("utf-8")  # what crashed: ensure_ascii=False leaves lone surrogates raw
        assert json.loads(line) == {"t": text}  # escaped, so a reader gets exactly the same text
    assert "é" in records.json_text({"t": "é"})  # non-ASCII text stays readable


def test_json_text_converts_what_json_cannot_write():
    rows = [json.loads(records.json_text(r)) for r in _bad_rows()]
    assert rows[0] == {"text": SURROGATE} and rows[1] == {SURROGATE: "a surrogate in a key"}
    assert rows[2] == {"bytes": "\ufffd\ufffd not utf-8", "set": [3], "np": 0.5, "npi": 7}
    assert rows[3] == {"(1, 2)": "tuple key", "null": "none key", "3": "int key"}
    assert isinstance(rows[4]["cycle"], list)
    assert rows[5] == {"hostile": "<unrepresentable _HostileRepr: RuntimeError>"}


def test_records_jsonl_writer_keeps_every_row(tmp_path):
    path = tmp_path / "programs.jsonl"
    batch = _batch()
    assert records.write_jsonl(path, batch) == len(batch)
    errors = records.ReadErrors()
    back = list(records.read_jsonl(path, errors=errors))
    assert len(back) == len(batch) and not errors
    assert [r.get("i") for r in back if "i" in r] == list(range(len(NASTY_TEXTS)))
    assert back[0]["text"] == NASTY_TEXTS[0]


def test_arrayrecord_payload_and_question_lines_never_raise():
    for row in _batch():
        payload = records.encode_record(row)
        assert isinstance(records.decode_record(payload), dict)
        assert json.loads(dumps_record(row)) == json.loads(payload)


def test_readers_keep_lines_that_are_not_utf8(tmp_path):
    path = tmp_path / "mixed.jsonl"
    lines = [b'{"i": 0}', b'{"i": 1, "t": "caf\xe9 \xff"}', b'{"i": 2, "t": "ok"}', b"{torn", b'{"i": 3}']
    path.write_bytes(b"\n".join(lines) + b"\n")
    errors = records.ReadErrors()
    back = list(records.read_jsonl(path, errors=errors))
    assert [r["i"] for r in back] == [0, 1, 2, 3] and back[1]["t"] == "caf\ufffd \ufffd"
    assert errors == {"bad_json": 1}  # only the torn line
    got = [v for _, v in read_jsonl(path, yield_bad=True)]
    assert [v["i"] for v in got if not isinstance(v, BadLine)] == [0, 1, 2, 3]
    assert sum(isinstance(v, BadLine) for v in got) == 1


def test_eval_samples_writer_keeps_every_row(tmp_path):
    path = tmp_path / "out" / "samples.jsonl"
    batch = _batch()
    eval_write_jsonl(path, batch)
    got = [v for _, v in read_jsonl(path, yield_bad=True)]
    assert len(got) == len(batch) and not any(isinstance(v, BadLine) for v in got)
