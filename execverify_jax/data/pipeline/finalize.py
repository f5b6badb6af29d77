"""Merging the complete chunks of every shard into the dataset.

When every chunk of every shard is complete, `finalize` (under a file lock, idempotent) drops
cross-shard duplicates, assigns the train/held-out split (systematic sampling over records sorted
by level, group, method: stratified and seeded), and writes the dataset files, `manifest.json`
and `stats.json`.
"""

from __future__ import annotations

import collections
import itertools
import platform
import random
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from execverify_jax import config_loader as config_lib
from execverify_jax.data import dedup, records
from execverify_jax.data.pipeline import signal
from execverify_jax.data.pipeline.chunk import Rejections, Stages, _short, derive_seed
from execverify_jax.data.pipeline.config import FORMAT_VERSION, SPLITS, DataConfig, SplitConfig, config_hash
from execverify_jax.data.pipeline.files import _all_chunk_names, _locked, chunk_paths, is_complete

# ----------------------------------------------------------------------------------- the split
def assign_splits(programs: list[dict], split_cfg: SplitConfig) -> dict[str, str]:
    """Program id -> 'train' | 'heldout'.

    Systematic sampling over programs sorted by (level, group, method, seeded hash of the id):
    every 1/fraction-th program from a seeded offset is held out. Each stratum therefore gets its
    proportional share up to rounding, the total is round(fraction * N) +- 1, and the result does
    not depend on sharding or chunking (reference §9 items 12 and 16).
    """
    out = {p["id"]: "train" for p in programs}
    f = split_cfg.heldout_fraction
    if f <= 0 or not programs:
        return out
    order = sorted(programs, key=lambda p: (p["level"], p["group"], p["method"], derive_seed(split_cfg.seed, p["id"])))
    step = 1.0 / f
    offset = random.Random(split_cfg.seed).random() * step
    pos = offset
    while pos < len(order):
        out[order[int(pos)]["id"]] = "heldout"
        pos += step
    return out


# ------------------------------------------------------------------------------------ finalize
def _file_groups(items: Iterable[dict], size: int) -> Iterator[list[dict]]:
    it = iter(items)
    while True:
        group = list(itertools.islice(it, size))
        if not group:
            return
        yield group


def _write_rolling(out_dir: Path, stem: str, items: Iterable[dict], size: int) -> list[str]:
    """Writes `stem-00000.arrayrecord`, `stem-00001...` of at most `size` records; [] writes one empty file."""
    names = []
    for k, group in enumerate(_file_groups(items, size)):
        name = f"{stem}-{k:05d}.arrayrecord"
        records.write_arrayrecord(out_dir / name, group)
        names.append(name)
    if not names:  # an empty split still gets a (valid, empty) file so readers need no special case
        name = f"{stem}-00000.arrayrecord"
        records.write_arrayrecord(out_dir / name, [])
        names.append(name)
    return names


def versions(stages: Stages | None = None) -> dict[str, str]:
    """Versions recorded in the manifest."""
    import numpy

    out = {"python": platform.python_version(), "numpy": numpy.__version__, "format_version": str(FORMAT_VERSION)}
    try:
        from importlib.metadata import version

        for pkg in ("execverify-jax", "array-record", "z3-solver"):
            try:
                out[pkg] = version(pkg)
            except Exception:
                pass
    except ImportError:
        pass
    if stages is not None:
        out.update(stages.versions())
    return out


def finalize(out_dir: str | Path, cfg: DataConfig, stages: Stages, num_shards: int,
             formats: tuple[str, ...] = ("arrayrecord",)) -> dict:
    """Merges complete chunks into the dataset files, manifest.json and stats.json (idempotent)."""
    out_dir = Path(out_dir)
    with _locked(out_dir):
        names = _all_chunk_names(stages, cfg, num_shards)
        missing = [n for n in names if not is_complete(out_dir, n)]
        if missing:
            raise RuntimeError(f"cannot finalize {out_dir}: {len(missing)} chunks missing, e.g. {missing[:3]}")
        manifest_path = out_dir / "manifest.json"
        if manifest_path.is_file():
            old = records.read_json(manifest_path)
            same = old.get("status") == "complete" and old.get("config_hash") == config_hash(cfg) \
                and [c["name"] for c in old.get("chunks", [])] == names
            if same and set(old.get("formats", [])) >= set(formats):
                return old
            if same:  # only a new format was asked for: keep the ones already written
                formats = tuple(sorted(set(formats) | set(old.get("formats", []))))
        return _finalize_locked(out_dir, cfg, stages, num_shards, names, formats)


def _finalize_locked(out_dir: Path, cfg: DataConfig, stages: Stages, num_shards: int, names: list[str],
                     formats: tuple[str, ...]) -> dict:
    t0 = time.perf_counter()
    rejections = Rejections()
    read_errors = records.ReadErrors()
    metas = [records.read_json(chunk_paths(out_dir, n)["meta"]) for n in names]
    failed_tasks = sum(m["failed_tasks"] for m in metas)
    attempts = sum(m["attempts"] for m in metas)
    planned = sum(m["tasks"] for m in metas)
    timings: collections.Counter = collections.Counter()
    sources: dict[str, Any] = {}
    for m in metas:
        sources.update(m.get("decontam_sources", {}))
        rejections.merge(m["rejections"]["counts"], m["rejections"]["examples"])
        timings.update(m["timings"])

    # Pass 1: programs in canonical order; drop cross-shard duplicates and repeated ids.
    programs: list[dict] = []
    fp_owner: dict[str, str] = {}
    ids: set[str] = set()
    for n, meta in zip(names, metas):
        fps = dict((pid, fp) for pid, fp in meta["fingerprints"])
        for prog in records.read_arrayrecord(chunk_paths(out_dir, n)["programs"], "program", read_errors):
            if prog["id"] in ids:
                rejections.add("duplicate_id", {"program_id": prog["id"]})
                continue
            fp = fps.get(prog["id"]) or dedup.fingerprint(prog["code"], cfg.dedup.normalize_constants)
            if cfg.dedup.enabled and fp in fp_owner:
                rejections.add("duplicate", {"program_id": prog["id"], "code": _short(prog["code"]),
                                             "duplicate_of": fp_owner[fp]})
                continue
            fp_owner[fp] = prog["id"]
            ids.add(prog["id"])
            programs.append(prog)
    split_of = assign_splits(programs, cfg.split)
    for prog in programs:
        prog["split"] = split_of[prog["id"]]

    def questions_iter() -> Iterator[dict]:
        for n in names:
            for q in records.read_arrayrecord(chunk_paths(out_dir, n)["questions"], "question", read_errors):
                split = split_of.get(q["program_id"])
                if split is None:
                    continue  # its program was dropped above
                q["split"] = split
                yield q

    files: dict[str, Any] = {}
    new_files: set[str] = set()
    if "arrayrecord" in formats:
        ar: dict[str, dict[str, list[str]]] = {"programs": {}, "questions": {}}
        for split in SPLITS:
            ar["programs"][split] = _write_rolling(out_dir, f"programs-{split}", (p for p in programs if p["split"] == split),
                                                   cfg.records_per_file)
            ar["questions"][split] = _write_rolling(out_dir, f"questions-{split}",
                                                    (q for q in questions_iter() if q["split"] == split), cfg.records_per_file)
        files["arrayrecord"] = ar
        new_files.update(f for kind in ar.values() for lst in kind.values() for f in lst)
    q_counts: collections.Counter = collections.Counter()
    q_by_split: collections.Counter = collections.Counter()
    q_per_program: collections.Counter = collections.Counter()
    sub_counts: collections.Counter = collections.Counter()
    for q in questions_iter():
        q_counts[q["kind"]] += 1
        subs = q["answer"].get("subquestions")
        if isinstance(subs, list):
            sub_counts.update(str(sq.get("kind")) + (":nil" if sq.get("nil") else "") for sq in subs if isinstance(sq, dict))
        q_by_split[q["split"]] += 1
        q_per_program[q["program_id"]] += 1
    if "jsonl" in formats:
        records.write_jsonl(out_dir / "programs.jsonl", programs)
        records.write_jsonl(out_dir / "questions.jsonl", questions_iter())
        files["jsonl"] = {"programs": "programs.jsonl", "questions": "questions.jsonl"}
        new_files.update({"programs.jsonl", "questions.jsonl"})
    # A previous finalize with other settings may have left files this one does not list.
    for p in out_dir.iterdir():
        if p.is_file() and p.name not in new_files and (
                (p.name.startswith(("programs-", "questions-")) and p.name.endswith(".arrayrecord"))
                or p.name in ("programs.jsonl", "questions.jsonl")):
            p.unlink()

    def count_by(key: str) -> dict:
        return dict(sorted(collections.Counter(str(p[key]) for p in programs).items()))

    per_prog = [q_per_program.get(p["id"], 0) for p in programs]
    stats = {
        "programs": len(programs),
        "questions": sum(q_counts.values()),
        "planned_tasks": planned,
        "failed_tasks": failed_tasks,
        "attempts": attempts,
        "yield": round(len(programs) / planned, 4) if planned else 0.0,
        "programs_by_split": count_by("split"),
        "questions_by_split": dict(sorted(q_by_split.items())),
        "programs_by_level": count_by("level"),
        "programs_by_group": count_by("group"),
        "programs_by_method": count_by("method"),
        "questions_by_kind": dict(sorted(q_counts.items())),
        "subquestions_by_kind": dict(sorted(sub_counts.items())),
        "questions_per_program": {
            "min": min(per_prog, default=0), "max": max(per_prog, default=0),
            "mean": round(sum(per_prog) / len(per_prog), 3) if per_prog else 0.0,
            "histogram": dict(sorted(collections.Counter(per_prog).items())),
        },
        "inputs_per_program": dict(sorted(collections.Counter(len(p["inputs"]) for p in programs).items())),
        # Programs whose outputs give input/output prediction a shortcut (data/pipeline/signal.py).
        "outputs": signal.signal_stats(programs),
        "rejections": rejections.to_dict(),
        "dropped": {
            "duplicates": rejections.counts.get("duplicate", 0),
            "contaminated": {k.split(":", 1)[1]: v for k, v in rejections.counts.items() if k.startswith("contaminated:")},
            "decontamination_sources": sources,
        },
        "malformed_records_skipped": dict(read_errors),
        "timings_s": {k: round(v, 3) for k, v in sorted(timings.items())},
    }
    stats["timings_s"]["finalize_s"] = round(time.perf_counter() - t0, 3)
    records.write_json(out_dir / "stats.json", stats)
    manifest = {
        "status": "complete",
        "format_version": FORMAT_VERSION,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config_hash": config_hash(cfg),
        "config": config_lib.to_dict(cfg),
        "seeds": {"global": cfg.seed, "split": cfg.split.seed},
        "num_shards": num_shards,
        "formats": sorted(set(formats)),
        "chunks": [{"name": n, "programs": m["programs"], "questions": m["questions"], "tasks": m["tasks"]}
                   for n, m in zip(names, metas)],
        "completed_chunks": names,
        "counts": {"programs": stats["programs_by_split"], "questions": stats["questions_by_split"]},
        "files": files,
        "versions": versions(stages),
    }
    records.write_json(out_dir / "manifest.json", manifest)
    return manifest
