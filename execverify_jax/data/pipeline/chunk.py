"""Planning the work and running every stage on one chunk of it.

Work is planned deterministically from the config alone: the grid of (level, group, method) cells
is split into `num_shards` disjoint cell sets; each cell gets `programs_per_cell` tasks; a shard's
tasks are cut into chunks of `chunk_size`. For every task, up to `attempts` candidates are tried
(seed = hash(global seed, cell, task index, attempt)) until one passes, in this order:

    synthesize -> constraint check -> dedup (normalized AST) -> decontamination (n-gram)
    -> execution filter (sandbox pool, whole chunk at once) -> trace every input -> questions

The stage implementations (synthesis, sandbox, tracer, questions) are behind `Stages`, so tests
can drive the pipeline with hand-written programs.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol

from execverify_jax.data import dedup, records
from execverify_jax.data.pipeline import signal
from execverify_jax.data.pipeline.config import DataConfig

MAX_EXAMPLES_PER_REASON = 3


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
            # Of the passing inputs keep inputs_per_program, distinct outputs first (signal.py).
            keep = [keep[i] for i in signal.select_inputs([outputs[k] for k in keep], cfg.inputs_per_program)]
            kind = signal.degenerate([outputs[k] for k in keep])
            if kind is not None:
                p_keep = cfg.signal.keep_all_equal if kind == "all_equal" else cfg.signal.keep_all_trivial
                draw = derive_seed(cfg.seed, "degenerate", cand["seed"]) / float(1 << 63)
                if draw >= p_keep:
                    res.rejections.add(f"degenerate:{kind}", {"cell": task.info.key, "code": _short(cand["code"])})
                    continue
            runnable.append((task, dict(cand, inputs=[cand["inputs"][k] for k in keep],
                                        outputs=[outputs[k] for k in keep]), fp))

        t0 = time.perf_counter()
        serializable = []
        for task, cand, fp in runnable:
            prog = _program_record(task, cand, cfg)
            problems = _record_problems(prog, "program")
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


def _record_problems(rec: dict, kind: str) -> list[str]:
    """Schema problems of a program/question record, or ["not_json_serializable"] when it holds a
    value JSON has no type for (the writers would store its repr; a record is rejected instead).
    Text is never a problem: the writers escape lone surrogates (records.json_text)."""
    problems = records.validate(rec, kind)
    if not problems:
        try:
            json.dumps(rec)  # ensure_ascii: only types and cycles can fail here
        except (TypeError, ValueError, RecursionError):
            problems = ["not_json_serializable"]
    return problems


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
        problems = _record_problems(q, "question")
        if problems:
            rejections.add(f"malformed_question:{problems[0]}", {"program_id": prog["id"]})
            continue
        out.append(q)
    return out
