"""Run-directory paths on any filesystem Orbax accepts (local, `gs://`, `s3://`, ...).

`pathlib.Path("gs://bucket/run")` silently becomes the *local* directory `gs:/bucket/run`, so on a
multi-host launch every host would write its own partial checkpoint. Everything that writes a run
directory (trainers, metrics, samples, checkpoints) goes through `etils.epath` instead, the same
path type Orbax uses. Object stores have no append, so JSONL files are appended locally and
rewritten whole elsewhere (`append_lines`). Imports no jax, so any package may use it.
"""

from __future__ import annotations

import os
from typing import Iterable, Union

from etils import epath

PathLike = Union[str, os.PathLike]


def run_path(path: PathLike) -> epath.Path:
    """`path` as an epath.Path; local paths made absolute (Orbax wants absolute directories),
    URIs (`gs://bucket/run`) kept exactly."""
    p = epath.Path(path)
    return p if is_remote(p) else epath.Path(os.path.abspath(os.fspath(p)))


def is_remote(path: PathLike) -> bool:
    """Whether `path` is a URI (`scheme://...`) rather than a local path."""
    return "://" in os.fspath(path)


def append_lines(path: epath.Path, lines: Iterable[str]) -> None:
    """Appends newline-terminated `lines` to a text file (created when missing)."""
    text = "".join(line + "\n" for line in lines)
    if not is_remote(path):
        with open(os.fspath(path), "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
        return
    old = path.read_bytes() if path.exists() else b""
    path.write_bytes(old + text.encode("utf-8"))


def read_text(path: epath.Path) -> str:
    """A text file's contents as UTF-8; bytes that are not UTF-8 read as U+FFFD (a log with a
    stray byte is still read, never a crash)."""
    return path.read_bytes().decode("utf-8", "replace")


def write_text(path: epath.Path, text: str) -> None:
    """Writes `text` as UTF-8 on any filesystem (epath's write_text takes no encoding)."""
    path.write_bytes(text.encode("utf-8"))
