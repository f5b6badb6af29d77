"""Record I/O: ArrayRecord/JSONL round trips, atomic writes, validation, malformed records counted."""

from __future__ import annotations

from pathlib import Path

import pytest

from execverify_jax.data import records, safe_codec

PROGRAM = {"id": "p1", "code": "def f(x):\n    return {x: 'é'}", "entry": "f", "inputs": ["1", "'a'"],
           "outputs": [safe_codec.to_jsonable({1: "é"}), safe_codec.to_jsonable({"a": "é"})],
           "level": 1, "group": "dict", "method": "get", "constraint": {"nested": True}, "seed": 12}
QUESTION = {"id": "p1-q00", "program_id": "p1", "kind": "oi",
            "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u\ttab"}],
            "answer": {"layout": "oi", "output": safe_codec.to_jsonable((1, {2, 3}))}}


@pytest.mark.parametrize("suffix", [".arrayrecord", ".jsonl"])
def test_round_trip_preserves_records_exactly(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"r{suffix}"
    recs = [dict(PROGRAM, id=f"p{i}") for i in range(2500)]  # > one read batch
    write = records.write_jsonl if suffix == ".jsonl" else records.write_arrayrecord
    assert write(path, recs) == 2500
    back = list(records.read_records(path, "program"))
    assert back == recs
    assert safe_codec.from_jsonable(back[0]["outputs"][0]) == {1: "é"}
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp files left behind
    if suffix == ".arrayrecord":
        assert records.count_arrayrecord(path) == 2500


def test_empty_arrayrecord_file_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "e.arrayrecord"
    assert records.write_arrayrecord(path, []) == 0
    assert list(records.read_arrayrecord(path)) == []


def test_failed_write_leaves_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    records.write_jsonl(path, [QUESTION])

    def boom():
        yield QUESTION
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        records.write_jsonl(path, boom())
    assert list(records.read_jsonl(path)) == [QUESTION]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.jsonl"]
    with pytest.raises(RuntimeError):
        records.write_arrayrecord(tmp_path / "q.arrayrecord", boom())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.jsonl"]


def test_malformed_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    bad_q = dict(QUESTION, messages=[{"role": "user"}])
    lines = [records.encode_record(QUESTION).decode(), "{broken", "[1, 2]", records.encode_record({"id": "x"}).decode(),
             records.encode_record(bad_q).decode(), "", records.encode_record(dict(QUESTION, id="q2")).decode()]
    path.write_text("\n".join(lines) + "\n")
    errors = records.ReadErrors()
    got = list(records.read_jsonl(path, "question", errors))
    assert [q["id"] for q in got] == ["p1-q00", "q2"]
    assert errors == {"bad_json": 2, "missing_field:program_id": 1, "bad_message": 1}


def test_validate_names_the_problem() -> None:
    assert records.validate(PROGRAM, "program") == []
    assert records.validate(QUESTION, "question") == []
    assert records.validate(dict(PROGRAM, level=True), "program") == ["bad_type:level"]
    assert records.validate(dict(PROGRAM, outputs=[]), "program") == ["inputs_outputs_mismatch"]
    assert records.validate({k: v for k, v in PROGRAM.items() if k != "seed"}, "program") == ["missing_field:seed"]
    assert records.validate([1], "question") == ["not_an_object:list"]


def test_write_json_is_atomic_and_readable(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "manifest.json"
    records.write_json(path, {"a": [1, 2], "b": "é"})
    records.write_json(path, {"a": 3})
    assert records.read_json(path) == {"a": 3}
    assert [p.name for p in path.parent.iterdir()] == ["manifest.json"]
