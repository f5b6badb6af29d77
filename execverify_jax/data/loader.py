"""The grain input pipeline: question records -> token ids padded to static length buckets.

    ArrayRecord shards --(MapDataset: index, shuffle(seed), shard by process, repeat)-->
    tokenize (chat template) --> skip prompts longer than the largest bucket (counted) -->
    batch (drop_remainder) padded to the smallest bucket that fits the batch --> numpy dicts

Each batch is a dict of numpy arrays:
  prompt_BP       int32 [B, P]  token ids, padded with the tokenizer's pad id (side: config)
  prompt_len_B    int32 [B]     true prompt lengths
  record_index_B  int64 [B]     index of the question in the data source (look up the answer)
  question_id_B   str   [B]     the question record ids
  num_skipped     int64 []      prompts dropped (too long / malformed) while this batch was assembled
The iterator state's "skipped" entry is the running total, including prompts dropped after the
last full batch of the data (single-process iteration; with workers it is per worker).

P is one of `buckets`, so a jitted consumer compiles at most len(buckets) shapes. With
`group_by_length` (default) a batch holds prompts of one bucket only (one buffer per bucket),
which cuts padding several-fold when short (oi) and long (io_mixed) prompts are mixed.
The iterator is a grain `DatasetIterator`: `get_state()` / `set_state()` resume exactly.

Only this module imports grain (which imports jax); synthesis, tracing and questions never do.
Process sharding takes plain ints (`process_index`, `process_count`), e.g. from
`jax.process_index()` on the training side, so this module never calls jax itself.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from execverify_jax.buckets import bucket_for


class ChatTokenizer(Protocol):
    """What the loader needs from `execverify_jax.data.tokenizer` (picklable, lazily loaded)."""

    pad_id: int

    def apply_chat(self, messages: list[dict]) -> list[int]:
        """Token ids of `messages` with the chat template and the generation prompt applied."""


@dataclass(frozen=True)
class LoaderConfig:
    """Batching, padding, shuffling and worker settings for `build_dataset`."""

    batch_size: int = 8
    buckets: tuple[int, ...] = (256, 512, 1024, 2048)
    pad_side: str = "left"  # left padding keeps every prompt's last token at column P-1 for decoding
    group_by_length: bool = True  # batch prompts of the same bucket together (less padding)
    seed: int = 0
    shuffle: bool = True
    num_epochs: int | None = 1  # None repeats forever
    worker_count: int = 0  # > 0: grain multiprocess prefetch with this many workers
    split: str = "train"

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.buckets or any(b < 1 for b in self.buckets) or list(self.buckets) != sorted(set(self.buckets)):
            raise ValueError(f"buckets must be strictly increasing positive ints, got {self.buckets}")
        if self.pad_side not in ("left", "right"):
            raise ValueError(f"pad_side must be 'left' or 'right', got {self.pad_side!r}")
        if self.num_epochs is not None and self.num_epochs < 1:
            raise ValueError(f"num_epochs must be >= 1 or null, got {self.num_epochs}")
        if self.worker_count < 0:
            raise ValueError(f"worker_count must be >= 0, got {self.worker_count}")


def question_files(data_dir: str | Path, split: str = "train") -> list[str]:
    """The question ArrayRecord files of one split, as listed in `data_dir/manifest.json`."""
    data_dir = Path(data_dir)
    manifest_path = data_dir / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path} not found: run `execverify synth` first")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("status") != "complete":
        raise ValueError(f"{data_dir} is not a complete dataset (status {manifest.get('status')!r}); "
                         "re-run `execverify synth` with the same arguments to finish it")
    try:
        files = manifest["files"]["arrayrecord"]["questions"][split]
    except KeyError:
        raise ValueError(f"{manifest_path} lists no ArrayRecord question files for split {split!r}") from None
    return [str(data_dir / f) for f in files]


def mark_absl_flags_parsed() -> None:
    """grain's multiprocess iteration reads absl flags (google/grain#1355); parse them once."""
    try:
        from absl import flags
    except ImportError:
        return
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def _decode_with_index(n: int):
    def fn(index: int, raw: Any) -> dict:
        if isinstance(raw, (bytes, bytearray, str)):
            try:
                rec = json.loads(raw)
            except ValueError:
                rec = None
        else:
            rec = raw  # in-memory sources (tests) hold dicts
        return {"index": index % n, "record": rec}

    return fn


_WARM_LOCK = threading.Lock()


class _Tokenize:
    """Applies the chat template; malformed records become `ids=None` (skipped and counted).

    grain maps in a thread pool (in every worker process), and lazily loaded tokenizers import
    their backend on first use, which is not thread-safe (transformers raised ImportError from
    concurrent first calls). So the first call in each process runs under a lock.
    """

    def __init__(self, tokenizer: ChatTokenizer) -> None:
        self.tokenizer = tokenizer
        self._ready = False

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_ready"] = False  # a new process must warm up again
        return state

    def _warm_up(self) -> None:
        with _WARM_LOCK:
            if not self._ready:
                self.tokenizer.apply_chat([{"role": "user", "content": "x"}])
                self._ready = True

    def __call__(self, item: dict) -> dict:
        if not self._ready:
            self._warm_up()
        rec = item["record"]
        ids = None
        qid = ""
        if isinstance(rec, dict) and isinstance(rec.get("messages"), list):
            qid = str(rec.get("id", ""))
            try:
                ids = np.asarray(self.tokenizer.apply_chat(rec["messages"]), dtype=np.int32)
            except (TypeError, ValueError, KeyError):
                ids = None
        return {"index": item["index"], "id": qid, "ids": ids}


def _pad_batch(items: Sequence[dict], buckets: tuple[int, ...], pad_id: int, pad_side: str,
               skipped: int) -> dict:
    longest = max(len(it["ids"]) for it in items)
    P = bucket_for(longest, buckets)
    B = len(items)
    prompt_BP = np.full((B, P), pad_id, dtype=np.int32)
    prompt_len_B = np.zeros((B,), dtype=np.int32)
    for b, it in enumerate(items):
        ids = it["ids"]
        if pad_side == "right":
            prompt_BP[b, : len(ids)] = ids
        else:
            prompt_BP[b, P - len(ids):] = ids
        prompt_len_B[b] = len(ids)
    return {
        "prompt_BP": prompt_BP,
        "prompt_len_B": prompt_len_B,
        "record_index_B": np.asarray([it["index"] for it in items], dtype=np.int64),
        "question_id_B": np.asarray([it["id"] for it in items], dtype=np.str_),
        "num_skipped": np.int64(skipped),
    }


def _bucket_batch_dataset(parent, batch_size: int, buckets: tuple[int, ...], pad_id: int, pad_side: str,
                          group_by_length: bool):
    """An IterDataset that drops over-long/malformed items (counting them) and pads batches.

    With `group_by_length`, items wait in one buffer per bucket and a batch is emitted as soon
    as a bucket holds `batch_size` items, so short prompts are not padded to a long neighbour's
    bucket. The buffered items are part of the iterator state (JSON-able), so resume is exact.
    At the end of the data, partially filled buffers are dropped (drop_remainder).
    """
    import grain

    class _Iterator(grain.DatasetIterator):
        def __init__(self, parent_it) -> None:
            super().__init__(parent_it)
            self._skipped = 0  # cumulative, also counts skips after the last full batch
            self._buffers: list[list[dict]] = [[] for _ in buckets]

        def __next__(self) -> dict:
            items: list[dict] = []
            skipped = 0
            while True:
                try:
                    item = next(self._parent)
                except StopIteration:  # end of data: partial batches are dropped (drop_remainder)
                    self._skipped += skipped
                    raise
                ids = item["ids"]
                if ids is None or len(ids) == 0 or len(ids) > buckets[-1]:
                    skipped += 1
                    continue
                if not group_by_length:
                    items.append(item)
                    if len(items) == batch_size:
                        break
                    continue
                buf = self._buffers[buckets.index(bucket_for(len(ids), buckets))]
                buf.append(item)
                if len(buf) == batch_size:
                    items = list(buf)
                    buf.clear()
                    break
            self._skipped += skipped
            return _pad_batch(items, buckets, pad_id, pad_side, skipped)

        def get_state(self) -> dict[str, Any]:
            return {"parent": self._parent.get_state(), "skipped": self._skipped,
                    "buffers": [[{"index": int(it["index"]), "id": it["id"], "ids": [int(t) for t in it["ids"]]}
                                 for it in buf] for buf in self._buffers]}

        def set_state(self, state: dict[str, Any]) -> None:
            self._parent.set_state(state["parent"])
            self._skipped = int(state["skipped"])
            self._buffers = [[{"index": it["index"], "id": it["id"], "ids": np.asarray(it["ids"], dtype=np.int32)}
                              for it in buf] for buf in state.get("buffers", [[] for _ in buckets])]

    class _Dataset(grain.IterDataset):
        def __init__(self, parent_ds) -> None:
            super().__init__(parent_ds)

        def __iter__(self):
            return _Iterator(self._parent.__iter__())

    return _Dataset(parent)


def build_dataset(source: Sequence[Any] | Sequence[str], tokenizer: ChatTokenizer, cfg: LoaderConfig, *,
                  process_index: int = 0, process_count: int = 1):
    """The grain IterDataset of padded batches (see the module docstring).

    `source` is a list of ArrayRecord question files (from `question_files`) or any random-access
    sequence of records (bytes or dicts; used by tests). Each process gets a disjoint
    1/process_count of every epoch's shuffled order.
    """
    import grain

    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} out of range for process_count {process_count}")
    if source and all(isinstance(p, (str, Path)) for p in source):
        missing = [str(p) for p in source if not Path(p).is_file()]
        if missing:
            raise FileNotFoundError(f"question files not found: {missing[:3]}")
        data_source = grain.sources.ArrayRecordDataSource([str(p) for p in source])
    else:
        data_source = source
    n = len(data_source)
    if n == 0:
        raise ValueError("the question source is empty")
    ds = grain.MapDataset.source(data_source).map_with_index(_decode_with_index(n))
    if cfg.shuffle:
        ds = ds.shuffle(seed=cfg.seed)
    ds = ds[process_index::process_count]
    if cfg.num_epochs != 1:
        ds = ds.repeat(cfg.num_epochs)
    ds = ds.map(_Tokenize(tokenizer))
    it_ds = ds.to_iter_dataset()
    pad_id = int(getattr(tokenizer, "pad_id"))
    it_ds = _bucket_batch_dataset(it_ds, cfg.batch_size, tuple(cfg.buckets), pad_id, cfg.pad_side,
                                  cfg.group_by_length)
    if cfg.worker_count > 0:
        mark_absl_flags_parsed()
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=cfg.worker_count))
    return it_ds


def make_loader(data_dir: str | Path, tokenizer: ChatTokenizer, cfg: LoaderConfig, *,
                process_index: int = 0, process_count: int = 1):
    """An iterator of batches over `data_dir`'s `cfg.split` questions, with get_state/set_state."""
    files = question_files(data_dir, cfg.split)
    return iter(build_dataset(files, tokenizer, cfg, process_index=process_index, process_count=process_count))


class QuestionStore:
    """Random access to question records by the loader's `record_index_B` (readers kept open).

    `QuestionStore(data_dir, split)` or `QuestionStore(files)`; `store[i]` or `store.get(indices)`.
    Needs only array_record (no grain), so the reward side can use it too.
    """

    def __init__(self, data_dir_or_files: str | Path | Sequence[str], split: str = "train") -> None:
        from array_record.python.array_record_module import ArrayRecordReader

        if isinstance(data_dir_or_files, (str, Path)):
            self.files = question_files(data_dir_or_files, split)
        else:
            self.files = [str(f) for f in data_dir_or_files]
        self._readers = [ArrayRecordReader(f) for f in self.files]
        self._offsets = np.cumsum([0] + [int(r.num_records()) for r in self._readers])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"record index {index} out of range (0..{len(self) - 1})")
        f = int(np.searchsorted(self._offsets, index, side="right") - 1)
        return json.loads(self._readers[f].read([index - int(self._offsets[f])])[0])

    def get(self, indices: Sequence[int]) -> list[dict]:
        """The records at `indices`, in order."""
        return [self[i] for i in indices]

    def close(self) -> None:
        for r in self._readers:
            r.close()
        self._readers = []

    def __enter__(self) -> "QuestionStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def lookup_questions(data_dir_or_files: str | Path | Sequence[str], indices: Sequence[int],
                     split: str = "train") -> list[dict]:
    """The question records at `indices` (e.g. a batch's `record_index_B`), for rewards."""
    with QuestionStore(data_dir_or_files, split) as store:
        return store.get(indices)
