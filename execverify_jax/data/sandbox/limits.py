"""Sandbox value types shared by the parent and the worker: `Status`, `Limits`, `Outcome`.

Kept import-light (stdlib + safe_codec) because the worker imports it before forking jobs.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass
from typing import Any

from execverify_jax.data import safe_codec


class Status(str, enum.Enum):
    """How a sandboxed job ended. Never an exception: every job gets exactly one of these."""

    OK = "ok"  # the target returned; `value`/`value_repr` hold its result
    ERROR = "error"  # the target (i.e. the untrusted code) raised; `error_type`/`error` say what
    TIMEOUT = "timeout"  # wall-clock or CPU-time limit hit; the whole job was killed
    MEMORY = "memory"  # MemoryError under the address-space limit
    KILLED = "killed"  # died without a result: signal, os._exit, dead worker, forged result...
    OUTPUT_OVERFLOW = "output_overflow"  # stdout or stderr exceeded `Limits.output_bytes`

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Limits:
    """Per-job resource limits. Every field is checked; a bad value raises ValueError naming it.

    timeout_s:    wall-clock limit, enforced by the worker (killpg SIGKILL of the job).
    cpu_s:        RLIMIT_CPU in seconds (None: ceil(timeout_s)); catches busy threads too.
    memory_mb:    RLIMIT_AS of the job (address space, not RSS; includes the worker's ~40 MB).
    nproc:        RLIMIT_NPROC (processes+threads of the job's uid; effective with the uid drop).
    nofile:       RLIMIT_NOFILE.
    fsize_mb:     RLIMIT_FSIZE: the largest file the job may write.
    output_bytes: cap per stream on captured stdout/stderr; exceeding it -> output_overflow.
    result_bytes: cap on the encoded result sent back by the job (a larger one -> killed).
    """

    timeout_s: float = 5.0
    cpu_s: float | None = None
    memory_mb: int = 1024
    nproc: int = 32
    nofile: int = 64
    fsize_mb: int = 16
    output_bytes: int = 64 * 1024
    result_bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "cpu_s" and v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"Limits.{f.name} must be a positive finite number, got {v!r}")
        if self.nofile < 8:
            raise ValueError(f"Limits.nofile must be >= 8 (the job needs its std streams), got {self.nofile!r}")

    @property
    def cpu_seconds(self) -> int:
        """The RLIMIT_CPU soft limit actually applied (whole seconds, at least 1)."""
        return max(1, math.ceil(self.cpu_s if self.cpu_s is not None else self.timeout_s))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for the worker protocol and for logging)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Limits":
        """Inverse of `to_dict`; unknown keys are an error naming the key."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown Limits key(s): {unknown}")
        return cls(**data)


@dataclass(frozen=True)
class Outcome:
    """The result of one sandboxed job (see docs/SANDBOX.md for every status).

    `value` is the target's return value decoded with `safe_codec` (literals stay literals,
    anything else is an `Opaque`), only when `status` is ok. `value_repr` is the repr computed in
    the child (capped). `stdout`/`stderr` are the captured streams (capped, UTF-8 with
    replacement). `error_type`/`error` describe an error, a timeout or a kill.
    """

    status: Status
    value: Any = None
    value_repr: str | None = None
    stdout: str = ""
    stderr: str = ""
    error_type: str | None = None
    error: str | None = None
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the job returned a value."""
        return self.status is Status.OK

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict; `value` goes through `safe_codec.to_jsonable`."""
        return {
            "status": self.status.value,
            "value": safe_codec.to_jsonable(self.value),
            "value_repr": self.value_repr,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "error_type": self.error_type,
            "error": self.error,
            "duration_s": self.duration_s,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Outcome":
        """Inverse of `to_dict` (the value is decoded with safe_codec)."""
        return cls(
            status=Status(data["status"]),
            value=safe_codec.from_jsonable(data.get("value")),
            value_repr=data.get("value_repr"),
            stdout=data.get("stdout", ""),
            stderr=data.get("stderr", ""),
            error_type=data.get("error_type"),
            error=data.get("error"),
            duration_s=float(data.get("duration_s", 0.0)),
        )
