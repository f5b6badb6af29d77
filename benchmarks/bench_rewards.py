"""Answers scored per second: our rewards vs the original one-subprocess-per-answer harness.

Items: CRUXEval (code/input/output, entry `f`). For every item we build one correct and one
incorrect response per task: output prediction (io: `assert f(<input>) == <output>`; wrong = the
next item's output) and input prediction (oi: `assert f(<input>) == ...`; wrong = the next item's
input). Both systems score exactly the same responses in the same run:

* original: `python -c "<prelude>\\n<code>\\nassert f(<args>) == <rhs>"` with a 0.5 s timeout, one
  subprocess per answer, `--baseline-workers` at a time (default: CPU count);
* ours: io is parsed and compared with no execution (one thread); oi runs the ground-truth
  function on the model's literal arguments in the hardened `SandboxPool` (`--workers`, default
  CPU count) and compares in the parent.

Prints a table, the verdict agreement between the two systems, and writes
benchmarks/results/rewards.json. Timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from execverify_jax.data import safe_codec  # noqa: E402
from execverify_jax.rewards.scorer import PRELOAD, Scorer  # noqa: E402
from execverify_jax.rewards.config import RewardConfig  # noqa: E402

# The prelude of the original CRUXEval harness (evaluation/crux_lcb/util.py).
PRELUDE = "from typing import *\nfrom itertools import *\nfrom collections import *\nimport bisect"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "benchmarks" / "cruxeval.jsonl"


def build(items: list[dict]) -> tuple[list[dict], list[str], list[dict], list[str]]:
    """(io questions, io responses, oi questions, oi responses): correct then wrong per item."""
    io_q, io_r, oi_q, oi_r = [], [], [], []
    n = len(items)
    for i, it in enumerate(items):
        nxt = items[(i + 1) % n]
        program = {"code": it["code"], "entry": "f", "args": it["input"]}
        out = safe_codec.to_jsonable(ast.literal_eval(it["output"]))  # trusted benchmark data
        for rhs in (it["output"], nxt["output"]):
            io_q.append({"id": it["id"], "answer": {"layout": "io_mixed", "program": program, "output": out,
                                                    "subquestions": []}})
            io_r.append(f"<reasoning>...</reasoning>\n<answer>\nassert f({it['input']}) == {rhs}\n</answer>")
        for args in (it["input"], nxt["input"]):
            oi_q.append({"id": it["id"], "answer": {"layout": "oi", "program": program, "output": out}})
            oi_r.append(f"<reasoning>...</reasoning>\n<answer>\n```python\nassert f({args}) == {it['output']}\n```\n</answer>")
    return io_q, io_r, oi_q, oi_r


BASELINE_FLAGS: list[str] = ["-S"]


def build_groups(items: list[dict], g: int) -> tuple[list[dict], list[str], list[tuple[str, str]]]:
    """GRPO-like oi groups: per item, g responses (its own input, then the next g-1 items' inputs)."""
    qs, rs, jobs = [], [], []
    n = len(items)
    for i, it in enumerate(items):
        program = {"code": it["code"], "entry": "f", "args": it["input"]}
        out = safe_codec.to_jsonable(ast.literal_eval(it["output"]))
        for k in range(g):
            args = items[(i + k) % n]["input"]
            qs.append({"id": it["id"], "answer": {"layout": "oi", "program": program, "output": out}})
            rs.append(f"<answer>\n```python\nassert f({args}) == {it['output']}\n```\n</answer>")
            jobs.append((it["code"], f"assert f({args}) == {it['output']}"))
    return qs, rs, jobs


def baseline_jobs(jobs: list[tuple[str, str]], workers: int, timeout: float) -> tuple[list[bool], float]:
    """The original harness on explicit (code, assertion) jobs."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as ex:
        verdicts = list(ex.map(lambda j: baseline_one(j[0], j[1], timeout), jobs))
    return verdicts, time.perf_counter() - t0


def baseline_one(code: str, assertion: str, timeout: float) -> bool:
    """The original check: ground-truth code + the assertion in a fresh `python -c`, pass iff rc 0.

    Run with `-S` by default (no site import: ~15 ms instead of ~40 ms of start-up in this
    virtualenv), which makes the original *faster* than it was, so our speedups are conservative.
    """
    src = f"{PRELUDE}\n{code}\n{assertion}"
    try:
        proc = subprocess.run([sys.executable, *BASELINE_FLAGS, "-c", src], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0


def baseline(items: list[dict], kind: str, workers: int, timeout: float) -> tuple[list[bool], float]:
    """Verdicts and wall time of the original harness on the same answers."""
    jobs = []
    n = len(items)
    for i, it in enumerate(items):
        nxt = items[(i + 1) % n]
        if kind == "io":
            jobs += [(it["code"], f"assert f({it['input']}) == {rhs}") for rhs in (it["output"], nxt["output"])]
        else:
            jobs += [(it["code"], f"assert f({args}) == {it['output']}") for args in (it["input"], nxt["input"])]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as ex:
        verdicts = list(ex.map(lambda j: baseline_one(j[0], j[1], timeout), jobs))
    return verdicts, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="cruxeval.jsonl")
    ap.add_argument("--n", type=int, default=0, help="use only the first N items (0: all)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="sandbox workers (ours)")
    ap.add_argument("--baseline-workers", type=int, default=os.cpu_count() or 1, help="parallel subprocesses (original)")
    ap.add_argument("--baseline-timeout", type=float, default=0.5, help="original per-answer timeout (s)")
    ap.add_argument("--baseline-site", action="store_true",
                    help="run the original's python with site imports (slower start-up, as in the paper's env)")
    ap.add_argument("--oi-timeout", type=float, default=0.5, help="our per-call ground-truth timeout (s)")
    ap.add_argument("--io-repeats", type=int, default=5, help="repeat the (fast) io scoring to time it stably")
    ap.add_argument("--group-items", type=int, default=150, help="items for the GRPO-group oi row (0: skip)")
    ap.add_argument("--group-size", type=int, default=8, help="responses per question in the GRPO-group row")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "rewards.json"))
    args = ap.parse_args()

    if args.baseline_site:
        BASELINE_FLAGS.clear()
    items = [json.loads(line) for line in open(args.data, encoding="utf-8") if line.strip()]
    if args.n:
        items = items[: args.n]
    io_q, io_r, oi_q, oi_r = build(items)
    # Same per-answer timeout as the original (0.5 s) for a like-for-like comparison; one
    # non-terminating wrong input otherwise holds a worker for the default 2 s.
    cfg = RewardConfig(prelude=PRELUDE, oi_timeout_s=args.oi_timeout)
    cores = os.cpu_count() or 1

    # ---- ours: io (no execution, one thread)
    scorer = Scorer(None, cfg)
    t0 = time.perf_counter()
    for _ in range(args.io_repeats):
        io_res = scorer.score_batch(io_q, io_r)
    io_t = (time.perf_counter() - t0) / args.io_repeats
    io_ours = [r.reward > 0 for r in io_res]

    # ---- ours: oi (ground truth in the hardened sandbox pool)
    from execverify_jax.data.sandbox import SandboxPool

    with SandboxPool(args.workers, preload=PRELOAD) as pool:
        caps = pool.capabilities
        Scorer(pool, cfg).score_batch(oi_q[:8], oi_r[:8])  # warm the workers' imports
        oi_scorer = Scorer(pool, cfg)
        t0 = time.perf_counter()
        oi_res = oi_scorer.score_batch(oi_q, oi_r)
        oi_t = time.perf_counter() - t0
        if args.group_items:
            g_q, g_r, g_jobs = build_groups(items[: args.group_items], args.group_size)
            g_scorer = Scorer(pool, cfg)
            t0 = time.perf_counter()
            g_res = g_scorer.score_batch(g_q, g_r)
            g_t = time.perf_counter() - t0
    oi_ours = [r.reward > 0 for r in oi_res]

    # ---- original harness on the same answers
    io_base, io_bt = baseline(items, "io", args.baseline_workers, args.baseline_timeout)
    oi_base, oi_bt = baseline(items, "oi", args.baseline_workers, args.baseline_timeout)

    def row(name, n, ours_t, base_t, ours_workers, ours_v, base_v):
        ours_rate, base_rate = n / ours_t, n / base_t
        agree = sum(a == b for a, b in zip(ours_v, base_v)) / n
        correct_pass = sum(ours_v[0::2]) / (n // 2)
        wrong_pass = sum(ours_v[1::2]) / (n // 2)
        return {"task": name, "answers": n, "ours_answers_per_s": ours_rate, "ours_workers": ours_workers,
                "original_answers_per_s": base_rate, "original_workers": args.baseline_workers,
                "original_answers_per_s_per_core": base_rate / min(args.baseline_workers, cores),
                "speedup": ours_rate / base_rate,
                "speedup_vs_nominal_114_per_core": ours_rate / (114.0 * min(args.baseline_workers, cores)),
                "verdict_agreement": agree,
                "ours_pass_rate_correct": correct_pass, "ours_pass_rate_wrong": wrong_pass,
                "original_pass_rate_correct": sum(base_v[0::2]) / (n // 2),
                "original_pass_rate_wrong": sum(base_v[1::2]) / (n // 2)}

    rows = [row("output prediction (io)", len(io_r), io_t, io_bt, 1, io_ours, io_base),
            row("input prediction (oi)", len(oi_r), oi_t, oi_bt, args.workers, oi_ours, oi_base)]
    if args.group_items:
        g_base, g_bt = baseline_jobs(g_jobs, args.baseline_workers, args.baseline_timeout)
        g_row = row(f"oi, GRPO groups of {args.group_size}", len(g_r), g_t, g_bt, args.workers,
                    [r.reward > 0 for r in g_res], g_base)
        # In this row the even/odd split is meaningless: report the first-of-group pass rates.
        for k in ("ours_pass_rate_correct", "ours_pass_rate_wrong", "original_pass_rate_correct",
                  "original_pass_rate_wrong"):
            g_row.pop(k)
        g_row["ours_sandbox_jobs"] = g_scorer.oi_jobs
        rows.append(g_row)
    print(f"CRUXEval items: {len(items)}   cores: {cores}   sandbox isolation: "
          f"{', '.join(sorted(k for k, v in caps.items() if v is True))}")
    print(f"{'task':24s} {'answers':>7s} {'ours/s':>10s} {'orig/s':>8s} {'speedup':>8s} {'agree':>6s} "
          f"{'pass(correct) ours/orig':>24s} {'pass(wrong) ours/orig':>22s}")
    for r in rows:
        line = (f"{r['task']:24s} {r['answers']:7d} {r['ours_answers_per_s']:10.0f} {r['original_answers_per_s']:8.1f} "
                f"{r['speedup']:7.1f}x {r['verdict_agreement']:6.3f} ")
        if "ours_pass_rate_correct" in r:
            line += (f"{r['ours_pass_rate_correct']:11.3f}/{r['original_pass_rate_correct']:.3f} "
                     f"{r['ours_pass_rate_wrong']:13.3f}/{r['original_pass_rate_wrong']:.3f}")
        print(line + f"   (vs nominal 114/s/core: {r['speedup_vs_nominal_114_per_core']:.1f}x)")
    disagree = {"io": [io_q[i]["id"] for i in range(len(io_r)) if io_ours[i] != io_base[i]],
                "oi": [oi_q[i]["id"] + (":correct" if i % 2 == 0 else ":wrong")
                       for i in range(len(oi_r)) if oi_ours[i] != oi_base[i]]}
    print(f"disagreements: io {len(disagree['io'])}, oi {len(disagree['oi'])} (first: {disagree['oi'][:6]})")
    result = {"benchmark": "rewards", "machine_cores": cores, "original_python_flags": list(BASELINE_FLAGS),
              "oi_timeout_s": args.oi_timeout, "load_average_after": os.getloadavg(), "items": len(items), "rows": rows,
              "oi_sandbox_jobs": oi_scorer.oi_jobs, "oi_cache_hits": oi_scorer.oi_cache_hits,
              "sandbox_capabilities": caps, "disagreements": disagree,
              "note": "shared 2-core machine: timings are noisy; io is scored on one thread without execution"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
