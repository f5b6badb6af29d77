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
import dis
import io
import json
import re
import sys
import time
import types
from typing import Any

from execverify_jax.data import safe_codec
from execverify_jax.data.trace.structure import analyze

SENTINEL = "<execverify-program>"
PROGRAM_MODULE = "__program__"
TRACE_FORMAT = "execverify-trace/1"
TARGET = "execverify_jax.data.trace.tracer:trace_target"

DEFAULT_MAX_STEPS = 10_000
DEFAULT_MAX_VALUE_CHARS = 10_000
DEFAULT_MAX_TRACE_CHARS = 2_000_000
MAX_STDOUT_CHARS = 10_000
MAX_INT_DIGITS = 4000  # below CPython's int->str conversion limit (4300 digits)

_RETURN_OPS = frozenset(op for op in ("RETURN_VALUE", "RETURN_CONST") if op in dis.opmap)
_YIELD_OPS = frozenset(op for op in ("YIELD_VALUE",) if op in dis.opmap)
_IMMUTABLE_SCALARS = (int, float, str, bool, type(None), bytes, complex, range)
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_CO_OPTIMIZED = 0x1
_CO_GENERATOR_LIKE = 0x20 | 0x80 | 0x200  # generator, coroutine, async generator
_COMPREHENSIONS = frozenset({"<listcomp>", "<setcomp>", "<dictcomp>", "<genexpr>"})


class _Limit(BaseException):
    """Raised from the trace function to stop the program when a limit is hit.

    A BaseException so `except Exception` in the program does not swallow it; CPython also
    unsets the tracer when the trace function raises, so nothing after this point is recorded.
    """


def _approx_size(obj: Any, budget: int) -> int:
    """Approximate repr length of `obj`, walking at most until `budget` is exceeded."""
    total = 0
    stack = [obj]
    while stack:
        v = stack.pop()
        t = type(v)
        if t is str or t is bytes:
            total += len(v) + 3
        elif t is int:
            digits = v.bit_length() * 0.302 + 1
            if digits > MAX_INT_DIGITS:
                return budget + 1
            total += int(digits) + 1
        elif v is None or t is bool or t is float or t is complex or t is range:
            total += 6
        elif t in (list, tuple, set, frozenset):
            total += 2 + len(v)
            if total > budget:
                return total
            stack.extend(v)
        elif t is dict:
            total += 2 + 2 * len(v)
            if total > budget:
                return total
            stack.extend(v.keys())
            stack.extend(v.values())
        else:
            total += 40  # opaque: type name + capped repr
        if total > budget:
            return total
    return total


def _scan(enc: Any) -> bool:
    """Normalizes opaque reprs in place (drops memory addresses); True when no opaque inside."""
    literal = True
    stack = [enc]
    while stack:
        e = stack.pop()
        if isinstance(e, list):
            stack.extend(e)
        elif isinstance(e, dict):
            if e.get("__t") == "opaque":
                e["repr"] = _ADDRESS.sub(" at 0x?", e["repr"])
                literal = False
            elif isinstance(e.get("v"), list):
                stack.extend(e["v"])
    return literal


def _same(a: Any, b: Any) -> bool:
    """Exact structural equality of two encodings (1 != True != 1.0, unlike Python `==`)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def encode_value(obj: Any) -> dict:
    """The trace's value record: `{"type": type(v).__name__, "value": encoding, "literal": bool}`."""
    try:
        enc = safe_codec.to_jsonable(obj)
    except Exception:  # noqa: BLE001 - e.g. a set of objects whose __lt__ raises while sorting
        enc = {"__t": "opaque", "type": type(obj).__name__, "repr": "<encoding failed>"}
    return {"type": type(obj).__name__, "value": enc, "literal": _scan(enc)}


def _message(exc: BaseException) -> str:
    try:
        return str(exc)[:300]
    except Exception:  # noqa: BLE001 - a hostile __str__ must not break tracing
        return "<str failed>"


def _frame_kind(code: Any) -> str:
    if code.co_name == "<lambda>":
        return "lambda"
    if code.co_name in _COMPREHENSIONS:
        return "comprehension"
    if not code.co_flags & _CO_OPTIMIZED:
        return "class"
    if code.co_flags & _CO_GENERATOR_LIKE:
        return "generator"
    return "function"


class _FrameState:
    __slots__ = ("fid", "frame", "snap", "pending", "last_raw", "counts", "exc", "parked",
                 "record")

    def __init__(self, fid: int, frame: Any, record: dict) -> None:
        self.fid = fid
        self.frame = frame  # strong ref: keeps id(frame) unique for the whole run
        self.snap: dict[str, tuple] = {}
        self.pending: int | None = None
        self.last_raw: int | None = None
        self.counts: dict[int, int] = {}
        self.exc: dict | None = None
        self.parked: dict[str, tuple] | None = None  # snapshot at a yield, if suspended
        self.record = record


class _Tracer:
    def __init__(self, stmt_start: dict[int, int], max_steps: int, max_value_chars: int,
                 max_trace_chars: int, deadline: float | None) -> None:
        self.stmt_start = stmt_start
        self.max_steps = max_steps
        self.max_value_chars = max_value_chars
        self.max_trace_chars = max_trace_chars
        self.deadline = deadline
        self.frames: list[dict] = []
        self.steps: list[dict] = []
        self.by_frame: dict[int, _FrameState] = {}
        self.call_counts: dict[Any, int] = {}
        self.trace_chars = 0
        self.truncated: str | None = None
        self.done = False

    # -- limits -------------------------------------------------------------------------------
    def _stop(self, reason: str) -> None:
        if self.truncated is None:
            self.truncated = reason
        self.done = True
        raise _Limit(reason)

    def _value(self, obj: Any) -> tuple:
        size = _approx_size(obj, self.max_value_chars)
        if size > self.max_value_chars:
            self._stop("value_too_large")
        rec = encode_value(obj)
        return (obj, rec, size)

    # -- snapshots ----------------------------------------------------------------------------
    def _snapshot(self, frame: Any, prev: dict[str, tuple]) -> dict[str, tuple]:
        snap = {}
        for name, obj in frame.f_locals.items():
            if name[:1] == "." or name == "__class__":
                continue  # comprehension iterator argument, super() cell
            old = prev.get(name)
            if old is not None and old[0] is obj and type(obj) in _IMMUTABLE_SCALARS:
                snap[name] = old
            else:
                snap[name] = self._value(obj)
        return snap

    def _close(self, st: _FrameState, snap: dict[str, tuple], end: str) -> None:
        """Ends the open step of `st` with after-state `snap` and records what changed."""
        step = self.steps[st.pending]
        changed = {}
        for name, (obj, rec, size) in snap.items():
            old = st.snap.get(name)
            if old is None or old[1]["type"] != rec["type"] or not _same(old[1]["value"], rec["value"]):
                changed[name] = rec
                self.trace_chars += size
        step["changed"] = changed
        step["deleted"] = sorted(n for n in st.snap if n not in snap)
        step["end"] = end
        st.snap = snap
        st.pending = None
        st.parked = None
        if self.trace_chars > self.max_trace_chars:
            self._stop("trace_too_large")

    # -- events -------------------------------------------------------------------------------
    def global_trace(self, frame: Any, event: str, arg: Any) -> Any:
        if self.done or frame.f_code.co_filename != SENTINEL:
            return None
        if frame.f_code.co_name == "<module>":
            return None
        st = self.by_frame.get(id(frame))
        if st is None:
            self._new_frame(frame)
        else:
            st.record["resumes"] += 1
        return self.local_trace

    def _new_frame(self, frame: Any) -> None:
        fid = len(self.frames)
        parent = frame.f_back
        while parent is not None and id(parent) not in self.by_frame:
            parent = parent.f_back  # skip library frames between two traced frames
        pst = self.by_frame.get(id(parent)) if parent is not None else None
        code = frame.f_code
        self.call_counts[code] = self.call_counts.get(code, 0) + 1
        record = {
            "id": fid,
            "func": code.co_name,
            "kind": _frame_kind(code),
            "def_line": code.co_firstlineno,
            "call_no": self.call_counts[code],
            "parent": pst.fid if pst else None,
            "call_step": pst.pending if pst else None,
            "depth": (self.frames[pst.fid]["depth"] + 1) if pst else 0,
            "path": (self.frames[pst.fid]["path"] + [fid]) if pst else [fid],
            "args": {},
            "resumes": 0,
            "end": "open",
            "return": None,
            "raised": None,
        }
        st = _FrameState(fid, frame, record)
        self.by_frame[id(frame)] = st
        self.frames.append(record)
        st.snap = self._snapshot(frame, {})
        record["args"] = {name: v[1] for name, v in st.snap.items()}

    def local_trace(self, frame: Any, event: str, arg: Any) -> Any:
        if self.done:
            return None
        st = self.by_frame[id(frame)]
        if event == "line":
            self._on_line(st, frame)
        elif event == "return":
            self._on_return(st, frame, arg)
        elif event == "exception":
            exc_type, exc_value = arg[0], arg[1]
            st.exc = {"type": exc_type.__name__, "message": _message(exc_value)}
            if st.pending is not None:
                self.steps[st.pending]["exception"] = st.exc
        return self.local_trace

    def _on_line(self, st: _FrameState, frame: Any) -> None:
        raw = frame.f_lineno
        line = self.stmt_start.get(raw, raw)
        if st.pending is not None:
            step = self.steps[st.pending]
            if step["line"] == line and (raw != line or st.last_raw != line):
                st.last_raw = raw  # another physical line of the same statement
                return
        if len(self.steps) >= self.max_steps:
            self._stop("max_steps")
        if self.deadline is not None and time.perf_counter() > self.deadline:
            self._stop("time_limit")
        if st.pending is not None:
            step = self.steps[st.pending]
            self._close(st, self._snapshot(frame, st.snap), "next")
            step["next"] = len(self.steps)
        st.last_raw = raw
        k = st.counts[line] = st.counts.get(line, 0) + 1
        st.exc = None
        st.pending = len(self.steps)
        self.steps.append({"i": st.pending, "line": line, "frame": st.fid, "k": k, "next": None,
                           "changed": {}, "deleted": [], "end": "open"})

    def _on_return(self, st: _FrameState, frame: Any, arg: Any) -> None:
        code = frame.f_code
        op = dis.opname[code.co_code[frame.f_lasti]] if frame.f_lasti >= 0 else ""
        if op in _YIELD_OPS:
            # Suspended: the open step stays open until the frame's next line event (a sent value
            # is assigned after resumption); `parked` is its after-state if it never resumes.
            st.parked = self._snapshot(frame, st.snap)
            val = self._value(arg)
            if st.pending is not None:
                self.steps[st.pending]["yielded"] = val[1]
            st.record["end"] = "suspended"
            return
        normal = op in _RETURN_OPS
        if normal:
            val = self._value(arg)
            st.record["return"] = val[1]
            st.record["end"] = "return"
        else:
            st.record["raised"] = st.exc or {"type": "unknown", "message": ""}
            st.record["end"] = "raise"
        if st.pending is not None:
            step = self.steps[st.pending]
            if normal:
                step["returned"] = st.record["return"]
            else:
                step["raised"] = st.record["raised"]
            self._close(st, self._snapshot(frame, st.snap), "return" if normal else "raise")
        if st.fid == 0:
            self.done = True  # ignore later events (e.g. generators finalized on teardown)

    def finish(self) -> None:
        """Closes steps left open (suspended generators, truncated runs) without new events."""
        for st in self.by_frame.values():
            if st.pending is not None:
                try:
                    snap = st.parked if st.parked is not None else self._snapshot(st.frame, st.snap)
                except _Limit:
                    snap = st.snap
                pending = st.pending
                try:
                    self._close(st, snap, "open")
                except _Limit:
                    pass
                self.steps[pending]["end"] = "open"
            st.frame = None


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
