"""The grain loader: bucketing/padding, over-long prompts counted, process sharding, exact resume."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pytest

from execverify_jax.data import loader, records


class CharTokenizer:
    """A stand-in for data/tokenizer.py: one id per character, chat template = role tag + text."""

    pad_id = 0

    def apply_chat(self, messages):
        ids = []
        for m in messages:
            ids.append(1 if m["role"] == "system" else 2)
            ids.extend(3 + (ord(c) % 200) for c in m["content"])
        return ids + [1]


def question(i: int, length: int) -> dict:
    return {"id": f"q{i}", "program_id": f"p{i}", "kind": "oi",
            "messages": [{"role": "user", "content": "x" * length}], "answer": {"layout": "oi", "output": i}}


def lengths(n: int) -> list[int]:
    return [1 + (i * 37) % 60 for i in range(n)]  # prompt lengths 3..62 tokens


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    qs = [question(i, n) for i, n in enumerate(lengths(90))]
    records.write_arrayrecord(tmp_path / "questions-train-00000.arrayrecord", qs[:50])
    records.write_arrayrecord(tmp_path / "questions-train-00001.arrayrecord", qs[50:])
    records.write_arrayrecord(tmp_path / "questions-heldout-00000.arrayrecord", [question(1000, 5)])
    records.write_json(tmp_path / "manifest.json", {"status": "complete", "files": {"arrayrecord": {"questions": {
        "train": ["questions-train-00000.arrayrecord", "questions-train-00001.arrayrecord"],
        "heldout": ["questions-heldout-00000.arrayrecord"]}}}})
    return tmp_path


@pytest.mark.parametrize("grouped", [True, False])
def test_batches_are_padded_to_buckets_and_overlong_prompts_counted(data_dir: Path, grouped: bool) -> None:
    cfg = loader.LoaderConfig(batch_size=4, buckets=(16, 32, 48), pad_side="left", seed=1, group_by_length=grouped)
    it = loader.make_loader(data_dir, CharTokenizer(), cfg)
    batches = list(it)
    true_len = {f"q{i}": n + 2 for i, n in enumerate(lengths(90))}
    overlong = sum(v > 48 for v in true_len.values())
    seen = [q for b in batches for q in b["question_id_B"]]
    assert len(seen) == len(set(seen))
    if grouped:  # each bucket drops its own remainder (< batch_size)
        assert 90 - overlong - 3 * 3 <= len(seen) <= 90 - overlong
        for b in batches:  # one bucket per batch: every prompt needs this P
            P = b["prompt_BP"].shape[1]
            assert all(min(x for x in (16, 32, 48) if x >= n) == P for n in b["prompt_len_B"])
    else:
        assert len(seen) == 4 * ((90 - overlong) // 4)
    assert it.get_state()["skipped"] == overlong  # the running total, tail included
    assert sum(int(b["num_skipped"]) for b in batches) <= overlong
    tok = CharTokenizer()
    for b in batches:
        B, P = b["prompt_BP"].shape
        assert B == 4 and P in (16, 32, 48) and b["prompt_BP"].dtype == np.int32
        assert P == min(x for x in (16, 32, 48) if x >= b["prompt_len_B"].max())
        for row, n, qid, idx in zip(b["prompt_BP"], b["prompt_len_B"], b["question_id_B"], b["record_index_B"]):
            assert n == true_len[str(qid)] and f"q{idx}" == qid  # record index -> the same question
            want = tok.apply_chat(question(int(idx), lengths(90)[idx])["messages"])
            assert list(row[P - n:]) == want and not row[: P - n].any()  # left padding
    # The record indices look the questions up again (for rewards).
    idx = batches[0]["record_index_B"]
    assert [q["id"] for q in loader.lookup_questions(data_dir, idx)] == list(batches[0]["question_id_B"])
    with loader.QuestionStore(data_dir) as store:
        assert len(store) == 90 and store[50]["id"] == "q50" and store[49]["id"] == "q49"
        with pytest.raises(IndexError):
            store[90]


def test_right_padding_and_split_selection(data_dir: Path) -> None:
    cfg = loader.LoaderConfig(batch_size=1, buckets=(8, 16), pad_side="right", split="heldout")
    (b,) = list(loader.make_loader(data_dir, CharTokenizer(), cfg))
    assert b["question_id_B"].tolist() == ["q1000"] and b["prompt_len_B"].tolist() == [7]
    assert b["prompt_BP"].shape == (1, 8) and b["prompt_BP"][0, 7] == 0 and b["prompt_BP"][0, 0] == 2


def test_resume_from_saved_state_yields_exactly_the_rest(data_dir: Path) -> None:
    cfg = loader.LoaderConfig(batch_size=3, buckets=(32, 64), seed=5, num_epochs=2)
    full = list(loader.make_loader(data_dir, CharTokenizer(), cfg))
    it = loader.make_loader(data_dir, CharTokenizer(), cfg)
    for _ in range(7):
        next(it)
    state = it.get_state()
    json.dumps(state)  # checkpointable as JSON
    resumed = loader.make_loader(data_dir, CharTokenizer(), cfg)
    resumed.set_state(state)
    rest = list(resumed)
    assert len(rest) == len(full) - 7
    for a, b in zip(rest, full[7:]):
        assert set(a) == set(b)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    # Two epochs, reshuffled: each epoch visits a record once.
    ids = [q for b in full for q in b["question_id_B"]]
    counts = collections.Counter(ids)
    assert set(counts.values()) <= {1, 2} and len(ids) >= 2 * 90 - 4  # <= 2 leftovers per bucket
    first = [q for k, q in enumerate(ids) if q not in ids[:k]]
    second = [q for k, q in enumerate(ids) if q in ids[:k]]
    assert [q for q in first if q in second] != second  # epoch 2 is shuffled differently


def test_processes_get_disjoint_shards_and_seed_changes_order(data_dir: Path) -> None:
    cfg = loader.LoaderConfig(batch_size=2, buckets=(64,), seed=3)
    files = loader.question_files(data_dir)
    per_proc = [[q for b in loader.build_dataset(files, CharTokenizer(), cfg, process_index=p, process_count=3)
                 for q in b["question_id_B"]] for p in range(3)]
    assert all(len(x) == 30 for x in per_proc)
    assert len(set().union(*map(set, per_proc))) == 90
    other = [q for b in loader.build_dataset(files, CharTokenizer(), loader.LoaderConfig(batch_size=2, buckets=(64,), seed=4))
             for q in b["question_id_B"]]
    mine = [q for b in loader.build_dataset(files, CharTokenizer(), cfg) for q in b["question_id_B"]]
    assert sorted(other) == sorted(mine) and other != mine
    with pytest.raises(ValueError):
        loader.build_dataset(files, CharTokenizer(), cfg, process_index=3, process_count=3)


def test_malformed_records_are_skipped_not_fatal() -> None:
    good = [records.encode_record(question(i, 4)) for i in range(5)]
    source = good[:2] + [b"{oops", records.encode_record({"id": "x"})] + good[2:]
    cfg = loader.LoaderConfig(batch_size=5, buckets=(16,), shuffle=False)
    (b,) = list(loader.build_dataset(source, CharTokenizer(), cfg))
    assert b["question_id_B"].tolist() == [f"q{i}" for i in range(5)] and int(b["num_skipped"]) == 2


def test_incomplete_dataset_is_refused(tmp_path: Path) -> None:
    records.write_json(tmp_path / "manifest.json", {"status": "partial"})
    with pytest.raises(ValueError, match="not a complete dataset"):
        loader.question_files(tmp_path)
    with pytest.raises(ValueError, match="buckets"):
        loader.LoaderConfig(buckets=(32, 16))


def test_multiprocess_workers_resume_exactly(data_dir: Path) -> None:
    cfg = loader.LoaderConfig(batch_size=3, buckets=(32, 64), seed=2, worker_count=2)
    full = [b["record_index_B"].tolist() for b in loader.make_loader(data_dir, CharTokenizer(), cfg)]
    it = loader.make_loader(data_dir, CharTokenizer(), cfg)
    for _ in range(4):
        next(it)
    state = it.get_state()
    resumed = loader.make_loader(data_dir, CharTokenizer(), cfg)
    resumed.set_state(state)
    assert [b["record_index_B"].tolist() for b in resumed] == full[4:]
    assert sorted(sum(full, [])) == sorted(set(sum(full, [])))
