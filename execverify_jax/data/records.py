"""Dataset record I/O: ArrayRecord and JSONL writers/readers, record validation, atomic JSON files.

Every record is one JSON object (UTF-8 bytes in ArrayRecord, one line in JSONL). Writers always
write to a temporary name in the same directory and `os.replace` it into place, so a file that
exists under its final name is complete: this is what makes interrupted runs restartable.
Readers never stop on bad data: a record that does not decode or lacks required fields is
skipped and counted in a `ReadErrors` counter that the caller reports.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from execverify_jax import jsonl

# Required fields and their JSON types, per record kind (docs/ARCHITECTURE.md "Records").
PROGRAM_FIELDS: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "code": (str,),
    "entry": (str,),
    "inputs": (list,),
    "outputs": (list,),
    "level": (int,),
    "group": (str,),
    "method": (str,),
    "constraint": (dict, str, type(None)),
    "seed": (int,),
}
QUESTION_FIELDS: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "program_id": (str,),
    "kind": (str,),
    "messages": (list,),
    "answer": (dict,),
}
FIELDS = {"program": PROGRAM_FIELDS, "question": QUESTION_FIELDS}

# ArrayRecord option: one record per chunk group gives cheap random access (grain reads by index).
ARRAY_RECORD_OPTIONS = "group_size:1"


class ReadErrors(collections.Counter):
    """Counts of skipped records by reason (e.g. 'bad_json', 'missing_field:id')."""


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX_DEPTH = 100  # deeper than this, the fallback writes a value's repr (cycles end here too)
_REPR_CAP = 10_000


def json_text(obj: Any, indent: int | None = None) -> str:
    """JSON for any writer (records, scores, samples, metrics): never raises, always UTF-8-safe.

    The text keeps non-ASCII characters as they are. What plain `json.dumps` cannot write is
    escaped or replaced instead of raising halfway through a file:
    - lone surrogates (a response holding "\\udc80", valid JSON in, or bytes decoded with
      surrogateescape) are written as \\uXXXX escapes: valid JSON and valid UTF-8, and a
      reader's `json.loads` gives back exactly the same string (`ensure_ascii=False` would leave
      them raw, and encoding the line to UTF-8 raises UnicodeEncodeError: the crash this fixes);
    - NUL and other control characters are escaped by json itself;
    - values json does not know (bytes, NumPy scalars, sets, objects, non-string keys, cycles,
      nesting deeper than 100) are converted by `jsonable`: bytes decode as UTF-8 with
      replacement, NumPy scalars become numbers, anything else its (capped) repr.
    """
    seps = (",", ": ") if indent is not None else (",", ":")
    try:
        text = json.dumps(obj, ensure_ascii=False, separators=seps, indent=indent)
    except (TypeError, ValueError, RecursionError):
        text = json.dumps(jsonable(obj), ensure_ascii=False, separators=seps, indent=indent)
    if not text.isascii() and _LONE_SURROGATE.search(text):
        # A surrogate code point can only sit inside a JSON string here: its escape is valid.
        text = _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text


def jsonable(obj: Any, depth: int = 0) -> Any:
    """`obj` made of dicts with str keys, lists, str, int, float, bool and None only."""
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    if depth >= _MAX_DEPTH:
        return _safe_repr(obj)
    if isinstance(obj, dict):
        return {k if isinstance(k, str) else _key(k): jsonable(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v, depth + 1) for v in obj]
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).decode("utf-8", "replace")
    item = getattr(obj, "item", None)  # NumPy/JAX scalars, without importing either
    if callable(item) and getattr(obj, "shape", None) == ():
        try:
            value = item()
        except Exception:  # noqa: BLE001 - fall through to the repr
            value = None
        if isinstance(value, (str, bool, int, float)):
            return value
    return _safe_repr(obj)


def _key(key: Any) -> str:
    if isinstance(key, (bytes, bytearray)):
        return bytes(key).decode("utf-8", "replace")
    return json.dumps(key) if key is None or isinstance(key, (bool, int, float)) else _safe_repr(key)


def _safe_repr(obj: Any) -> str:
    try:
        text = repr(obj)
    except Exception as exc:  # noqa: BLE001 - a hostile __repr__ must not stop a writer
        text = f"<unrepresentable {type(obj).__name__}: {type(exc).__name__}>"
    return text if isinstance(text, str) and len(text) <= _REPR_CAP else str(text)[:_REPR_CAP] + "...<truncated>"


def json_line(obj: Any) -> str:
    """One JSONL line (with its newline) for `obj`; see `json_text`."""
    return json_text(obj) + "\n"


def encode_record(record: dict) -> bytes:
    """One record as compact UTF-8 JSON bytes (the ArrayRecord payload); never raises."""
    return json_text(record).encode("utf-8")


def decode_record(data: bytes | str) -> dict:
    """Inverse of `encode_record`; raises ValueError for anything that is not a JSON object.

    Bytes that are not valid UTF-8 (a file edited by hand, a foreign tool) are decoded with
    U+FFFD replacements instead of costing the whole record."""
    if isinstance(data, (bytes, bytearray)):
        data = bytes(data).decode("utf-8", "replace")
    obj = json.loads(data)
    if not isinstance(obj, dict):
        raise ValueError(f"record is a {type(obj).__name__}, not an object")
    return obj


def validate(record: Any, kind: str) -> list[str]:
    """Problems with `record` as a `kind` ('program' | 'question') record; [] when valid."""
    if not isinstance(record, dict):
        return [f"not_an_object:{type(record).__name__}"]
    problems = []
    for name, types in FIELDS[kind].items():
        if name not in record:
            problems.append(f"missing_field:{name}")
        elif not isinstance(record[name], types) or (int in types and isinstance(record[name], bool)):
            problems.append(f"bad_type:{name}")
    if kind == "program" and not problems and len(record["inputs"]) != len(record["outputs"]):
        problems.append("inputs_outputs_mismatch")
    if kind == "question" and not problems:
        for m in record["messages"]:
            if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
                problems.append("bad_message")
                break
    return problems


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp alone would leave 0600


def _tmp_path(path: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, _FILE_MODE)
    os.close(fd)
    return Path(name)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _atomic_target(path: str | Path) -> Iterator[Path]:
    """Yields a temp path beside `path`; on success it replaces `path` (readers see the old file
    or the complete new one) and the directory is fsynced; the temp file never survives."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Writes `data` to `path` so that readers see either the old file or the complete new one."""
    with _atomic_target(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically writes `obj` as indented JSON (manifests, stats, chunk metadata)."""
    atomic_write_bytes(path, (json_text(obj, indent=2) + "\n").encode("utf-8"))


def read_json(path: str | Path) -> Any:
    """Reads a JSON file written by `write_json`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_arrayrecord(path: str | Path, records: Iterable[dict]) -> int:
    """Writes records to an ArrayRecord file atomically; returns the number written."""
    from array_record.python.array_record_module import ArrayRecordWriter

    n = 0
    with _atomic_target(path) as tmp:
        writer = ArrayRecordWriter(str(tmp), ARRAY_RECORD_OPTIONS)
        try:
            for rec in records:
                writer.write(encode_record(rec))
                n += 1
        finally:
            writer.close()
    return n


def count_arrayrecord(path: str | Path) -> int:
    """Number of records in an ArrayRecord file."""
    from array_record.python.array_record_module import ArrayRecordReader

    reader = ArrayRecordReader(str(path))
    try:
        return int(reader.num_records())
    finally:
        reader.close()


def read_arrayrecord(path: str | Path, kind: str | None = None, errors: ReadErrors | None = None,
                     batch: int = 1024) -> Iterator[dict]:
    """Yields the records of an ArrayRecord file, skipping (and counting) malformed ones.

    With `kind` set, records are also validated against that kind's required fields.
    """
    from array_record.python.array_record_module import ArrayRecordReader

    reader = ArrayRecordReader(str(path))
    try:
        total = int(reader.num_records())
        for start in range(0, total, batch):
            for raw in reader.read(start, min(total, start + batch)):
                rec = _decode_checked(raw, kind, errors)
                if rec is not None:
                    yield rec
    finally:
        reader.close()


def write_jsonl(path: str | Path, records: Iterable[dict]) -> int:
    """Writes records as JSON lines atomically; returns the number written (every record: text
    that plain json cannot write is escaped or replaced, see `json_text`)."""
    n = 0
    with _atomic_target(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json_line(rec))
            n += 1
        f.flush()
        os.fsync(f.fileno())
    return n


def read_jsonl(path: str | Path, kind: str | None = None, errors: ReadErrors | None = None) -> Iterator[dict]:
    """Yields the records of a JSONL file, skipping (and counting) malformed lines.

    Lines that are not JSON objects count as 'bad_json' in `errors`; records that fail `kind`'s
    schema count under their first problem (see `validate`)."""
    bad: collections.Counter = collections.Counter()
    lines = jsonl.read_jsonl(path, bad)

    def records() -> Iterator[dict]:
        try:
            for _, rec in lines:
                problems = validate(rec, kind) if kind is not None else []
                if problems:
                    if errors is not None:
                        errors[problems[0]] += 1
                    continue
                yield rec
        finally:  # also when the caller stops early
            if errors is not None and bad:
                errors["bad_json"] += sum(bad.values())

    return records()


def read_records(path: str | Path, kind: str | None = None, errors: ReadErrors | None = None) -> Iterator[dict]:
    """Reads a `.jsonl` or ArrayRecord file by its suffix."""
    if str(path).endswith(".jsonl"):
        return read_jsonl(path, kind, errors)
    return read_arrayrecord(path, kind, errors)


def _decode_checked(raw: bytes, kind: str | None, errors: ReadErrors | None) -> dict | None:
    try:
        rec = decode_record(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        if errors is not None:
            errors["bad_json"] += 1
        return None
    if kind is not None:
        problems = validate(rec, kind)
        if problems:
            if errors is not None:
                errors[problems[0]] += 1
            return None
    return rec
