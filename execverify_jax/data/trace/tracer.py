"""The execution tracer: runs one call of a program under `sys.settrace` and records its steps.

This is the ground truth of every white-box question, so it is deliberately strict:
- steps come from `line` events only, folded per *statement* (a multi-line statement is one
  step), with a per-frame occurrence count `k` (see docs/TRACE.md);
- each step's after-state is the frame's locals at the next event *in the same frame* (next line,
  return or exception propagation), so a line that calls a helper still gets its after-state;
- values are snapshotted as `safe_codec` encodings at the moment they are observed (a structural
  deep copy) and compared as typed structures, never as reprs; labels use `type(v).__name__`;
- non-literal values (iterators, generators, functions, custom objects) are encoded as `opaque`
  and flagged `literal: false`, so they are never used as labels;
- limits (steps, value size, trace size, time) end the trace as `truncated` with a reason.

`trace_program` runs in-process (call it inside a sandbox child: `trace_target` is the sandbox
target); `trace_in_sandbox` / `trace_many_in_sandbox` are the parent-side helpers. The trace is a
plain JSON-able dict; its format is documented in docs/TRACE.md.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
import types
from typing import Any

from execverify_jax.data.trace.recorder import SENTINEL, _approx_size, _Limit, _message, _Tracer, encode_value
from execverify_jax.data.trace.structure import analyze

PROGRAM_MODULE = "__program__"
TRACE_FORMAT = "execverify-trace/1"
TARGET = "execverify_jax.data.trace.tracer:trace_target"

DEFAULT_MAX_STEPS = 10_000
DEFAULT_MAX_VALUE_CHARS = 10_000
DEFAULT_MAX_TRACE_CHARS = 2_000_000
MAX_STDOUT_CHARS = 10_000


def _line_table(code: str, steps: list[dict]) -> tuple[list[str], list[int]]:
    """Source lines and the number of steps on each (all frames)."""
    lines = code.split("\n")
    counts = [0] * len(lines)
    for s in steps:
        if 1 <= s["line"] <= len(lines):
            counts[s["line"] - 1] += 1
    return lines, counts


def base_trace(code: str, entry: str, args_src: str, limits: dict) -> dict:
    """An empty trace dict with status ok (callers fill it in, or set a failure status)."""
    lines = code.split("\n")
    return {"format": TRACE_FORMAT, "code": code, "entry": entry, "args": args_src,
            "status": "ok", "truncated": False, "truncated_reason": None,
            "return": None, "exception": None, "error": None,
            "lines": lines, "line_counts": [0] * len(lines), "executed": [False] * len(lines),
            "frames": [], "steps": [], "stdout": "", "limits": limits}


def trace_program(code: str, entry: str, args_src: str, *, max_steps: int = DEFAULT_MAX_STEPS,
                  max_value_chars: int = DEFAULT_MAX_VALUE_CHARS,
                  max_trace_chars: int = DEFAULT_MAX_TRACE_CHARS,
                  max_seconds: float | None = None) -> dict:
    """Runs `entry(args_src)` of `code` under a tracer and returns the trace dict (docs/TRACE.md).

    Module-level code (imports, constants) runs first, untraced; the arguments are evaluated
    untraced; then the call runs traced. Never raises for program faults: a failing module or
    argument expression gives `status: "setup_error"`, an unhandled exception in the call gives
    `status: "exception"`, a hit limit gives `status: "truncated"`. Runs untrusted code in the
    current process: use it inside a sandbox child (see `trace_target`).
    """
    limits = {"max_steps": max_steps, "max_value_chars": max_value_chars,
              "max_trace_chars": max_trace_chars, "max_seconds": max_seconds}
    out = base_trace(code, entry, args_src, limits)
    try:
        structure = analyze(code)
        compiled = compile(code, SENTINEL, "exec")
        call_code = compile(f"__execverify_args__({args_src})", "<execverify-args>", "eval")
    except (SyntaxError, ValueError) as exc:
        out.update(status="setup_error", error={"type": type(exc).__name__, "message": str(exc)})
        return out
    stdout = _CappedText(MAX_STDOUT_CHARS)
    # A real module registered in sys.modules, so dataclasses/typing inside the program work.
    module = types.ModuleType(PROGRAM_MODULE)
    module.__dict__["__builtins__"] = __builtins__
    ns = module.__dict__
    saved_module = sys.modules.get(PROGRAM_MODULE)
    sys.modules[PROGRAM_MODULE] = module
    try:
        _run(out, tracer_args=(structure, max_steps, max_value_chars, max_trace_chars, max_seconds),
             compiled=compiled, call_code=call_code, ns=ns, entry=entry, stdout=stdout)
    finally:
        if saved_module is None:
            sys.modules.pop(PROGRAM_MODULE, None)
        else:
            sys.modules[PROGRAM_MODULE] = saved_module
    return out


class _CappedText(io.StringIO):
    """Captured program output: keeps the first `cap` characters, drops the rest (the memory
    limit of the sandbox, not this buffer, bounds a program that prints forever)."""

    def __init__(self, cap: int) -> None:
        super().__init__()
        self.cap, self.size = cap, 0

    def write(self, s: str) -> int:
        room = self.cap - self.size
        self.size += len(s)
        if room > 0:
            super().write(s[:room])
        return len(s)


def _run(out: dict, tracer_args: tuple, compiled: Any, call_code: Any, ns: dict, entry: str,
         stdout: io.StringIO) -> None:
    """Module code, arguments, then the traced call; fills `out` in place."""
    structure, max_steps, max_value_chars, max_trace_chars, max_seconds = tracer_args
    with contextlib.redirect_stdout(stdout):
        try:
            exec(compiled, ns)  # noqa: S102 - untrusted by design; callers sandbox this process
            fn = ns[entry]
            args, kwargs = eval(call_code, ns, {"__execverify_args__": lambda *a, **k: (a, k)})  # noqa: S307
        except BaseException as exc:  # noqa: BLE001 - any program fault (SystemExit too) is an outcome
            out.update(status="setup_error", error={"type": type(exc).__name__, "message": _message(exc)})
            out["stdout"] = stdout.getvalue()[:MAX_STDOUT_CHARS]
            return
        deadline = time.perf_counter() + max_seconds if max_seconds else None
        tracer = _Tracer(structure.stmt_start, max_steps, max_value_chars, max_trace_chars, deadline)
        result: Any = None
        raised: BaseException | None = None
        old = sys.gettrace()
        sys.settrace(tracer.global_trace)
        try:
            result = fn(*args, **kwargs)
        except _Limit:
            pass
        except BaseException as exc:  # noqa: BLE001 - SystemExit/KeyboardInterrupt from the program too
            raised = exc
        finally:
            active = sys.gettrace()
            sys.settrace(old)
        if active != tracer.global_trace and tracer.truncated is None and not tracer.done:
            tracer.truncated = "tracer_disabled"  # the program called sys.settrace itself
        tracer.finish()
    out["stdout"] = stdout.getvalue()[:MAX_STDOUT_CHARS]
    out["frames"], out["steps"] = tracer.frames, tracer.steps
    out["lines"], out["line_counts"] = _line_table(out["code"], tracer.steps)
    out["executed"] = [c > 0 for c in out["line_counts"]]
    if tracer.truncated is not None:
        out.update(status="truncated", truncated=True, truncated_reason=tracer.truncated)
    elif raised is not None:
        out.update(status="exception",
                   exception={"type": type(raised).__name__, "message": _message(raised)})
    else:
        try:
            if _approx_size(result, max_value_chars) > max_value_chars:
                raise _Limit("value_too_large")
            out["return"] = encode_value(result)
        except _Limit:
            out.update(status="truncated", truncated=True, truncated_reason="value_too_large")


def trace_target(payload: dict) -> str:
    """Sandbox target: `payload = {code, entry, args, [max_steps, max_value_chars, ...]}`.

    Returns the trace as a JSON string (cheaper to transport than a safe_codec-wrapped dict).
    """
    opts = {k: payload[k] for k in ("max_steps", "max_value_chars", "max_trace_chars", "max_seconds")
            if k in payload}
    return json.dumps(trace_program(payload["code"], payload["entry"], payload["args"], **opts),
                      ensure_ascii=False, separators=(",", ":"))


def trace_payload(code: str, entry: str, args_src: str, **opts: Any) -> dict:
    """The JSON-able payload `trace_target` expects."""
    return {"code": code, "entry": entry, "args": args_src, **opts}


def trace_from_outcome(outcome: Any, payload: dict) -> dict:
    """Turns a sandbox Outcome into a trace dict (typed failure statuses, never raises)."""
    status = getattr(outcome.status, "value", outcome.status)
    if status == "ok" and isinstance(outcome.value, str):
        try:
            return json.loads(outcome.value)
        except ValueError:
            pass
    limits = {k: payload.get(k) for k in ("max_steps", "max_value_chars", "max_trace_chars",
                                          "max_seconds")}
    out = base_trace(payload["code"], payload["entry"], payload["args"], limits)
    out.update(status="sandbox_" + str(status), truncated=False,
               error={"type": outcome.error_type or str(status), "message": outcome.error or ""})
    return out


def trace_in_sandbox(pool: Any, code: str, entry: str, args_src: str, *, limits: Any = None,
                     **opts: Any) -> dict:
    """Traces one call inside `pool` (a `SandboxPool`); sandbox failures give `sandbox_<status>`."""
    payload = trace_payload(code, entry, args_src, **opts)
    return trace_from_outcome(pool.submit(TARGET, payload, limits=limits).result(), payload)


def trace_many_in_sandbox(pool: Any, items: list[tuple[str, str, str]], *, limits: Any = None,
                          progress: bool = False, **opts: Any) -> list[dict]:
    """Traces many `(code, entry, args_src)` calls in the pool (all queued at once), in input order."""
    payloads = [trace_payload(c, e, a, **opts) for c, e, a in items]
    futures = [pool.submit(TARGET, p, limits=limits) for p in payloads]
    it: Any = zip(futures, payloads)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(futures), desc="trace", unit="call")
    return [trace_from_outcome(f.result(), p) for f, p in it]


def usable(trace: dict) -> bool:
    """True when the trace is complete and the call returned normally (usable for questions)."""
    return trace.get("status") == "ok" and not trace.get("truncated")


def state_after(trace: dict, step_index: int) -> dict[str, dict]:
    """The full locals of a step's frame after the step ran (replaying `args` and `changed`)."""
    step = trace["steps"][step_index]
    fid = step["frame"]
    state = dict(trace["frames"][fid]["args"])
    for s in trace["steps"][: step_index + 1]:
        if s["frame"] == fid:
            for name in s.get("deleted", ()):
                state.pop(name, None)
            state.update(s.get("changed", {}))
    return state
