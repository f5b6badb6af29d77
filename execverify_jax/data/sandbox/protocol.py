"""Length-prefixed JSON frames on raw pipe fds: the parent <-> worker protocol.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON. Plain JSON only,
never pickle. Frames from the worker are still size-capped and shape-checked by the parent.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time
from typing import Any

HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024


class ProtocolError(RuntimeError):
    """The peer closed the pipe, timed out, or sent something that is not a valid frame."""


def write_frame(fd: int, obj: Any) -> None:
    """Writes one frame (blocking until fully written)."""
    data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    buf = memoryview(HEADER.pack(len(data)) + data)
    while buf:
        n = os.write(fd, buf)
        buf = buf[n:]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks = []
    while n > 0:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise ProtocolError("timed out waiting for the peer")
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise ProtocolError("peer closed the pipe")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, deadline: float | None = None, max_bytes: int = MAX_FRAME) -> Any:
    """Reads one frame; `deadline` is a time.monotonic() value (None: wait forever)."""
    (length,) = HEADER.unpack(_read_exact(fd, HEADER.size, deadline))
    if length > max_bytes:
        raise ProtocolError(f"frame of {length} bytes exceeds the cap of {max_bytes}")
    data = _read_exact(fd, length, deadline)
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"invalid frame: {exc}") from None
