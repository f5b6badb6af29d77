"""The top-level pure-Python helpers every side shares: the bucket rule and the JSONL reader."""

import collections
import logging

import pytest

from execverify_jax.buckets import bucket_for
from execverify_jax.jsonl import BAD_JSON, NOT_AN_OBJECT, read_jsonl


def test_bucket_for_smallest_fitting_bucket_any_order():
    assert bucket_for(9, (16, 8)) == 16
    assert bucket_for(8, (16, 8)) == 8
    assert bucket_for(1, (4,)) == 4


def test_bucket_for_over_largest_is_error_unless_given():
    with pytest.raises(ValueError, match="17.*16"):
        bucket_for(17, (8, 16))
    assert bucket_for(17, (8, 16), over=17) == 17


def test_read_jsonl_skips_counts_and_reports_bad_lines(tmp_path, caplog):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n\nnot json\n[1, 2]\n{"a": 2}\n\xff\xfe\n{"a": \n')
    bad = collections.Counter()
    with caplog.at_level(logging.WARNING, logger="execverify_jax.jsonl"):
        rows = list(read_jsonl(path, bad))
    assert rows == [(1, {"a": 1}), (5, {"a": 2})]
    assert bad == {BAD_JSON: 3, NOT_AN_OBJECT: 1}
    assert str(path) in caplog.text and "skipped 4 bad" in caplog.text


def test_read_jsonl_values_and_no_warning_when_clean(tmp_path, caplog):
    path = tmp_path / "x.jsonl"
    path.write_text('[1]\n"s"\n')
    with caplog.at_level(logging.WARNING, logger="execverify_jax.jsonl"):
        assert [v for _, v in read_jsonl(path, objects_only=False)] == [[1], "s"]
    assert caplog.text == ""


def test_read_jsonl_missing_file_fails_at_the_call(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_read_jsonl_reads_gzip_and_skips_bad_lines(tmp_path):
    import gzip

    path = tmp_path / "x.jsonl.gz"
    with gzip.open(path, "wb") as f:
        f.write(b'{"a": 1}\nnot json\n{"a": 2}\n')
    bad = collections.Counter()
    assert [v for _, v in read_jsonl(path, bad)] == [{"a": 1}, {"a": 2}]
    assert bad == {BAD_JSON: 1}


def test_load_humaneval_skips_bad_records_of_a_gzip_file(tmp_path):
    import gzip
    import json

    from execverify_jax.data.dedup import load_humaneval

    path = tmp_path / "he.jsonl.gz"
    good = {"task_id": "HumanEval/0", "prompt": "def f():\n", "canonical_solution": "    return 1\n"}
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(json.dumps(good) + "\n{broken\n" + json.dumps({"task_id": 3}) + "\n")
    progs = load_humaneval(path)
    assert [(p.id, p.code) for p in progs] == [("HumanEval/0", "def f():\n    return 1\n")]
