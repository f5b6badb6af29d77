"""Sandbox targets of the evaluation harness (trusted code that runs *inside* a sandbox child).

- `reval_ground_truth`: REval ground truth of one (program, input): runs the call under the
  project tracer (`data/trace/tracer.py`) for coverage and next-line sets (REval's state list rebuilt
  from the trace, `reval_line_sequence`), and under a small probe that evaluates each state
  question's variable expression (`x`, `self.limit`, `d[k]`, `(a, b)`): with REval's rule (the
  next state of the global state list, `_RevalProbe`, the default) or the tracer's after-state
  rule (the next event in the same frame, `_Probe`). Values come back `safe_codec`-encoded.
- `run_filled_snippet`: runs a REval output-task assertion snippet whose `??` holes were filled
  with the model's *literal* values (everything else is the dataset's own test code).
- `run_humaneval`: runs a HumanEval completion against the problem's `check` function with the
  candidate's return values passed through `safe_codec` (so an object that claims to equal
  everything becomes an opaque value equal to nothing).

None of them sees an expected answer except `run_humaneval` (HumanEval's tests are assertion
code; see docs/EVAL.md for what that means).
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
from execverify_jax.data.trace.structure import analyze

REVAL_TARGET = "execverify_jax.eval.sandboxed:reval_ground_truth"
SNIPPET_TARGET = "execverify_jax.eval.sandboxed:run_filled_snippet"
HUMANEVAL_TARGET = "execverify_jax.eval.sandboxed:run_humaneval"
PRELOAD = (REVAL_TARGET,)

RUNNER = "__dreval_run__"
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


def class_program(code: str, test_code: str, test_class: str, test_method: str) -> str:
    """The traced program of a ClassEval item: class code (its line numbers unchanged), the test
    code, and a runner that calls the test method after `setUp`, as REval does."""
    runner = (f"def {RUNNER}():\n"
              f"    case = {test_class}({test_method!r})\n"
              f"    case.setUp()\n"
              f"    getattr(case, {test_method!r})()\n")
    return code.rstrip("\n") + "\n\n\n" + test_code.rstrip("\n") + "\n\n\n" + runner


def _program_of(payload: dict) -> tuple[str, str, str]:
    """(program text, entry, argument source) of a REval payload."""
    if payload["kind"] == "class":
        return (class_program(payload["code"], payload["test_code"], payload["test_class"],
                              payload["test_method"]), RUNNER, "")
    return payload["code"], payload["entry"], "*" + payload["args"]


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


def reval_line_sequence(tr: dict, n_lines: int) -> list[int]:
    """REval's state list rebuilt from a trace: the lines of `line`, `return` and `exception`
    events in execution order, lines beyond `n_lines` dropped, consecutive repeats merged.

    The trace has `line` steps only; the other events are placed where CPython sends them: a
    frame's `return` event (at its last line) when control next reaches a step of a frame that is
    not inside it (or at the end), and, for a frame that ended by raising, the caller's
    `exception` event at the caller's current line (its call step). REval's next-line ground truth
    depends on them: after `return x` in a helper, the next state is the caller's line when the
    caller then returns (or raises) there.
    """
    frames, steps = tr["frames"], tr["steps"]
    out: list[int] = []

    def emit(line: int) -> None:
        if line <= n_lines and (not out or out[-1] != line):
            out.append(line)

    last_line: dict[int, int] = {}
    stack: list[int] = []

    def ancestors(fid: int) -> set[int]:
        seen = set()
        while fid is not None and fid not in seen:
            seen.add(fid)
            fid = frames[fid]["parent"]
        return seen

    def pop_until(keep: set[int]) -> None:
        while stack and stack[-1] not in keep:
            fid = stack.pop()
            if fid in last_line:
                emit(last_line[fid])  # the frame's return event
            parent, call_step = frames[fid]["parent"], frames[fid]["call_step"]
            if frames[fid]["end"] == "raise" and parent is not None and call_step is not None:
                emit(steps[call_step]["line"])  # the exception arriving in the caller

    for step in steps:
        fid = step["frame"]
        pop_until(ancestors(fid))
        if not stack or stack[-1] != fid:
            stack.append(fid)
        last_line[fid] = step["line"]
        emit(step["line"])
    pop_until(set())
    return out


def reval_ground_truth(payload: dict) -> str:
    """Ground truth of one REval (program, input) pair, as a JSON string.

    Payload: {kind: function|class, code, entry, args (the input tuple text) | test_code,
    test_class, test_method; questions: [[line, var], ...]; max_steps, max_seconds}.
    Returns {status, trace_status, return (encoded value or None), questions: [{line,
    covered, next: [1-based lines, -1 = end], state: {nil, values: [{type, value}]}}]}.
    Line numbers are those of the shown code; steps outside it (ClassEval test code) are
    dropped and consecutive steps on one line merged, as REval's state list does.
    """
    program, entry, args_src = _program_of(payload)
    n_lines = len(payload["code"].rstrip("\n").split("\n")) if payload["kind"] == "class" \
        else len(program.split("\n"))
    questions = [(int(line), str(var)) for line, var in payload["questions"]]
    max_seconds = float(payload.get("max_seconds", 20.0))
    tr = tracer_mod.trace_program(program, entry, args_src, max_steps=int(payload.get("max_steps", 200_000)),
                                  max_value_chars=MAX_VALUE_CHARS, max_trace_chars=200_000_000,
                                  max_seconds=max_seconds)
    result: dict[str, Any] = {"trace_status": tr["status"], "status": "ok", "questions": [],
                              "return": None, "error": tr.get("error") or tr.get("exception")}
    if tr["status"] != "ok":
        result["status"] = "trace_" + tr["status"]
        return json.dumps(result)
    if payload["kind"] != "class" and tr.get("return") is not None:
        result["return"] = tr["return"]
    seq = reval_line_sequence(tr, n_lines)
    executed = set(seq)
    nexts: dict[int, set[int]] = {}
    for i, line in enumerate(seq):
        nexts.setdefault(line, set()).add(seq[i + 1] if i + 1 < len(seq) else -1)
    stmt_start = analyze(program).stmt_start
    states, probe_status = _probe_states(program, entry, args_src, questions, stmt_start, n_lines,
                                         max_seconds, int(payload.get("max_steps", 200_000)) * 4,
                                         payload.get("state_semantics", "frame"))
    result["probe_status"] = probe_status
    for (line, _var), state in zip(questions, states):
        start = stmt_start.get(line, line)
        covered = start in executed
        result["questions"].append({"line": line, "covered": covered,
                                    "next": sorted(nexts.get(start, {-1})) if covered else [-1],
                                    "state": state if covered else {"nil": True, "values": [], "occurrences": 0}})
    return json.dumps(result)


# --------------------------------------------------------------------------------------------
# Output task and HumanEval


def _load_module(code: str, name: str) -> dict[str, Any]:
    module = types.ModuleType(name)
    module.__dict__["__builtins__"] = builtins
    sys.modules[name] = module
    exec(compile(code, f"<{name}>", "exec"), module.__dict__)  # noqa: S102 - sandboxed
    return module.__dict__


def run_filled_snippet(payload: dict) -> Any:
    """Runs a filled REval output snippet; True when it completes (an assertion failing raises).

    Payload: {kind: function|class, code, snippet, [test_code, test_class, test_method],
    [record]}. For ClassEval items the snippet runs with `self` = a test case after `setUp` and
    the `assert*` methods of the case in scope (REval rewrites `assert` to `self.assert`). With
    `record` (oracle building), `__rec__(k, value)` records each value and the target returns
    {"values": {k: encoded value}} instead of True.
    """
    recorded: dict[str, Any] = {}

    def rec(k: int, value: Any) -> Any:
        recorded[str(k)] = safe_codec.to_jsonable(value)
        return value

    with contextlib.redirect_stdout(io.StringIO()):
        if payload["kind"] == "class":
            ns = _load_module(payload["code"].rstrip("\n") + "\n\n\n" + payload["test_code"], "__program__")
            case = ns[payload["test_class"]](payload["test_method"])
            case.setUp()
            scope = dict(ns)
            scope["self"] = case
            scope.update({k: getattr(case, k) for k in dir(case) if k.startswith("assert")})
        else:
            scope = _load_module(payload["code"], "__program__")
        if payload.get("record"):
            scope["__rec__"] = rec
        exec(compile(payload["snippet"], "<snippet>", "exec"), scope)  # noqa: S102 - dataset code + literals
    return {"values": recorded} if payload.get("record") else True


def run_humaneval(payload: dict) -> bool:
    """Runs `prompt + completion`, then the problem's tests on the entry point; True if they pass.

    Payload: {program (prompt + completion), test (defines `check(candidate)`), entry}. The
    candidate's return values are round-tripped through `safe_codec`, so only literal values
    (or opaque stand-ins that equal nothing) reach the test's comparisons.
    """
    with contextlib.redirect_stdout(io.StringIO()):
        ns = _load_module(payload["program"], "__solution__")
        fn = ns[payload["entry"]]

        def candidate(*args: Any, **kwargs: Any) -> Any:
            return safe_codec.from_jsonable(safe_codec.to_jsonable(fn(*args, **kwargs)))

        # HumanEval tests may use helpers of the prompt (e.g. `poly`), so they share its namespace.
        exec(compile(payload["test"], "<tests>", "exec"), ns)  # noqa: S102 - dataset tests
        ns["check"](candidate)
    return True
