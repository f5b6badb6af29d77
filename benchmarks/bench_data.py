"""Dataset pipeline throughput: `execverify synth` (fused vs separate filter+trace), dedup and
decontamination, and the grain loader (tokenize + bucket + batch).

- synth: `pipeline.run_synth` with the real stages on `--programs` tasks spread over the whole grid
  (all levels and groups), once with the fused filter+trace (data/trace/batch.py) and once with the
  separate execution filter + tracer. Reports wall time, CPU seconds of this process and its
  (sandbox) children, programs per second and per CPU second, and the summed stage times.
- dedup: normalized-AST fingerprints per second; decontamination index build time (CRUXEval +
  REval + HumanEval when present) and checks per second.
- loader: batches and tokens per second through `loader.build_dataset` with a byte-level BPE
  trained on the generated questions, with 0 and 2 grain workers.

The machine is shared (2 cores, other jobs running): wall times are noisy; CPU seconds less so.
Writes benchmarks/results/data.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "benchmarks"


def _cpu_s() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + ch.ru_utime + ch.ru_stime


def bench_synth(n: int, fused: bool, out: Path) -> dict:
    from execverify_jax.data import pipeline

    cfg = pipeline.load_config(REPO / "configs" / "data" / "small.yaml",
                               [f"total_programs={n}", f"fused_filter_trace={str(fused).lower()}"])
    t0, c0 = time.perf_counter(), _cpu_s()
    pipeline.run_synth(cfg, out, formats=("arrayrecord", "jsonl"), progress=False)
    wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    stats = json.loads((out / "stats.json").read_text())
    return {"path": "fused filter+trace" if fused else "exec filter + separate trace", "tasks": n,
            "programs": stats["programs"], "questions": stats["questions"], "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2), "programs_per_s": round(stats["programs"] / wall, 2),
            "programs_per_cpu_s": round(stats["programs"] / cpu, 2), "stage_s": stats["timings_s"]}


def bench_dedup(programs: list[dict]) -> dict:
    from execverify_jax.data import dedup

    codes = [p["code"] for p in programs]
    t0 = time.perf_counter()
    for c in codes:
        dedup.fingerprint(c)
    fp_s = time.perf_counter() - t0
    d = dedup.Decontaminator()
    t0 = time.perf_counter()
    if (SHARED / "cruxeval.jsonl").is_file():
        d.add(dedup.load_cruxeval(SHARED / "cruxeval.jsonl"))
    if (SHARED / "DREval_data.jsonl").is_file():
        d.add(dedup.load_dreval(SHARED / "DREval_data.jsonl"))
    d.add(dedup.load_humaneval())
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    hits = sum(d.check(c) is not None for c in codes)
    check_s = time.perf_counter() - t0
    return {"programs": len(codes), "fingerprints_per_s": round(len(codes) / fp_s, 1),
            "index_programs": len(d), "index_build_s": round(build_s, 3),
            "checks_per_s": round(len(codes) / check_s, 1), "contaminated": hits}


def bench_loader(data_dir: Path, tok_dir: Path, workers: int) -> dict:
    from execverify_jax.data import loader
    from execverify_jax.data.tokenizer import Tokenizer

    tok = Tokenizer(tok_dir)
    cfg = loader.LoaderConfig(batch_size=8, buckets=(512, 1024, 2048, 4096), seed=0, num_epochs=3,
                              worker_count=workers)
    t0 = time.perf_counter()
    it = loader.make_loader(data_dir, tok, cfg)
    n_batches = tokens = padded = 0
    for b in it:
        n_batches += 1
        tokens += int(b["prompt_len_B"].sum())
        padded += b["prompt_BP"].size
    wall = time.perf_counter() - t0
    return {"workers": workers, "batches": n_batches, "wall_s": round(wall, 2),
            "batches_per_s": round(n_batches / wall, 1), "tokens_per_s": round(tokens / wall),
            "padding_fraction": round(1 - tokens / max(padded, 1), 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--programs", type=int, default=300)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "data.json"))
    args = ap.parse_args()
    from execverify_jax.data import loader, records

    loader.mark_absl_flags_parsed()
    results: dict = {"load_average_1m": os.getloadavg()[0], "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_p = Path(tmp)
        results["synth"] = [bench_synth(args.programs, True, tmp_p / "fused"),
                            bench_synth(args.programs, False, tmp_p / "separate")]
        programs = list(records.read_jsonl(tmp_p / "fused" / "programs.jsonl"))
        results["dedup"] = bench_dedup(programs)
        from execverify_jax.data.tokenizer_train import train_bpe

        tok_dir = train_bpe([tmp_p / "fused" / "questions.jsonl"], tmp_p / "tok", 2000)
        results["loader"] = [bench_loader(tmp_p / "fused", tok_dir, w) for w in (0, 2)]
    print(f"{'synth path':<32} {'programs':>8} {'wall s':>7} {'cpu s':>7} {'prog/s':>7} {'prog/cpu s':>10}")
    for r in results["synth"]:
        print(f"{r['path']:<32} {r['programs']:>8} {r['wall_s']:>7} {r['cpu_s']:>7} {r['programs_per_s']:>7} "
              f"{r['programs_per_cpu_s']:>10}")
    d = results["dedup"]
    print(f"\ndedup: {d['fingerprints_per_s']} fingerprints/s; decontam index of {d['index_programs']} programs "
          f"built in {d['index_build_s']} s, {d['checks_per_s']} checks/s, {d['contaminated']} flagged")
    print(f"\n{'loader workers':<15} {'batches':>8} {'wall s':>7} {'batch/s':>8} {'tokens/s':>9} {'pad frac':>8}")
    for r in results["loader"]:
        print(f"{r['workers']:<15} {r['batches']:>8} {r['wall_s']:>7} {r['batches_per_s']:>8} {r['tokens_per_s']:>9} "
              f"{r['padding_fraction']:>8}")
    print(f"\n(load average {results['load_average_1m']:.1f} on {results['cores']} cores: timings are noisy)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
