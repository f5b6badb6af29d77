"""The output directory's layout: its lock, each chunk's files, and when a chunk is complete.

A finished chunk is written under `OUT/chunks/` (temp name + atomic rename; its `.json` metadata
is written last and marks it complete). A restarted run skips complete chunks, so an interrupted
run finishes with exactly the files an uninterrupted one writes.
"""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path
from typing import Any, Iterator

from execverify_jax.data import records
from execverify_jax.data.pipeline.chunk import ChunkResult, Stages, chunk_name, plan_shard
from execverify_jax.data.pipeline.config import DataConfig


@contextlib.contextmanager
def _locked(out_dir: Path) -> Iterator[None]:
    with open(out_dir / ".lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def chunk_paths(out_dir: Path, name: str) -> dict[str, Path]:
    """The files of one chunk; `meta` is written last and marks the chunk complete."""
    d = out_dir / "chunks"
    return {"programs": d / f"{name}.programs.arrayrecord", "questions": d / f"{name}.questions.arrayrecord",
            "meta": d / f"{name}.json"}


def is_complete(out_dir: Path, name: str) -> bool:
    """A chunk is complete when its metadata and both record files exist."""
    return all(p.is_file() for p in chunk_paths(out_dir, name).values())


def _write_chunk(out_dir: Path, name: str, shard_index: int, chunk_index: int, res: ChunkResult,
                 num_tasks: int, decontam_sources: dict[str, Any]) -> None:
    paths = chunk_paths(out_dir, name)
    records.write_arrayrecord(paths["programs"], res.programs)
    records.write_arrayrecord(paths["questions"], res.questions)
    records.write_json(paths["meta"], {
        "name": name, "shard": shard_index, "chunk": chunk_index, "tasks": num_tasks,
        "programs": len(res.programs), "questions": len(res.questions), "failed_tasks": res.failed_tasks,
        "attempts": res.attempts, "fingerprints": [[p["id"], fp] for p, fp in zip(res.programs, res.fingerprints)],
        "rejections": res.rejections.to_dict(), "timings": res.timings, "decontam_sources": decontam_sources,
    })


def _all_chunk_names(stages: Stages, cfg: DataConfig, num_shards: int) -> list[str]:
    names = []
    for s in range(num_shards):
        names.extend(chunk_name(s, i) for i in range(len(plan_shard(stages, cfg, s, num_shards))))
    return names
