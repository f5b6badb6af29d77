"""The in-process recorder behind the tracer: the `sys.settrace` callbacks (`_Tracer`), per-frame
state, value snapshots (`encode_value`, size budgets) and the trace limits. Split from
data/trace/tracer.py (the public entry points; its docstring states the rules).
"""

from __future__ import annotations

import dis
import re
import time
from typing import Any

from execverify_jax.data import safe_codec

SENTINEL = "<execverify-program>"  # the filename programs are compiled under
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
