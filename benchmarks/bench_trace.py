"""Filter + trace throughput on the CRUXEval programs: ours (sandboxed) vs the original's approach.

Candidate in; filtered, traced program out. Both pipelines run in the same process, on the same
programs, with the same number of workers:

- original (reference sections 2.5 and 3): a thread pool runs, per program, two fresh
  `python -c` interpreters (`print(repr(f(args)))`, then `assert f(args) == <result>`, 0.5 s
  timeout each), then an in-process `sys.settrace` tracer with no isolation records every event
  with repr'd (200-char truncated) locals;
- ours: `exec_filter.filter_programs` (two sandbox runs per program on two workers with different
  hash seeds, literal round-trip check) then `trace_many_in_sandbox` for the kept programs (one
  more sandbox job each), all in the `SandboxPool`;
- ours, fused (on unless `--no-fused`): `trace_filter` (execverify_jax/data/trace/batch.py): the
  trace doubles as the filter run; batches of programs per sandbox job, run twice on two workers
  (hash seeds) and compared trace-for-trace (the second run sends digests). One row per
  `isolation` mode: a forked, confined process per program in both runs (`each`), in the kept
  run only (`first`, the default), or programs sharing the job process (`none`; still sandboxed;
  the second run goes in reverse order).

Throughput is reported per core two ways: by wall-clock (programs / (wall s x workers)) and by CPU
time actually consumed (programs / CPU s of this process and all its children, minus the CPU of
starting and stopping an idle sandbox pool, i.e. steady state), which is much less sensitive to
other load on a shared machine. A second baseline starts its interpreters lean (`python -I -S`,
no site-packages scan), the cheapest the original's design can be. Writes
benchmarks/results/trace.json.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "benchmarks" / "cruxeval.jsonl"


def _cpu_s() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + ch.ru_utime + ch.ru_stime


# ----------------------------------------------------------------------------- the original
def _original_filter_one(code: str, entry: str, args: str, flags: tuple[str, ...] = ()) -> str | None:
    """filter_by_execution.py: run + repr, then an assert re-run (two interpreter start-ups)."""
    try:
        r = subprocess.run([sys.executable, *flags, "-c", f"{code}\nprint(repr({entry}({args})))"],
                           capture_output=True, text=True, timeout=0.5)
        if r.returncode != 0:
            return None
        result = r.stdout.strip()
        r2 = subprocess.run([sys.executable, *flags, "-c", f"{code}\nassert {entry}({args}) == {result}"],
                            capture_output=True, text=True, timeout=0.5)
        return result if r2.returncode == 0 else None
    except subprocess.TimeoutExpired:
        return None


def _original_trace(code: str, entry: str, args: str) -> list[dict]:
    """extract_trace.py: in-process settrace, events with locals repr'd and truncated to 200 chars."""
    sentinel = "<original-trace>"
    tree = ast.parse(f"{code}\n\n{entry}({args})")
    last = tree.body[-1]
    tree.body[-1] = ast.Assign(targets=[ast.Name("__RESULT__", ast.Store())], value=last.value)
    ast.fix_missing_locations(tree)
    compiled = compile(tree, sentinel, "exec")
    events: list[dict] = []

    def rep(v: object) -> str:
        try:
            s = repr(v)
        except Exception:  # noqa: BLE001
            s = "<error>"
        return s if len(s) <= 200 else s[:200] + "...<truncated>"

    def tracer(frame, event, arg):  # noqa: ANN001, ANN202
        if frame.f_code.co_filename != sentinel or frame.f_code.co_name == "<module>":
            return tracer
        ev = {"event": event, "func": frame.f_code.co_name, "line_no": frame.f_lineno,
              "frame_id": id(frame)}
        if event in ("call", "line"):
            ev["locals"] = {k: rep(v) for k, v in frame.f_locals.items()}
        elif event == "return":
            ev["return"] = rep(arg)
        elif event == "exception":
            ev["exception"] = {"type": arg[0].__name__, "value": rep(arg[1])}
        events.append(ev)
        return tracer

    ns: dict = {}
    sys.settrace(tracer)
    try:
        exec(compiled, ns)  # noqa: S102 - trusted benchmark inputs (CRUXEval)
        events.append({"event": "program_end", "success": True})
    except Exception:  # noqa: BLE001
        events.append({"event": "program_end", "success": False})
    finally:
        sys.settrace(None)
    return events


def pool_lifecycle_cpu(workers: int, preload: tuple[str, ...]) -> float:
    """CPU seconds of starting and stopping an idle pool (worker start-up), to report steady state."""
    from execverify_jax.data.sandbox import SandboxPool

    cpu0 = _cpu_s()
    with SandboxPool(workers, preload=preload):
        pass
    return _cpu_s() - cpu0


def bench_original(rows: list[dict], workers: int, flags: tuple[str, ...] = ()) -> dict:
    cpu0, t0 = _cpu_s(), time.perf_counter()
    with ThreadPoolExecutor(workers) as ex:
        results = list(ex.map(lambda r: _original_filter_one(r["code"], "f", r["input"], flags), rows))
    t_filter = time.perf_counter() - t0
    t1 = time.perf_counter()
    n_events = 0
    for r, res in zip(rows, results):
        if res is not None:
            n_events += len(_original_trace(r["code"], "f", r["input"]))
    t_trace = time.perf_counter() - t1
    wall, cpu = time.perf_counter() - t0, _cpu_s() - cpu0
    kept = sum(r is not None for r in results)
    # the filter used `workers` cores, the in-process trace one core
    core_s = t_filter * workers + t_trace
    name = "original (2x python -c + in-process settrace, no isolation)"
    if flags:
        name = f"original, lean interpreter (python {' '.join(flags)} -c)"
    return {"pipeline": name,
            "programs": len(rows), "kept": kept, "events": n_events, "wall_s": wall,
            "filter_wall_s": t_filter, "trace_wall_s": t_trace, "cpu_s": cpu,
            "per_core_wall": len(rows) / core_s, "per_core_cpu": len(rows) / cpu,
            "ms_per_program_core": 1000 * core_s / len(rows)}


# ----------------------------------------------------------------------------- ours
def bench_ours(rows: list[dict], workers: int) -> dict:
    from execverify_jax.data.exec_filter import Candidate, filter_programs
    from execverify_jax.data.sandbox import RUN_CALL, SandboxPool
    from execverify_jax.data.trace.tracer import TARGET, trace_many_in_sandbox, usable

    cands = [Candidate(r["code"], "f", r["input"]) for r in rows]
    with SandboxPool(workers, preload=(RUN_CALL, TARGET)) as pool:
        cpu0, t0 = _cpu_s(), time.perf_counter()
        results = filter_programs(pool, cands)
        kept = [c for c, res in zip(cands, results) if res.kept]
        traces = trace_many_in_sandbox(pool, [(c.code, c.entry, c.args) for c in kept])
        wall = time.perf_counter() - t0
    # the workers are reaped at pool close, so their CPU time is counted, start-up included;
    # subtract an idle pool's start/stop CPU to get the steady-state cost
    cpu = _cpu_s() - cpu0 - pool_lifecycle_cpu(workers, (RUN_CALL, TARGET))
    ok = sum(usable(t) for t in traces)
    return {"pipeline": "ours (exec_filter: 2 sandbox runs + sandboxed trace)", "programs": len(rows),
            "kept": len(kept), "traced": ok, "wall_s": wall, "cpu_s": cpu,
            "per_core_wall": len(rows) / (wall * workers), "per_core_cpu": len(rows) / cpu,
            "ms_per_program_core": 1000 * wall * workers / len(rows)}


def bench_fused(rows: list[dict], workers: int, batch: int, isolation: str) -> dict:
    from execverify_jax.data.sandbox import SandboxPool
    from execverify_jax.data.trace.batch import BATCH_TARGET, trace_filter

    with SandboxPool(workers, preload=(BATCH_TARGET,)) as pool:
        cpu0, t0 = _cpu_s(), time.perf_counter()
        results = trace_filter(pool, [(r["code"], "f", r["input"]) for r in rows], batch_size=batch,
                               isolation=isolation)
        wall = time.perf_counter() - t0
    cpu = _cpu_s() - cpu0 - pool_lifecycle_cpu(workers, (BATCH_TARGET,))
    kept = sum(r.kept for r in results)
    how = {"each": "a process per program, both runs",
           "first": "a process per program for the kept run",
           "none": "programs share the job process"}[isolation]
    return {"pipeline": f"ours fused, batches of {batch}, {how}", "isolation": isolation,
            "programs": len(rows), "kept": kept, "traced": kept, "wall_s": wall, "cpu_s": cpu,
            "per_core_wall": len(rows) / (wall * workers), "per_core_cpu": len(rows) / cpu,
            "ms_per_program_core": 1000 * wall * workers / len(rows)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="cruxeval.jsonl")
    ap.add_argument("--limit", type=int, default=300, help="programs to use (default 300)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="workers (default: cores)")
    ap.add_argument("--batch", type=int, default=32, help="programs per sandbox job in the fused pipeline")
    ap.add_argument("--no-fused", action="store_true", help="skip the fused pipeline")
    ap.add_argument("--no-lean", action="store_true",
                    help="skip the second baseline with a lean interpreter start (python -I -S)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "trace.json")
    args = ap.parse_args(argv)
    rows = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()][: args.limit]
    print(f"{len(rows)} CRUXEval programs, {args.workers} workers, load average {os.getloadavg()[0]:.2f}")
    res = [bench_original(rows, args.workers)]
    if not args.no_lean:
        res.append(bench_original(rows, args.workers, ("-I", "-S")))
    res.append(bench_ours(rows, args.workers))
    if not args.no_fused:
        for isolation in ("each", "first", "none"):
            res.append(bench_fused(rows, args.workers, args.batch, isolation))
    base = res[0]
    lean = res[1] if not args.no_lean else base
    print(f"{'pipeline':<64} {'kept':>5} {'wall s':>7} {'prog/s/core':>12} {'(cpu)':>7} "
          f"{'x orig':>7} {'(cpu)':>6} {'x lean':>7} {'(cpu)':>6}")
    for r in res:
        r["speedup_wall"] = r["per_core_wall"] / base["per_core_wall"]
        r["speedup_cpu"] = r["per_core_cpu"] / base["per_core_cpu"]
        r["speedup_wall_vs_lean"] = r["per_core_wall"] / lean["per_core_wall"]
        r["speedup_cpu_vs_lean"] = r["per_core_cpu"] / lean["per_core_cpu"]
        print(f"{r['pipeline'][:64]:<64} {r['kept']:>5} {r['wall_s']:>7.2f} {r['per_core_wall']:>12.1f} "
              f"{r['per_core_cpu']:>7.1f} {r['speedup_wall']:>6.1f}x {r['speedup_cpu']:>5.1f}x "
              f"{r['speedup_wall_vs_lean']:>6.1f}x {r['speedup_cpu_vs_lean']:>5.1f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"programs": len(rows), "workers": args.workers,
                                    "load_average_1m": os.getloadavg()[0], "results": res}, indent=2))
    print(f"wrote {args.out}  (shared machine: timings are noisy; compare rows of one run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
