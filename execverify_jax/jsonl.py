"""The one JSONL line reader: bad lines are skipped, counted and reported, never a crash.

Pure Python (no jax, no package imports) so every side may use it: the data records, the eval
benchmarks and responses, the GRPO question files and `execverify score` all read JSONL through
`read_jsonl`. Blank lines are ignored (not counted). A line that is not JSON (or, by default, not a
JSON object) is skipped and counted in `bad` under BAD_JSON / NOT_AN_OBJECT; when the read ends
(or the caller stops early), one warning names the file and the counts. A `.gz` file is
decompressed on the fly. A missing file is an
error at the call, before any line is read. Text is never a reason to lose a line: bytes that are
not UTF-8 decode as U+FFFD and raw control characters (a NUL) inside strings are accepted.
`yield_bad=True` yields a `BadLine(reason)` in place of each skipped line (still counted), for
readers that must answer every input line (`execverify score` writes a row per response line).
"""

from __future__ import annotations

import collections
import gzip
import json
import logging
from pathlib import Path
from typing import IO, Any, Iterator

BAD_JSON = "bad_json"
NOT_AN_OBJECT = "not_an_object"

log = logging.getLogger(__name__)


class BadLine:
    """Stands for a line that was skipped (`reason`: BAD_JSON or NOT_AN_OBJECT)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"BadLine({self.reason!r})"


def read_jsonl(path: str | Path, bad: collections.Counter | None = None, *,
               objects_only: bool = True, yield_bad: bool = False) -> Iterator[tuple[int, Any]]:
    """(1-based line number, parsed value) for every usable line of a JSONL file.

    `bad` (optional) receives the skip counts by reason; `objects_only=False` also yields JSON
    values that are not objects. Opening happens here, so a missing file raises OSError at once.
    """
    # A `.gz` path is read through gzip (HumanEval ships as HumanEval.jsonl.gz).
    f = gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")
    return _lines(f, Path(path), bad if bad is not None else collections.Counter(), objects_only, yield_bad)


def _lines(f: IO[bytes], path: Path, bad: collections.Counter, objects_only: bool,
           yield_bad: bool) -> Iterator[tuple[int, Any]]:
    start = {k: bad[k] for k in (BAD_JSON, NOT_AN_OBJECT)}
    try:
        with f:
            for n, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    obj = json.loads(raw.decode("utf-8", "replace"), strict=False)
                except (ValueError, RecursionError):
                    bad[BAD_JSON] += 1
                    if yield_bad:
                        yield n, BadLine(BAD_JSON)
                    continue
                if objects_only and not isinstance(obj, dict):
                    bad[NOT_AN_OBJECT] += 1
                    if yield_bad:
                        yield n, BadLine(NOT_AN_OBJECT)
                    continue
                yield n, obj
    finally:
        new = {k: bad[k] - v for k, v in start.items() if bad[k] > v}
        if new:
            detail = ", ".join(f"{k}: {v}" for k, v in new.items())
            log.warning("%s: skipped %d bad JSONL line(s) (%s)", path, sum(new.values()), detail)
