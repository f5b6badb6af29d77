"""An independent re-implementation of REval's ground-truth rules, for cross-checking ours.

Written from REval's description (reference section 7.3 and the ExecVerify copy of REval's
`dynamics.py`): a global state list with one state per line change over the line / return /
exception events of the shown code, locals of a state = those of its last line event (modules,
functions, iterators dropped), coverage = the line has a state, next lines = the state after
each occurrence (-1 after the last), state values = the expression evaluated in the state after
each occurrence (the state itself when last). Runs the programs in this process, so the test
runs it as a subprocess in a temporary folder:

    python reval_emulation.py DREVAL_DIR [PID ...]   -> one JSON line per (pid, input)
"""

from __future__ import annotations

import ast
import collections.abc as cabc
import copy
import itertools
import json
import sys
import types
from pathlib import Path

from execverify_jax.data import safe_codec
from execverify_jax.eval import sandboxed as targets
from execverify_jax.eval.reval import TASKS, REval

FILENAME = "<emulated>"


def states_of(program: str, entry: str, args_src: str, n_lines: int) -> list[list]:
    ns: dict = {"__name__": "__emulated__"}
    exec(compile(program, FILENAME, "exec"), ns)
    args, kwargs = eval(f"(lambda *a, **k: (a, k))({args_src})", ns)
    states: list[list] = []

    def add(line: int, loc: dict | None) -> None:
        if line > n_lines:
            return
        if states and states[-1][0] == line:
            if loc is not None:
                states[-1][1] = loc
        else:
            states.append([line, loc if loc is not None else {}])

    def local(frame, event, arg):
        if event == "line":
            loc = {}
            for k, v in frame.f_locals.items():
                if isinstance(v, (types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
                                  cabc.Iterator, cabc.Generator)):
                    continue
                try:
                    loc[k] = copy.deepcopy(v)
                except Exception:  # noqa: BLE001
                    pass
            add(frame.f_lineno, loc)
        elif event in ("return", "exception"):
            add(frame.f_lineno, None)
        return local

    def glob(frame, event, arg):
        return local if event == "call" and frame.f_code.co_filename == FILENAME else None

    sys.settrace(glob)
    try:
        ns[entry](*args, **kwargs)
    finally:
        sys.settrace(None)
    return states


def interpret(node: ast.AST, loc: dict) -> list | None:
    if isinstance(node, ast.Constant):
        return [node.value]
    if isinstance(node, ast.Name):
        return [loc[node.id]] if node.id in loc else None
    if isinstance(node, ast.Attribute):
        objs = interpret(node.value, loc)
        found = [getattr(o, node.attr) for o in objs or [] if hasattr(o, node.attr)]
        return found or None
    if isinstance(node, ast.Subscript):
        arr, idx = interpret(node.value, loc), interpret(node.slice, loc)
        if arr is None or idx is None:
            return None
        found = []
        for a, i in itertools.product(arr, idx):
            try:
                found.append(a[i])
            except Exception:  # noqa: BLE001
                pass
        return found or None
    if isinstance(node, ast.Tuple):
        parts = [interpret(e, loc) for e in node.elts]
        return None if any(p is None for p in parts) else [tuple(t) for t in itertools.product(*parts)]
    return None


def main(folder: str, pids: set[int]) -> None:
    b = REval(TASKS, "emulation")
    items = b.load(Path(folder), "execverify", None).items
    questions: dict[tuple, list] = {}
    for it in items:
        if "q" in it.meta and (not pids or it.meta["pid"] in pids):
            questions.setdefault((it.meta["pid"], it.meta["input_idx"]), {})[it.meta["q"]] = (it.meta["line"], it.meta["var"])
    for (pid, k), qs in sorted(questions.items()):
        prog = b.programs[pid]
        try:
            if prog.get("test"):
                t = b.tests[pid][k]
                program = targets.class_program(prog["code"], prog["test"], t["test_class"], t["test_method"])
                st = states_of(program, targets.RUNNER, "", len(prog["code"].rstrip("\n").split("\n")))
            else:
                st = states_of(prog["code"], prog["entry_point"], "*" + prog["inputs"][k], 10 ** 9)
        except BaseException as exc:  # noqa: BLE001 - the environment lacks a module, etc.
            print(json.dumps({"pid": pid, "k": k, "error": type(exc).__name__}))
            continue
        lines = [s[0] for s in st]
        out = {}
        for q, (line, var) in qs.items():
            idx = [i for i, s in enumerate(st) if s[0] == line]
            nxt = sorted({lines[i + 1] if i + 1 < len(lines) else -1 for i in idx}) if idx else [-1]
            vals = []
            node = ast.parse(var, mode="eval").body
            for i in idx:
                got = interpret(node, st[i + 1 if i + 1 < len(st) else i][1])
                vals += got or []
            enc = sorted({json.dumps(safe_codec.to_jsonable(v), sort_keys=True) for v in vals})
            out[q] = {"covered": bool(idx), "next": nxt, "values": enc}
        print(json.dumps({"pid": pid, "k": k, "questions": out}))


if __name__ == "__main__":
    main(sys.argv[1], {int(p) for p in sys.argv[2:]})
