"""State probes for REval ground truth (trusted code that runs *inside* a sandbox child): REval's
variable expressions evaluated on live frames (`_eval_var`), with REval's next-state rule
(`_RevalProbe`) or the tracer's same-frame rule (`_Probe`). Split from eval/sandboxed.py, whose
`reval_ground_truth` target runs them.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import io
import itertools
import json
import sys
import time
import types
from typing import Any

from execverify_jax.data import safe_codec
from execverify_jax.data.trace import tracer as tracer_mod

MAX_VALUES_PER_QUESTION = 10_000  # distinct encoded values kept per state question
MAX_VALUE_CHARS = 100_000


def _store_values(store: dict[str, dict], vals: list) -> None:
    """Adds the (type, encoded value) records of `vals` to `store`, deduplicated, capped in count
    and skipping values too large to be a label."""
    for v in vals:
        if len(store) >= MAX_VALUES_PER_QUESTION:
            break
        if tracer_mod._approx_size(v, MAX_VALUE_CHARS) > MAX_VALUE_CHARS:
            continue
        rec = {"type": type(v).__name__, "value": safe_codec.to_jsonable(v)}
        store.setdefault(json.dumps(rec, sort_keys=True), rec)


class _ProbeLimit(BaseException):
    """Stops the probe run (time or event budget); BaseException so programs cannot catch it."""


# --------------------------------------------------------------------------------------------
# Variable expressions (REval's VarInterpreter semantics, on live objects)


class _Nil:
    pass


NIL = _Nil()


def _eval_var(node: ast.AST, f_locals: dict) -> list | _Nil:
    """All values of a state-question expression in one frame state, or NIL when unresolvable."""
    if isinstance(node, ast.Constant):
        return [node.value]
    if isinstance(node, ast.Name):
        return [f_locals[node.id]] if node.id in f_locals else NIL
    if isinstance(node, ast.Attribute):
        objs = _eval_var(node.value, f_locals)
        if objs is NIL:
            return NIL
        out = []
        for o in objs:  # type: ignore[union-attr]
            try:
                out.append(getattr(o, node.attr))
            except Exception:  # noqa: BLE001 - missing attribute: not a value
                pass
        return out or NIL
    if isinstance(node, ast.Subscript):
        arr, idx = _eval_var(node.value, f_locals), _eval_var(node.slice, f_locals)
        if arr is NIL or idx is NIL:
            return NIL
        out = []
        for a, i in itertools.product(arr, idx):  # type: ignore[arg-type]
            try:
                out.append(a[i])
            except Exception:  # noqa: BLE001 - bad key/index: not a value
                pass
        return out or NIL
    if isinstance(node, ast.Tuple):
        parts = [_eval_var(e, f_locals) for e in node.elts]
        if any(p is NIL for p in parts):
            return NIL
        return [tuple(t) for t in itertools.product(*parts)]  # type: ignore[arg-type]
    return NIL


class _Probe:
    """Per-frame statement tracking with the tracer's folding rules; evaluates state questions
    when a step of a question's line closes (next statement in the frame, or return)."""

    def __init__(self, stmt_start: dict[int, int], n_lines: int, wanted: dict[int, list[int]],
                 exprs: list[ast.AST | None], deadline: float, max_events: int) -> None:
        self.stmt_start, self.n_lines, self.wanted, self.exprs = stmt_start, n_lines, wanted, exprs
        self.deadline, self.max_events, self.events = deadline, max_events, 0
        self.values: list[dict[str, dict]] = [{} for _ in exprs]
        self.occurrences = [0] * len(exprs)
        # id(frame) -> (statement line, last raw line); popped at the frame's return event
        # (also sent when an exception leaves the frame), so an id is never reused while pending.
        self.pending: dict[int, tuple[int, int]] = {}

    def global_trace(self, frame: Any, event: str, arg: Any) -> Any:
        """`sys.settrace` hook: trace only frames of the program text (not `<module>`)."""
        if frame.f_code.co_filename != tracer_mod.SENTINEL or frame.f_code.co_name == "<module>":
            return None
        return self.local_trace

    def _close(self, frame: Any, line: int) -> None:
        for q in self.wanted.get(line, ()):
            self.occurrences[q] += 1
            vals = _eval_var(self.exprs[q], frame.f_locals) if self.exprs[q] is not None else NIL
            if vals is NIL:
                continue
            _store_values(self.values[q], vals)  # type: ignore[arg-type]

    def local_trace(self, frame: Any, event: str, arg: Any) -> Any:
        """Per-frame hook: closes the open step on a new statement or a return."""
        self.events += 1
        if self.events > self.max_events or time.perf_counter() > self.deadline:
            raise _ProbeLimit()
        key = id(frame)
        if event == "line":
            raw = frame.f_lineno
            line = self.stmt_start.get(raw, raw)
            prev = self.pending.get(key)
            if prev is not None:
                if prev[0] == line and (raw != line or prev[1] != line):
                    self.pending[key] = (line, raw)  # another physical line of one statement
                    return self.local_trace
                self._close(frame, prev[0])
            self.pending[key] = (line, raw)
        elif event == "return":
            prev = self.pending.pop(key, None)
            if prev is not None:
                self._close(frame, prev[0])
        return self.local_trace


_SKIPPED_LOCALS = (types.ModuleType, types.FunctionType, types.BuiltinFunctionType)


def _reval_visible(v: Any) -> bool:
    # REval's tracer drops modules, functions, builtins, iterators and generators from locals.
    return not isinstance(v, _SKIPPED_LOCALS) and not (hasattr(v, "__next__") and hasattr(v, "__iter__"))


class _RevalProbe(_Probe):
    """REval's state rule: the value after line L is read in the *next state* of the global state
    list (one state per line change over all traced frames; `line`, `return` and `exception`
    events; a state's locals are those of its last `line` event, empty if it has none), or in the
    state itself when it is the last one. So after `return x` in a helper the next state is
    usually in the caller, where `x` is unknown: REval's ground truth is then Nil."""

    def __init__(self, *a: Any, **k: Any) -> None:
        super().__init__(*a, **k)
        self.cur_line: int | None = None
        self.after_of: list[int] = []  # questions whose after-state is the current state
        self.tentative: dict[int, list] = {}  # their values read at the current state's last line event
        self.own: dict[int, list] = {}  # the current state's own questions, read in itself (last-state rule)

    def global_trace(self, frame: Any, event: str, arg: Any) -> Any:
        """`sys.settrace` hook: trace only frames of the program text (not `<module>`)."""
        if frame.f_code.co_filename != tracer_mod.SENTINEL or frame.f_code.co_name == "<module>":
            return None
        return self.local_trace

    def _read(self, qs: list[int], frame: Any) -> dict[int, list]:
        out = {}
        for q in qs:
            vals = _eval_var(self.exprs[q], frame.f_locals) if self.exprs[q] is not None else NIL
            out[q] = [] if vals is NIL else [v for v in vals if _reval_visible(v)]  # type: ignore[union-attr]
        return out

    def _commit(self, values: dict[int, list]) -> None:
        for q, vals in values.items():
            self.occurrences[q] += 1
            _store_values(self.values[q], vals)

    def local_trace(self, frame: Any, event: str, arg: Any) -> Any:
        """Per-frame hook: builds the state list on the fly and reads values at state changes."""
        self.events += 1
        if self.events > self.max_events or time.perf_counter() > self.deadline:
            raise _ProbeLimit()
        if event not in ("line", "return", "exception"):
            return self.local_trace
        raw = frame.f_lineno
        if raw > self.n_lines:
            return self.local_trace  # test code: invisible to REval
        line = self.stmt_start.get(raw, raw)
        if line != self.cur_line:  # a new state: the previous one is final
            self._commit(self.tentative)
            prev = self.cur_line
            self.after_of = list(self.wanted.get(prev, ())) if prev is not None else []
            self.tentative = {q: [] for q in self.after_of}  # empty locals until a line event
            self.cur_line = line
            self.own = {}
        if event == "line":
            self.tentative.update(self._read(self.after_of, frame))
            self.own = self._read(list(self.wanted.get(line, ())), frame)
        return self.local_trace

    def finish(self) -> None:
        """End of the run: commit the last after-state, and the last state's own questions."""
        self._commit(self.tentative)
        self.tentative = {}
        self._commit({q: v for q, v in self.own.items()})


def _probe_states(program: str, entry: str, args_src: str, questions: list, stmt_start: dict[int, int],
                  n_lines: int, max_seconds: float, max_events: int, semantics: str = "frame") -> tuple[list, str]:
    """Runs the call once under `_Probe` (semantics `frame`) or `_RevalProbe` (`reval`); returns
    (per-question state records, status)."""
    exprs: list[ast.AST | None] = []
    wanted: dict[int, list[int]] = {}
    for q, (line, var) in enumerate(questions):
        try:
            exprs.append(ast.parse(var, mode="eval").body)
        except SyntaxError:
            exprs.append(None)
        wanted.setdefault(stmt_start.get(line, line), []).append(q)
    module = types.ModuleType(tracer_mod.PROGRAM_MODULE)
    module.__dict__["__builtins__"] = builtins
    sys.modules[tracer_mod.PROGRAM_MODULE] = module
    ns = module.__dict__
    cls = _RevalProbe if semantics == "reval" else _Probe
    probe = cls(stmt_start, n_lines, wanted, exprs, time.perf_counter() + max_seconds, max_events)
    status = "ok"
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(program, tracer_mod.SENTINEL, "exec"), ns)  # noqa: S102 - sandboxed
        args, kwargs = eval(compile(f"__a__({args_src})", "<args>", "eval"), ns,  # noqa: S307
                            {"__a__": lambda *a, **k: (a, k)})
        old = sys.gettrace()
        sys.settrace(probe.global_trace)
        try:
            ns[entry](*args, **kwargs)
        except _ProbeLimit:
            status = "truncated"
        except BaseException as exc:  # noqa: BLE001 - the program's own failure is recorded
            status = f"exception:{type(exc).__name__}"
        finally:
            sys.settrace(old)
    if isinstance(probe, _RevalProbe):
        probe.finish()
    out = []
    for q in range(len(questions)):
        vals = list(probe.values[q].values())
        out.append({"nil": not vals, "values": vals, "occurrences": probe.occurrences[q]})
    return out, status
