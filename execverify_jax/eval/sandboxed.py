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

import builtins
import contextlib
import io
import json
import sys
import types
from typing import Any

from execverify_jax.data import safe_codec
from execverify_jax.data.trace import tracer as tracer_mod
from execverify_jax.data.trace.structure import analyze
from execverify_jax.eval.probes import MAX_VALUE_CHARS, _probe_states

REVAL_TARGET = "execverify_jax.eval.sandboxed:reval_ground_truth"
SNIPPET_TARGET = "execverify_jax.eval.sandboxed:run_filled_snippet"
HUMANEVAL_TARGET = "execverify_jax.eval.sandboxed:run_humaneval"
PRELOAD = (REVAL_TARGET,)

RUNNER = "__dreval_run__"


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
