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
def _alarm(*_):
    raise TimeoutError("timeout")
signal.signal(signal.SIGALRM, _alarm)
out = []
for cand in json.load(sys.stdin):
    res = []
    for args in cand["inputs"]:
        ns = {}
        try:
            signal.setitimer(signal.ITIMER_REAL, %(timeout)r)
            exec(compile(cand["code"], "<prog>", "exec"), ns)
            val = eval(cand["entry"] + "(" + args + ")", ns)
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
    out.append(res)
json.dump(out, sys.stdout)
"""


def run_batch(cands: list[dict], hashseed: int, timeout_s: float = 1.0) -> list[list[dict]]:
    """Per candidate, per input: {"ok", "repr", "literal"} or {"ok": False, "error"}."""
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
    a, b = run_batch(cands, 1, timeout_s), run_batch(cands, 2, timeout_s)
    out = []
    for ra, rb in zip(a, b):
        reason = ""
        for x, y in zip(ra, rb):
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
        out.append((not reason, reason))
    return out
