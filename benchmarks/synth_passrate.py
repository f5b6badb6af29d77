"""Offline synthesizer: speed, constraint-check rate, execution pass rate, branch coverage source.

Synthesizes `--seeds` programs per grid cell (all 186 entries x 6 levels), checks each with the
independent AST checker, runs every input in a subprocess under two hash seeds, and reports
per-level / per-group pass rates plus where input coverage came from (random draw vs z3).
Writes benchmarks/results/synth_passrate.json. Timings are noisy (shared 2-core machine).
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path

from execverify_jax.data.synth import builder, checker, exec_check, grid, inputs_z3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--n-inputs", type=int, default=3)
    ap.add_argument("--no-z3", action="store_true", help="random draws only (ablation)")
    ap.add_argument("--out", default="benchmarks/results/synth_passrate.json")
    args = ap.parse_args()
    cfg = builder.SynthConfig(use_z3=not args.no_z3)
    cells = grid.build_grid()
    cands, stats = [], inputs_z3.Stats()
    t0, c0 = time.perf_counter(), time.process_time()
    for c in cells:
        for s in range(args.seeds):
            cand, st = builder.synthesize_with_stats(c, s, args.n_inputs, cfg)
            stats.add(st)
            if cand is not None:
                cands.append(cand)
    synth_s = time.perf_counter() - t0
    synth_cpu_s = time.process_time() - c0
    t1 = time.perf_counter()
    check_bad = [c for c in cands if checker.check(c["code"], c["entry"], c["constraint"])]
    check_s = time.perf_counter() - t1
    res3 = exec_check.passes_with_coverage(cands)
    res = [(ok, why) for ok, why, _ in res3]
    cov = [c for _, _, c in res3]
    by_level, by_group, reasons = collections.defaultdict(list), collections.defaultdict(list), collections.Counter()
    for c, (ok, why) in zip(cands, res):
        by_level[c["level"]].append(ok)
        by_group[c["group"]].append(ok)
        if not ok:
            reasons[why.split(":")[0]] += 1
    n = len(cells) * args.seeds
    out = {
        "seeds_per_cell": args.seeds, "n_inputs": args.n_inputs, "use_z3": not args.no_z3,
        "candidates": n, "returned": len(cands), "synth_ms_per_candidate": 1000 * synth_s / n,
        "synth_cpu_ms_per_candidate": 1000 * synth_cpu_s / n,
        "check_ms_per_candidate": 1000 * check_s / max(1, len(cands)),
        "checker_violations": len(check_bad),
        "exec_pass_rate": sum(ok for ok, _ in res) / max(1, len(res)),
        "pass_rate_by_level": {k: sum(v) / len(v) for k, v in sorted(by_level.items())},
        "pass_rate_by_group": {k: sum(v) / len(v) for k, v in sorted(by_group.items())},
        "fail_reasons": dict(reasons.most_common()),
        "stmt_coverage_mean": sum(cov) / max(1, len(cov)),
        "programs_fully_covered": sum(1 for c in cov if c >= 1.0) / max(1, len(cov)),
        "synth_s_total": synth_s,
        "branch_goals": {"total": stats.goals, "covered_by_random_draw": stats.by_random,
                         "covered_by_z3": stats.by_z3, "uncovered": stats.uncovered,
                         "python_only_goals": stats.python_only_goals, "z3_checks": stats.z3_calls},
    }
    print(f"{'metric':34s} value")
    for k, v in out.items():
        print(f"{k:34s} {v if not isinstance(v, float) else round(v, 4)}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
