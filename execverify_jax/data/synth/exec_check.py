"""A light execution check of synthesized candidates, for measuring the synthesizer's yield.

Not the project's execution filter (that is `data/exec_filter.py` on the sandbox pool): this
runs a batch of candidates in ONE fresh `python -I` subprocess per hash seed, each call under a
SIGALRM time guard, and reports per input whether it ran, whether its repr round-trips through
`ast.literal_eval` to an equal value (a literal output), and the repr. Running the batch under
two different PYTHONHASHSEED values exposes outputs that depend on str hash order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

_CHILD = r"""
import ast, json, signal, sys
LINES = set()
ODD = set()
LITERAL = (int, float, str, bool, bytes, list, tuple, set, dict, type(None))
def _tracer(frame, event, arg):
    if frame.f_code.co_filename == "<prog>":
        if event == "line":
            LINES.add(frame.f_lineno)
        if event in ("line", "return") and frame.f_code.co_name != "<lambda>":
            for v in frame.f_locals.values():
                if not isinstance(v, LITERAL):
                    ODD.add(type(v).__name__)
        return _tracer
    return None
def _alarm(*_):
    raise TimeoutError("timeout")
signal.signal(signal.SIGALRM, _alarm)
out = []
for cand in json.load(sys.stdin):
    res = []
    LINES.clear()
    ODD.clear()
    for args in cand["inputs"]:
        ns = {}
        try:
            signal.setitimer(signal.ITIMER_REAL, %(timeout)r)
            exec(compile(cand["code"], "<prog>", "exec"), ns)
            sys.settrace(_tracer)
            try:
                val = eval(cand["entry"] + "(" + args + ")", ns)
            finally:
                sys.settrace(None)
            signal.setitimer(signal.ITIMER_REAL, 0)
            r = repr(val)
            try:
                lit = ast.literal_eval(r) == val
            except Exception:
                lit = False
            res.append({"ok": True, "repr": r[:2000], "literal": lit})
        except BaseException as e:
            signal.setitimer(signal.ITIMER_REAL, 0)
            res.append({"ok": False, "error": type(e).__name__ + ": " + str(e)[:200]})
    body = sorted({n.lineno for f in ast.parse(cand["code"]).body if isinstance(f, ast.FunctionDef)
                   for s in f.body for n in ast.walk(s) if isinstance(n, ast.stmt)})
    out.append({"runs": res, "covered": len(set(body) & LINES), "lines": len(body),
                "nonliteral_locals": sorted(ODD)})
json.dump(out, sys.stdout)
"""


def run_batch(cands: list[dict], hashseed: int, timeout_s: float = 1.0) -> list[dict]:
    """Per candidate: {"runs": per input {"ok", "repr", "literal"} or {"ok": False, "error"},
    "covered"/"lines": function-body statements executed by at least one input / all of them,
    "nonliteral_locals": type names of local values that are not plain literals}."""
    env = dict(os.environ, PYTHONHASHSEED=str(hashseed))
    proc = subprocess.run([sys.executable, "-I", "-c", _CHILD % {"timeout": timeout_s}],
                          input=json.dumps([{"code": c["code"], "entry": c["entry"], "inputs": c["inputs"]}
                                            for c in cands]),
                          capture_output=True, text=True, env=env, timeout=60 + timeout_s * 4 * len(cands))
    if proc.returncode != 0:
        raise RuntimeError(f"exec_check child failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def passes(cands: list[dict], timeout_s: float = 1.0) -> list[tuple[bool, str]]:
    """Per candidate: (passes, reason). Pass = every input runs under two hash seeds, with
    equal reprs, and the output is a literal."""
    return [(ok, why) for ok, why, _ in passes_with_coverage(cands, timeout_s)]


def passes_with_coverage(cands: list[dict], timeout_s: float = 1.0) -> list[tuple[bool, str, float]]:
    """`passes` plus the statement coverage of the function bodies over all inputs (0..1)."""
    a, b = run_batch(cands, 1, timeout_s), run_batch(cands, 2, timeout_s)
    out = []
    for ra, rb in zip(a, b):
        reason = ""
        for x, y in zip(ra["runs"], rb["runs"]):
            if not x["ok"]:
                reason = x["error"]
            elif not y["ok"]:
                reason = y["error"]
            elif x["repr"] != y["repr"]:
                reason = "nondeterministic"
            elif not x["literal"]:
                reason = "non-literal output"
            if reason:
                break
        out.append((not reason, reason, ra["covered"] / max(1, ra["lines"])))
    return out
