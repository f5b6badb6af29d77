"""Tracer tests against hand-checked traces (steps, per-frame counts, after-states, labels)."""

from __future__ import annotations

import json
import math
import textwrap

import pytest

from execverify_jax.data import safe_codec
from execverify_jax.data.trace.tracer import state_after, trace_program, usable


def run(code: str, entry: str, args: str, **kw) -> dict:
    return trace_program(textwrap.dedent(code).lstrip("\n"), entry, args, **kw)


def seq(trace: dict, frame: int | None = None) -> list[tuple[int, int]]:
    """(line, k) of every step (optionally of one frame)."""
    return [(s["line"], s["k"]) for s in trace["steps"] if frame is None or s["frame"] == frame]


def changed(step: dict) -> dict:
    return {k: safe_codec.from_jsonable(v["value"]) for k, v in step["changed"].items()}


def test_loop_break_continue_else():
    t = run("""
        def f(xs):
            total = 0
            for x in xs:
                if x < 0:
                    continue
                if x > 5:
                    break
                total += x
            else:
                total = -1
            return total
    """, "f", "[1, -2, 7, 3]")
    assert usable(t)
    assert safe_codec.from_jsonable(t["return"]["value"]) == 1
    assert seq(t) == [(2, 1), (3, 1), (4, 1), (6, 1), (8, 1), (3, 2), (4, 2), (5, 1),
                      (3, 3), (4, 3), (6, 2), (7, 1), (11, 1)]
    steps = t["steps"]
    assert changed(steps[0]) == {"total": 0}
    assert changed(steps[1]) == {"x": 1}
    assert changed(steps[4]) == {"total": 1}
    assert changed(steps[8]) == {"x": 7}
    assert steps[-1]["end"] == "return" and steps[-1]["returned"]["value"] == 1
    # the return line is one step, counted once (the original counted it twice)
    assert t["line_counts"][10] == 1


def test_loop_else_runs_when_not_broken():
    t = run("""
        def f(n):
            for i in range(n):
                pass
            else:
                n = -1
            return n
    """, "f", "2")
    assert seq(t) == [(2, 1), (3, 1), (2, 2), (3, 2), (2, 3), (5, 1), (6, 1)]
    assert changed(t["steps"][5]) == {"n": -1}
    assert t["executed"][:6] == [False, True, True, False, True, True]


def test_nested_loops_counts():
    t = run("""
        def f(n):
            s = 0
            for i in range(n):
                for j in range(i):
                    s += j
            return s
    """, "f", "3")
    assert safe_codec.from_jsonable(t["return"]["value"]) == 1
    assert seq(t) == [(2, 1), (3, 1), (4, 1), (3, 2), (4, 2), (5, 1), (4, 3), (3, 3), (4, 4),
                      (5, 2), (4, 5), (5, 3), (4, 6), (3, 4), (6, 1)]
    assert changed(t["steps"][11]) == {"s": 1}


def test_recursion_per_frame_counts():
    t = run("""
        def fact(n):
            if n <= 1:
                return 1
            return n * fact(n - 1)
    """, "fact", "3")
    assert safe_codec.from_jsonable(t["return"]["value"]) == 6
    frames = t["frames"]
    assert [(fr["func"], fr["parent"], fr["depth"], fr["call_no"]) for fr in frames] == [
        ("fact", None, 0, 1), ("fact", 0, 1, 2), ("fact", 1, 2, 3)]
    assert [fr["args"]["n"]["value"] for fr in frames] == [3, 2, 1]
    assert [fr["path"] for fr in frames] == [[0], [0, 1], [0, 1, 2]]
    assert [fr["return"]["value"] for fr in frames] == [6, 2, 1]
    # every frame executes line 2 once: k is per frame, not global
    assert seq(t, 0) == [(2, 1), (4, 1)]
    assert seq(t, 1) == [(2, 1), (4, 1)]
    assert seq(t, 2) == [(2, 1), (3, 1)]
    # the recursive-call step of frame 0 is where frame 1 was created
    assert t["steps"][frames[1]["call_step"]]["frame"] == 0
    assert t["steps"][frames[1]["call_step"]]["line"] == 4


def test_helper_call_after_state():
    t = run("""
        def helper(x):
            return x * 2

        def main(s, k):
            out = []
            for i, c in enumerate(s):
                if i % 2 == 0:
                    out.append(c.upper())
                else:
                    out.append(helper(k))
            return out
    """, "main", "'abc', 3")
    assert safe_codec.from_jsonable(t["return"]["value"]) == ["A", 6, "C"]
    steps = t["steps"]
    (call_step,) = [s for s in steps if s["line"] == 10]
    # the line that calls the helper still gets its after-state (the original lost it)
    assert changed(call_step) == {"out": ["A", 6]}
    assert call_step["frame"] == 0 and call_step["end"] == "next"
    assert steps[call_step["next"]]["line"] == 6 and steps[call_step["next"]]["frame"] == 0
    helper_frame = t["frames"][1]
    assert helper_frame["func"] == "helper" and helper_frame["call_step"] == call_step["i"]
    assert helper_frame["args"]["x"]["value"] == 3
    assert seq(t, 1) == [(2, 1)]
    assert seq(t, 0) == [(5, 1), (6, 1), (7, 1), (8, 1), (6, 2), (7, 2), (10, 1), (6, 3), (7, 3),
                         (8, 2), (6, 4), (11, 1)]


def test_entry_is_explicit_and_imports_are_kept():
    t = run("""
        import math

        def helper(x):
            return math.ceil(x / 2)

        def f(x):
            return helper(x) + 1
    """, "f", "5")
    assert usable(t) and t["return"]["value"] == 4
    assert t["frames"][0]["func"] == "f"


def test_comprehension_and_lambda_frames():
    t = run("""
        def f(xs):
            ys = [x * 2 for x in xs]
            zs = sorted(xs, key=lambda v: -v)
            return ys, zs
    """, "f", "[1, 2]")
    assert safe_codec.from_jsonable(t["return"]["value"]) == ([2, 4], [2, 1])
    kinds = [fr["kind"] for fr in t["frames"]]
    assert kinds == ["function", "comprehension", "lambda", "lambda"]
    assert seq(t, 0) == [(2, 1), (3, 1), (4, 1)]
    assert changed(t["steps"][0]) == {"ys": [2, 4]}
    assert all(fr["parent"] == 0 for fr in t["frames"][1:])
    # '.0' (the comprehension's hidden iterator argument) is not a variable
    assert ".0" not in t["frames"][1]["args"]


def test_generator_yield_and_resume():
    t = run("""
        def gen(n):
            for i in range(n):
                x = yield i
            return 5

        def f(n):
            out = list(gen(n))
            return out
    """, "f", "2")
    assert t["return"]["value"] == [0, 1]
    g = t["frames"][1]
    assert g["kind"] == "generator" and g["resumes"] == 2 and g["end"] == "return"
    gsteps = [s for s in t["steps"] if s["frame"] == 1]
    assert [(s["line"], s["k"]) for s in gsteps] == [(2, 1), (3, 1), (2, 2), (3, 2), (2, 3), (4, 1)]
    assert gsteps[1]["yielded"]["value"] == 0
    # the yield line's after-state is taken after resumption: the sent value (None) is assigned
    assert changed(gsteps[1]) == {"x": None}


def test_try_except_finally():
    t = run("""
        def f(a):
            try:
                y = 10 // a
            except ZeroDivisionError as e:
                y = -1
            finally:
                z = 2
            return y + z
    """, "f", "0")
    assert t["return"]["value"] == 1
    assert seq(t) == [(2, 1), (3, 1), (4, 1), (5, 1), (7, 1), (8, 1)]
    div = t["steps"][1]
    assert div["exception"]["type"] == "ZeroDivisionError" and div["end"] == "next"
    assert changed(t["steps"][3]) == {"y": -1}
    assert changed(t["steps"][4]) == {"z": 2}
    assert t["steps"][4]["deleted"] == []  # `e` is unbound at the end of the handler
    assert "e" in t["steps"][3]["deleted"]


def test_unhandled_exception_and_helper_raise():
    t = run("""
        def g(x):
            raise ValueError("bad " + str(x))

        def f(x):
            y = x + 1
            return g(y)
    """, "f", "1")
    assert t["status"] == "exception" and not usable(t)
    assert t["exception"] == {"type": "ValueError", "message": "bad 2"}
    assert t["frames"][1]["end"] == "raise" and t["frames"][0]["end"] == "raise"
    assert t["steps"][-1]["raised"]["type"] == "ValueError"


def test_early_return():
    t = run("""
        def f(x):
            if x > 0:
                return "pos"
            x = -x
            return "neg"
    """, "f", "3")
    assert seq(t) == [(2, 1), (3, 1)]
    assert t["steps"][1]["end"] == "return" and t["steps"][1]["returned"]["value"] == "pos"
    assert t["executed"][:5] == [False, True, True, False, False]


def test_multiline_statement_is_one_step():
    t = run("""
        def f(a):
            d = max(a,
                    a + 1,
                    a - 1)
            return d
    """, "f", "1")
    assert seq(t) == [(2, 1), (5, 1)]
    assert changed(t["steps"][0]) == {"d": 2}


def test_type_labels_and_opaque_values():
    t = run("""
        def f(xs):
            it = reversed(xs)
            r = range(3)
            n = None
            big = float('inf')
            bad = float('nan')
            fs = frozenset({1})
            fn = len
            return [n, r]
    """, "f", "[1, 2]")
    ch = {}
    for s in t["steps"]:
        ch.update(s["changed"])
    assert ch["it"]["type"] == "list_reverseiterator" and ch["it"]["literal"] is False
    assert ch["it"]["value"]["__t"] == "opaque" and "0x?" in ch["it"]["value"]["repr"]
    assert ch["r"]["type"] == "range" and ch["r"]["literal"]
    assert safe_codec.from_jsonable(ch["r"]["value"]) == range(3)
    assert ch["n"] == {"type": "NoneType", "value": None, "literal": True}
    assert ch["big"]["type"] == "float" and safe_codec.from_jsonable(ch["big"]["value"]) == math.inf
    assert ch["bad"]["type"] == "float" and math.isnan(safe_codec.from_jsonable(ch["bad"]["value"]))
    assert ch["fs"]["type"] == "frozenset"
    assert ch["fn"]["type"] == "builtin_function_or_method" and not ch["fn"]["literal"]
    assert t["return"]["type"] == "list"


def test_hostile_objects_do_not_break_the_tracer():
    t = run("""
        class Bad:
            def __repr__(self):
                raise RuntimeError("no repr")
            def __lt__(self, other):
                raise ValueError("no order")
            def __eq__(self, other):
                raise ValueError("no eq")
            __hash__ = object.__hash__

        def f():
            s = {Bad(), Bad()}
            b = Bad()
            return 1
    """, "f", "")
    assert usable(t) and t["return"]["value"] == 1
    ch = {k: v for s in t["steps"] for k, v in s["changed"].items()}
    assert ch["s"]["type"] == "set" and not ch["s"]["literal"]
    assert ch["b"]["type"] == "Bad" and ch["b"]["value"]["repr"].startswith("<repr failed")


def test_changes_are_typed_not_repr_or_eq():
    # 1 -> True -> 1.0 are all changes (Python == would call them equal); nan stays nan
    t = run("""
        def f():
            a = 1
            a = True
            a = 1.0
            b = float('nan')
            b = b
            return a
    """, "f", "")
    assert [list(s["changed"]) for s in t["steps"]] == [["a"], ["a"], ["a"], ["b"], [], []]
    assert [s["changed"]["a"]["type"] for s in t["steps"][:3]] == ["int", "bool", "float"]


def test_mutation_in_place_is_a_change():
    t = run("""
        def f():
            xs = []
            ys = xs
            xs.append(1)
            return ys
    """, "f", "")
    assert changed(t["steps"][2]) == {"xs": [1], "ys": [1]}


def test_long_values_are_not_truncated():
    t = run("""
        def f(n):
            s = 'x' * n
            return s
    """, "f", "5000")
    assert usable(t)
    assert t["steps"][0]["changed"]["s"]["value"] == "x" * 5000


def test_truncation_max_steps():
    t = run("""
        def f():
            i = 0
            while True:
                i += 1
    """, "f", "", max_steps=50)
    assert t["status"] == "truncated" and t["truncated_reason"] == "max_steps"
    assert len(t["steps"]) == 50 and not usable(t)


def test_truncation_is_not_swallowed_by_bare_except():
    t = run("""
        def f():
            try:
                while True:
                    pass
            except BaseException:
                return 1
    """, "f", "", max_steps=20)
    assert t["truncated"] and t["truncated_reason"] == "max_steps"


def test_truncation_value_too_large():
    t = run("""
        def f():
            xs = list(range(100))
            return xs
    """, "f", "", max_value_chars=50)
    assert t["truncated"] and t["truncated_reason"] == "value_too_large"
    t = run("""
        def f():
            return 10 ** 5000
    """, "f", "")
    assert t["truncated"] and t["truncated_reason"] == "value_too_large"


def test_tracer_disabled_by_program():
    t = run("""
        import sys

        def f():
            sys.settrace(None)
            x = 1
            return x
    """, "f", "")
    assert t["truncated"] and t["truncated_reason"] == "tracer_disabled"


def test_setup_errors_are_typed():
    assert run("def f(:\n    pass", "f", "1")["status"] == "setup_error"
    t = run("def f(x):\n    return x", "g", "1")
    assert t["status"] == "setup_error" and t["error"]["type"] == "KeyError"
    t = run("def f(x):\n    return x", "f", "undefined_name")
    assert t["status"] == "setup_error" and t["error"]["type"] == "NameError"
    t = run("import no_such_module_xyz\ndef f(x):\n    return x", "f", "1")
    assert t["status"] == "setup_error" and t["error"]["type"] == "ModuleNotFoundError"
    t = run("import sys\nsys.exit(3)\ndef f(x):\n    return x", "f", "1")
    assert t["status"] == "setup_error" and t["error"]["type"] == "SystemExit"
    t = run("import sys\ndef f(x):\n    sys.exit(3)", "f", "1")
    assert t["status"] == "exception" and t["exception"]["type"] == "SystemExit"


def test_keyword_args_stdout_and_json_roundtrip():
    t = run("""
        def f(a, b=2):
            print('hi', a)
            c = a + b
            return {c: (a, b)}
    """, "f", "1, b=5")
    assert t["stdout"] == "hi 1\n"
    assert safe_codec.from_jsonable(t["return"]["value"]) == {6: (1, 5)}
    again = json.loads(json.dumps(t))
    assert again == t
    st = state_after(t, 1)
    assert {k: v["value"] for k, v in st.items()} == {"a": 1, "b": 5, "c": 6}


def test_trace_is_deterministic():
    code = "def f(xs):\n    it = iter(xs)\n    y = next(it)\n    return y\n"
    assert trace_program(code, "f", "[3, 4]") == trace_program(code, "f", "[3, 4]")


def _crux_expected(text: str):
    try:
        return safe_codec.to_jsonable(eval(text, {"inf": math.inf, "nan": math.nan}))  # noqa: S307
    except Exception:  # noqa: BLE001
        return None


def test_cruxeval_all_programs_in_process(cruxeval_path):
    """Every CRUXEval program traces to its recorded output (in-process; sandbox test below)."""
    rows = [json.loads(line) for line in cruxeval_path.read_text().splitlines() if line.strip()]
    assert len(rows) == 800
    bad = []
    for row in rows:
        t = trace_program(row["code"], "f", row["input"])
        if not usable(t) or json.dumps(t["return"]["value"]) != json.dumps(_crux_expected(row["output"])):
            bad.append(row["id"])
    assert bad == []


@pytest.fixture(scope="module")
def pool():
    from execverify_jax.data.sandbox import SandboxPool
    from execverify_jax.data.trace.tracer import TARGET

    with SandboxPool(2, preload=(TARGET,)) as p:
        yield p


def test_cruxeval_all_programs_in_sandbox(cruxeval_path, pool):
    """All 800 CRUXEval programs, traced in the sandbox pool, return the recorded output."""
    from execverify_jax.data.trace.tracer import trace_many_in_sandbox

    rows = [json.loads(line) for line in cruxeval_path.read_text().splitlines() if line.strip()]
    traces = trace_many_in_sandbox(pool, [(r["code"], "f", r["input"]) for r in rows])
    bad = [r["id"] for r, t in zip(rows, traces)
           if not usable(t) or json.dumps(t["return"]["value"]) != json.dumps(_crux_expected(r["output"]))]
    assert bad == []
    # the sandboxed trace is the same as the in-process one (values cross the boundary intact)
    assert traces[0] == trace_program(rows[0]["code"], "f", rows[0]["input"])


def test_sandbox_failures_are_typed(pool):
    from execverify_jax.data.sandbox import Limits
    from execverify_jax.data.trace.tracer import trace_in_sandbox

    # a C-level loop: no line events, so only the sandbox's wall-clock limit can stop it
    t = trace_in_sandbox(pool, "def f():\n    return sum(range(10 ** 12))\n", "f", "", limits=Limits(timeout_s=0.5))
    assert t["status"] == "sandbox_timeout" and not usable(t)
    t = trace_in_sandbox(pool, "import os\ndef f():\n    os._exit(3)\n", "f", "")
    assert t["status"] == "sandbox_killed"
    t = trace_in_sandbox(pool, "def f(x):\n    return [x] * 3\n", "f", "7")
    assert usable(t) and t["return"]["value"] == [7, 7, 7]
