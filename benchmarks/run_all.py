"""Collects every benchmark result into benchmarks/results/all.json and prints a Markdown table.

    python benchmarks/run_all.py            # collect the existing results/*.json only
    python benchmarks/run_all.py --run      # run every benchmarks/*.py first (with --quick when
                                            # the script has it), then the demo, the demo policy's
                                            # evaluation on every benchmark, and the eval harness
                                            # self-checks, then collect

Each script writes its own results/<name>.json; this file only runs them (one at a time, each
under a timeout, failures recorded and never fatal) and gathers their JSON with the wall time
of every run. Timings on a shared machine are noisy: the table says where they were taken.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
RESULTS = BENCH / "results"
SHARED = Path(os.environ.get("EXECVERIFY_SHARED_DATA", REPO.parent / "shared" / "data")) / "benchmarks"
SKIP = {"run_all.py"}
DEMO_DIR = REPO / "demo_out"  # git-ignored; the demo's report and exported policy stay there


def scripts() -> list[Path]:
    """Every benchmark script (benchmarks/*.py except this one), in name order."""
    return sorted(p for p in BENCH.glob("*.py") if p.name not in SKIP)


def _has_flag(script: Path, flag: str) -> bool:
    try:
        out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                             timeout=120, cwd=REPO)
    except subprocess.TimeoutExpired:
        return False
    return flag in out.stdout


def run_script(cmd: list[str], timeout: float) -> dict:
    """Runs one command; returns {cmd, rc, wall_s, tail} (rc None on timeout)."""
    t0 = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
        rc, tail = out.returncode, (out.stdout + out.stderr)[-1500:]
    except subprocess.TimeoutExpired as exc:
        rc, tail = None, f"timed out after {timeout} s: {str(exc.stdout or '')[-500:]}"
    return {"cmd": " ".join(cmd[1:]), "rc": rc, "wall_s": round(time.perf_counter() - t0, 2), "tail": tail}


def run_all(timeout: float, only: list[str] | None) -> dict:
    """Runs the scripts, the demo and the eval self-checks; returns their run records."""
    runs: dict[str, dict] = {}
    for script in scripts():
        if only and script.stem not in only:
            continue
        cmd = [sys.executable, str(script)] + (["--quick"] if _has_flag(script, "--quick") else [])
        print(f"[run_all] {' '.join(cmd[1:])}", flush=True)
        runs[script.stem] = run_script(cmd, timeout)
    if not only or "demo" in only:
        demo = [sys.executable, "-m", "execverify_jax", "demo", "--out", str(DEMO_DIR)]
        print("[run_all] demo", flush=True)
        runs["demo"] = run_script(demo, timeout)
        if runs["demo"]["rc"] == 0 and (DEMO_DIR / "hf").is_dir():
            runs.update(demo_policy_evals(DEMO_DIR, timeout))
    if not only or "eval" in only:
        runs.update(eval_self_checks(timeout))
    return runs


def _eval_cases(extra: list[tuple[str, Path | None]] = ()) -> list[tuple[str, Path | None]]:
    cases = [("cruxeval-o", SHARED / "cruxeval.jsonl"), ("cruxeval-i", SHARED / "cruxeval.jsonl"),
             ("reval-ic", SHARED), ("humaneval", None), *extra]
    return [(n, d) for n, d in cases if d is None or d.exists()]


def run_evals(cases: list[tuple[str, Path | None]], mode: list[str], key: str, timeout: float,
              reval_limit: int | None = None) -> dict:
    """`execverify eval <mode>` on each (benchmark, data) case; records wall time and the
    headline metrics of its results.json under `eval_<key>_<benchmark>`."""
    out = {}
    tmp = tempfile.TemporaryDirectory(prefix="run_all_eval_")  # samples.jsonl can be tens of MB
    for name, data in cases:
        folder = Path(tmp.name) / name
        cmd = [sys.executable, "-m", "execverify_jax", "eval", "--benchmark", name, *mode, "--out", str(folder)]
        if data is not None:
            cmd += ["--data", str(data)]
        if reval_limit and name.startswith("reval"):
            cmd += ["--limit", str(reval_limit)]
        print(f"[run_all] eval {name} {' '.join(mode)}", flush=True)
        rec = run_script(cmd, timeout)
        res_file = folder / "results.json"
        if rec["rc"] == 0 and res_file.is_file():
            res = json.loads(res_file.read_text())
            rec["result"] = {"tasks": {t: {k: m[k] for k in ("items", "accuracy")} for t, m in res["tasks"].items()},
                             "grading_s": round(res["seconds"]["grading"], 2),
                             "benchmark_metrics": res.get("benchmark_metrics", {}),
                             "scoring": res.get("scoring", {})}  # official and strict accuracy
        out[f"eval_{key}_{name}"] = rec
    tmp.cleanup()
    return out


def demo_policy_evals(demo_dir: Path, timeout: float) -> dict:
    """The demo's exported policy on every benchmark (greedy, as the paper), plus its own held-out
    synthetic questions; REval limited to its first 100 (program, input) pairs on CPU."""
    cases = _eval_cases([("synthetic", demo_dir / "data")])
    return run_evals(cases, ["--model", str(demo_dir / "hf"), "--max-new-tokens", "192"], "demo_policy",
                     timeout, reval_limit=100)


def eval_self_checks(timeout: float) -> dict:
    """`execverify eval --oracle` on the shared benchmarks: grading wall time and the oracle score
    (100% wherever a literal answer exists; a drop means the harness or its ground truth broke)."""
    return run_evals(_eval_cases(), ["--oracle"], "oracle", timeout)


def _leaves(obj: object, prefix: str = "", depth: int = 0) -> list[tuple[str, object]]:
    if isinstance(obj, dict) and depth < 3:
        out = []
        for k, v in obj.items():
            out += _leaves(v, f"{prefix}{k}." if not prefix else f"{prefix}{k}.", depth + 1)
        return out
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return [(prefix.rstrip("."), obj)]
    return []


def collect() -> dict:
    """Every results/*.json (except all.json) keyed by file stem."""
    found = {}
    for p in sorted(RESULTS.glob("*.json")):
        if p.name == "all.json":
            continue
        try:
            found[p.stem] = {"file": str(p.relative_to(REPO)), "modified": dt.datetime.fromtimestamp(
                p.stat().st_mtime, dt.timezone.utc).isoformat(), "data": json.loads(p.read_text())}
        except (ValueError, OSError) as exc:
            found[p.stem] = {"file": str(p.relative_to(REPO)), "error": str(exc)}
    return found


def table(all_: dict) -> str:
    """A Markdown summary: one row per result file / run (first numeric leaves as key=value)."""
    lines = [f"Host: {all_['host']['machine']}, {all_['host']['cpus']} CPUs, load {all_['host']['load_1m']:.2f} "
             "(shared machine: timings are noisy)", "",
             "| result | run wall (s) | rc | headline numbers |", "|---|---|---|---|"]
    # A script `bench_x.py` may write results/x.json or results/bench_x.json.
    stem_of = {k: (k if k in all_["results"] else k.removeprefix("bench_")) for k in all_["runs"]}
    run_of = {v: all_["runs"][k] for k, v in stem_of.items()}
    for name in sorted(set(all_["results"]) | set(run_of)):
        res = all_["results"].get(name, {})
        run = run_of.get(name, {})
        leaves = _leaves(res.get("data", run.get("result", {})))[:6]
        nums = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in leaves)
        lines.append(f"| {name} | {run.get('wall_s', '')} | {run.get('rc', '')} | {nums or res.get('error', '')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="store_true", help="run the benchmark scripts first")
    ap.add_argument("--only", nargs="*", default=None, help="script stems to run (and 'demo', 'eval')")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per script")
    ap.add_argument("--out", type=Path, default=RESULTS / "all.json")
    args = ap.parse_args(argv)
    previous = {}
    if args.out.is_file():
        try:
            previous = json.loads(args.out.read_text()).get("runs", {})
        except ValueError:
            previous = {}
    runs = {**previous, **run_all(args.timeout, args.only)} if args.run else previous
    all_ = {"created": dt.datetime.now(dt.timezone.utc).isoformat(),
            "host": {"machine": platform.platform(), "python": platform.python_version(),
                     "cpus": os.cpu_count(), "load_1m": os.getloadavg()[0]},
            "runs": runs, "results": collect()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(all_, indent=2, default=str))
    print(table(all_))
    return 0


if __name__ == "__main__":
    sys.exit(main())
