"""Trusted sandbox targets: small functions that run untrusted program text inside a job.

Each target takes one JSON-able payload dict and returns a value that the sandbox encodes with
safe_codec. They run in the confined child only (never call them in a trusted process on
untrusted input). Programs are executed in a fresh module named `__program__` (registered in
`sys.modules` so dataclasses/typing work), not `__main__`, so `if __name__ == "__main__":`
blocks (test code around a function) do not run; `run_stdio` runs code as `__main__` on purpose.
"""

from __future__ import annotations

import io
import sys
import types
from typing import Any

PROGRAM_MODULE = "__program__"
PROGRAM_FILENAME = "<program>"
REPR_CAP = 100_000
STDIO_OUTPUT_CAP = 4 * 1024 * 1024


class OutputLimitExceeded(Exception):
    """`run_stdio`: the program printed more than its output cap."""


class _CappedStringIO(io.StringIO):
    def __init__(self, cap: int) -> None:
        super().__init__()
        self.cap, self.size = cap, 0

    def write(self, s: str) -> int:
        self.size += len(s)
        if self.size > self.cap:
            raise OutputLimitExceeded(f"the program printed more than {self.cap} characters")
        return super().write(s)


def _repr(value: Any) -> str:
    try:
        return str(repr(value))[:REPR_CAP]
    except Exception as exc:  # noqa: BLE001 - a hostile __repr__
        return f"<repr failed: {type(exc).__name__}>"


def _require_str(payload: dict[str, Any], key: str) -> str:
    v = payload.get(key) if isinstance(payload, dict) else None
    if not isinstance(v, str):
        raise TypeError(f"payload[{key!r}] must be a str")
    return v


def load_program(code: str, name: str = PROGRAM_MODULE) -> dict[str, Any]:
    """Executes `code` in a fresh module and returns its namespace (module-level imports kept)."""
    module = types.ModuleType(name)
    module.__dict__["__builtins__"] = __builtins__
    sys.modules[name] = module
    exec(compile(code, PROGRAM_FILENAME, "exec"), module.__dict__)  # noqa: S102 - we are the sandbox
    return module.__dict__


def run_call(payload: dict[str, Any]) -> Any:
    """`{"code": str, "call": str}` -> the value of the call expression after running the code."""
    namespace = load_program(_require_str(payload, "code"))
    return eval(compile(_require_str(payload, "call"), "<call>", "eval"), namespace)  # noqa: S307


def run_calls(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """`{"code": str, "calls": [str, ...], "fresh": bool = True}` -> one result per call.

    Each result is `{"status": "ok", "value": v, "repr": repr(v)}` or `{"status": "error",
    "error_type": name, "error": message}`. With `fresh` (default) the program is re-executed
    before every call, so calls cannot see each other's mutations of module state. An error in
    the program itself (before any call) raises, failing the whole job.
    """
    code = _require_str(payload, "code")
    calls = payload.get("calls")
    if not isinstance(calls, list) or not all(isinstance(c, str) for c in calls):
        raise TypeError("payload['calls'] must be a list of str")
    fresh = bool(payload.get("fresh", True))
    namespace = load_program(code)
    results = []
    for k, call in enumerate(calls):
        if fresh and k > 0:
            namespace = load_program(code)
        try:
            value = eval(compile(call, "<call>", "eval"), namespace)  # noqa: S307
            results.append({"status": "ok", "value": value, "repr": _repr(value)})
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - per-call errors are data
            results.append({"status": "error", "error_type": type(exc).__name__, "error": str(exc)[:2000]})
    return results


def run_stdio(payload: dict[str, Any]) -> str:
    """`{"code": str, "stdin": str, "max_output": int}` -> what the program printed, as `__main__`.

    For stdin/stdout programs (APPS-style code-generation tests). `SystemExit` with code 0 or
    None counts as a normal end (such programs often call `exit()`); other exits raise.
    """
    code = _require_str(payload, "code")
    stdin = payload.get("stdin", "")
    if not isinstance(stdin, str):
        raise TypeError("payload['stdin'] must be a str")
    out = _CappedStringIO(int(payload.get("max_output", STDIO_OUTPUT_CAP)))
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode("utf-8")), encoding="utf-8")
    old_stdout, sys.stdout = sys.stdout, out
    try:
        try:
            load_program(code, "__main__")
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise
    finally:
        sys.stdout = old_stdout
    return out.getvalue()
