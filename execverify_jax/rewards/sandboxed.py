"""Sandbox targets of the rewards (trusted code that runs *inside* a sandbox child).

`run_ground_truth_many` runs the ground-truth program of input-prediction questions on the
model's literal arguments (one forked process per call) and returns the values. `run_tests` runs a code-generation solution on test
inputs (call-based or stdin/stdout) and returns, per test, what it produced. Neither ever sees an
expected output: the parent compares. So whatever the untrusted code does to this process
(patching builtins, forging results on fd 3, exiting early), the only way to make an output match
is to compute it.

Import-light on purpose: sandbox workers import this module once before forking jobs, which also
pre-imports the modules of the APPS prelude so each job does not pay for them.
"""

from __future__ import annotations

import builtins
import io
import os
import select
import signal
import sys
import threading
import time
import types
from typing import Any

# Pre-imported for the APPS prelude (forked jobs inherit the module cache).
import bisect  # noqa: F401
import collections  # noqa: F401
import copy  # noqa: F401
import datetime  # noqa: F401
import functools  # noqa: F401
import heapq  # noqa: F401
import itertools  # noqa: F401
import json  # noqa: F401
import math  # noqa: F401
import operator  # noqa: F401
import random  # noqa: F401
import re  # noqa: F401
import statistics  # noqa: F401
import string  # noqa: F401
import typing  # noqa: F401

from execverify_jax.data import safe_codec
from execverify_jax.rewards import parse
from execverify_jax.rewards.config import RewardConfig

GROUND_TRUTH_MANY_TARGET = "execverify_jax.rewards.sandboxed:run_ground_truth_many"
TESTS_TARGET = "execverify_jax.rewards.sandboxed:run_tests"

_PARSE_CFG = RewardConfig()
# Own references: a solution may rebind signal.signal/setitimer to disable its alarm.
_signal, _setitimer, _SIGALRM, _ITIMER_REAL = signal.signal, signal.setitimer, signal.SIGALRM, signal.ITIMER_REAL
_BUILTINS_SNAPSHOT = dict(builtins.__dict__)
_RECURSION_LIMIT = sys.getrecursionlimit()
_COMPILED: dict[str, Any] = {}  # per job process (each job is a fresh fork of the worker)


class _TestTimeout(BaseException):
    """Raised by SIGALRM inside a test; BaseException so `except Exception` in a solution misses it."""


class _OutputCap(BaseException):
    """Raised when a test writes more than the output cap."""


class _NullWriter(io.TextIOBase):
    """A stdout that discards everything (ground-truth prints are irrelevant to the value)."""

    def write(self, s: str) -> int:
        return len(s)


class _CappedBytes(io.BytesIO):
    def __init__(self, cap: int) -> None:
        super().__init__()
        self._cap = cap

    def write(self, b: Any) -> int:  # noqa: D401 - io interface
        if self.tell() + len(b) > self._cap:
            raise _OutputCap()
        return super().write(b)


def run_ground_truth_many(payload: dict) -> dict:
    """Ground-truth calls of input-prediction answers; returns {"results": [[status, data]]}.

    Payload: {prelude, timeout_s, fork, calls: [{code, entry, args: [src], kwargs: [[name, src]]}]}.
    Every call executes its program afresh in a new module, from pristine builtins, with its own
    `timeout_s`. With `fork`, each call also runs in its own forked process (no shared memory or
    module state at all; a hard hang or crash costs only that call); without it, calls run in
    this process under SIGALRM (~100x cheaper; they share imported stdlib modules). status: ok
    (data: `safe_codec.dumps` of the value) | error (data: exception type) | timeout | memory |
    killed. Prints are discarded: only the returned value is graded.
    """
    prelude = payload.get("prelude") or ""
    timeout_s = float(payload["timeout_s"])
    run = _forked if payload.get("fork") else _in_process
    return {"results": [run(lambda c=call: _one_ground_truth_call(prelude, c), timeout_s)
                        for call in payload["calls"]]}


def _one_ground_truth_call(prelude: str, call: dict) -> str:
    args = [parse.literal_value(a, _PARSE_CFG) for a in call["args"]]
    kwargs = {k: parse.literal_value(v, _PARSE_CFG) for k, v in call["kwargs"]}
    source = prelude + "\n" + call["code"]
    code = _COMPILED.get(source)
    if code is None:  # a GRPO group runs one program many times: compile it once per job
        code = _COMPILED[source] = compile(source, "<program>", "exec")
    ns = _fresh_module("__program__")
    exec(code, ns)
    return safe_codec.dumps(ns[call["entry"]](*args, **kwargs))



def _in_process(fn: Any, timeout_s: float) -> list:
    """Runs `fn()` here under an alarm, from pristine builtins/recursion limit, prints discarded.

    Cheap (microseconds) but calls share this process's imported modules; `_forked` is the
    fully isolated alternative (option `oi_fork_per_call`).
    """
    _restore_builtins()
    sys.setrecursionlimit(_RECURSION_LIMIT)
    saved = sys.stdout
    sys.stdout = _NullWriter()  # prints are irrelevant to the value (and must not flood the job)
    try:
        _arm(timeout_s)
        try:
            return ["ok", fn()]
        finally:
            _disarm()
    except BaseException as exc:  # noqa: BLE001 - per-call verdict, keep going
        return _failure(exc)
    finally:
        sys.stdout = saved


_RESULT_CAP = 16 * 1024 * 1024


def _forked(fn: Any, timeout_s: float) -> list:
    """Runs `fn()` (returning a str) in a forked child; [status, data] from its pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the per-call process: run, report, _exit (never return into the job)
        try:
            os.close(r)
            sys.stdout = _NullWriter()
            try:
                row = ["ok", fn()]
            except BaseException as exc:  # noqa: BLE001 - every failure is a verdict
                row = _failure(exc)
            data = json.dumps(row, ensure_ascii=False).encode("utf-8", "replace")
            view = memoryview(data)
            while view:
                view = view[os.write(w, view):]
        finally:
            os._exit(0)
    os.close(w)
    deadline = time.monotonic() + timeout_s
    chunks, size, status = [], 0, None
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                status = "timeout"
                break
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            size += len(chunk)
            if size > _RESULT_CAP:
                status = "output_overflow"
                break
            chunks.append(chunk)
    finally:
        if status is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.waitpid(pid, 0)
        os.close(r)
    if status is not None:
        return [status, ""]
    try:
        row = json.loads(b"".join(chunks))
    except ValueError:
        return ["killed", ""]  # died (os._exit, signal) before reporting
    return row if isinstance(row, list) and len(row) == 2 else ["killed", ""]


def _fresh_module(name: str) -> dict[str, Any]:
    # A real module registered in sys.modules, so dataclasses/typing in the code work.
    module = types.ModuleType(name)
    module.__dict__["__builtins__"] = builtins
    sys.modules[name] = module
    return module.__dict__


def _restore_builtins() -> None:
    # A solution may replace builtins.print/input/...; each test starts from the pristine set.
    d = builtins.__dict__
    for k in [k for k in d if k not in _BUILTINS_SNAPSHOT]:
        del d[k]
    d.update(_BUILTINS_SNAPSHOT)


def _on_alarm(signum: int, frame: Any) -> None:
    raise _TestTimeout()


def _arm(seconds: float) -> None:
    _signal(_SIGALRM, _on_alarm)
    _setitimer(_ITIMER_REAL, seconds)


def _disarm() -> None:
    _setitimer(_ITIMER_REAL, 0)


def _failure(exc: BaseException) -> list:
    if isinstance(exc, _TestTimeout):
        return ["timeout", ""]
    if isinstance(exc, _OutputCap):
        return ["output_overflow", ""]
    if isinstance(exc, MemoryError):
        return ["memory", ""]
    return ["error", type(exc).__name__[:100]]


def run_tests(payload: dict) -> dict:
    """Runs a solution on every test input; returns {"results": [[status, output], ...]}.

    Payload: {code, prelude, fn_name (None: stdin/stdout), inputs, timeout_s, max_output_chars}.
    status is ok | error | timeout | output_overflow. For call-based tests the output is the
    `safe_codec.dumps` text of the return value (encoded at once, so later tests cannot mutate
    it); for stdin tests it is the captured stdout text.
    """
    code = payload["code"]
    prelude = payload.get("prelude") or ""
    timeout_s = float(payload["timeout_s"])
    cap = int(payload["max_output_chars"])
    inputs = payload["inputs"]
    if payload.get("fn_name"):
        return {"results": _run_call_based(code, prelude, payload["fn_name"], inputs, timeout_s, cap)}
    return {"results": _run_stdio(code, prelude, inputs, timeout_s, cap)}


def _run_call_based(code: str, prelude: str, fn_name: str, inputs: list, timeout_s: float,
                    cap: int) -> list:
    ns = _fresh_module("__solution__")  # `if __name__ == "__main__"` blocks stay off
    saved_in, saved_out = sys.stdin, sys.stdout
    try:
        _arm(timeout_s)
        try:
            exec(compile(prelude + "\n" + code, "<solution>", "exec"), ns)
            fn = ns.get(fn_name)
            if fn is None and isinstance(ns.get("Solution"), type):
                fn = getattr(ns["Solution"](), fn_name)  # LeetCode-style class
            if not callable(fn):
                raise NameError(f"no function {fn_name!r}")
        finally:
            _disarm()
    except BaseException as exc:  # noqa: BLE001 - the solution failed to load: every test fails
        return [_failure(exc) for _ in inputs]
    results = []
    for inp in inputs:
        args = inp if isinstance(inp, list) else [inp]
        _restore_builtins()
        sys.stdin, sys.stdout = io.TextIOWrapper(io.BytesIO(b"")), io.TextIOWrapper(_CappedBytes(cap))
        try:
            _arm(timeout_s)
            try:
                out = fn(*args)
                text = safe_codec.dumps(out)  # under the alarm: a hostile __repr__ may hang
            finally:
                _disarm()
            results.append(["ok", text] if len(text) <= cap else ["output_overflow", ""])
        except BaseException as exc:  # noqa: BLE001 - per-test verdict, keep going
            results.append(_failure(exc))
        finally:
            sys.stdin, sys.stdout = saved_in, saved_out
    return results


def _run_stdio(code: str, prelude: str, inputs: list, timeout_s: float, cap: int) -> list:
    saved_in, saved_out = sys.stdin, sys.stdout
    try:
        compiled = compile(prelude + "\n" + code, "<solution>", "exec")
    except BaseException as exc:  # noqa: BLE001 - syntax error: every test fails
        return [_failure(exc) for _ in inputs]
    results = []
    for inp in inputs:
        text_in = inp if isinstance(inp, str) else "\n".join(map(str, inp)) if isinstance(inp, list) else str(inp)
        _restore_builtins()
        buf = _CappedBytes(cap)
        out = io.TextIOWrapper(buf, encoding="utf-8", errors="replace", write_through=True)
        sys.stdin = io.TextIOWrapper(io.BytesIO(text_in.encode("utf-8", "replace")), encoding="utf-8")
        sys.stdout = out
        status = "ok"
        before = set(threading.enumerate())
        try:
            _arm(timeout_s)
            try:
                try:
                    exec(compiled, _fresh_module("__main__"))
                except SystemExit as exc:  # exit()/sys.exit(0) ends the program normally
                    if exc.code not in (None, 0):
                        status = "error"
                # Competitive-programming solutions often run main() in a big-stack thread:
                # its output belongs to this test, so wait for it (still under the alarm).
                for t in threading.enumerate():
                    if t not in before:
                        t.join()
            finally:
                _disarm()
            out.flush()
            results.append([status, buf.getvalue().decode("utf-8", "replace")] if status == "ok"
                           else ["error", "SystemExit"])
        except BaseException as exc:  # noqa: BLE001 - per-test verdict, keep going
            results.append(_failure(exc))
        finally:
            sys.stdin, sys.stdout = saved_in, saved_out
    return results
