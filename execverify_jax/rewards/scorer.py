"""Scoring at scale: `Scorer(pool, cfg).submit(question, response) -> Future[RewardResult]`.

Pure answers (io_mixed) are scored in the calling thread (microseconds each) and come back as
already-completed futures. Input prediction and code generation need the sandbox pool: the
futures resolve when the pool's jobs do, so a trainer can submit a whole batch, go back to
generating, and collect rewards later. Every result depends only on its own (question, response)
pair, never on the pool size or completion order. Identical ground-truth runs of input
prediction answers (same program, same canonical literal arguments) share one sandbox job.
"""

from __future__ import annotations

import collections
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from execverify_jax.rewards import codegen, whitebox
from execverify_jax.rewards.config import RewardConfig
from execverify_jax.rewards.result import RewardResult
from execverify_jax.data import safe_codec
from execverify_jax.rewards.sandboxed import GROUND_TRUTH_MANY_TARGET, TESTS_TARGET
from execverify_jax.rewards.whitebox import RecordError

PRELOAD = (GROUND_TRUTH_MANY_TARGET, TESTS_TARGET)  # pass to SandboxPool(preload=...) to skip first-use imports
LAYOUTS = ("io_mixed", "oi", "codegen")


def answer_of(question: dict) -> dict:
    """The `answer` record of a question record (or the answer record itself); raises RecordError."""
    if not isinstance(question, dict):
        raise RecordError(f"question must be a mapping, got {type(question).__name__}")
    answer = question.get("answer", question) if "layout" not in question else question
    if not isinstance(answer, dict) or answer.get("layout") not in LAYOUTS:
        raise RecordError(f"answer.layout must be one of {LAYOUTS}, got {answer.get('layout') if isinstance(answer, dict) else answer!r:.60}")
    return answer


def validate(question: dict) -> dict:
    """Checks a question record against the answer schema; returns its answer; raises RecordError."""
    answer = answer_of(question)
    layout = answer["layout"]
    if layout == "io_mixed":
        whitebox.validate_io_mixed(answer)
    elif layout == "oi":
        whitebox.validate_oi(answer)
    else:
        codegen.load_tests(answer)
    return answer


@dataclass(frozen=True)
class CallOutcome:
    """The outcome of one call inside a grouped ground-truth job (same fields `grade_oi` reads)."""

    status: str
    value: Any = None
    error_type: str | None = None


def _done(result: RewardResult) -> "Future[RewardResult]":
    fut: Future = Future()
    fut.set_result(result)
    return fut


class Scorer:
    """Scores (question, response) pairs; thread-safe. `pool` is a `SandboxPool` (None: only
    io_mixed can be scored, oi/codegen raise)."""

    def __init__(self, pool: Any | None = None, cfg: RewardConfig | None = None) -> None:
        self.pool = pool
        self.cfg = cfg or RewardConfig()
        self._lock = threading.Lock()
        self._oi_cache: collections.OrderedDict[tuple, Future] = collections.OrderedDict()
        self.oi_jobs = 0  # sandbox jobs submitted for oi (cache misses; a group job counts once)
        self.oi_cache_hits = 0
        self.codegen_jobs = 0
        self._limits_cache: dict[float, Any] = {}

    # ------------------------------------------------------------------------------ public
    def submit(self, question: dict, response: str | bytes | None) -> "Future[RewardResult]":
        """Queues one response; raises RecordError for a malformed question record."""
        return self._submit_valid(validate(question), response)

    def _submit_valid(self, answer: dict, response: str | bytes | None) -> "Future[RewardResult]":
        layout = answer["layout"]
        if layout == "io_mixed":
            return _done(whitebox.score_io_mixed(answer, response, self.cfg))
        if layout == "oi":
            return self._submit_oi(answer, response)
        return self._submit_codegen(answer, response)

    def score(self, question: dict, response: str | bytes | None) -> RewardResult:
        """Scores one response and waits for it."""
        return self.submit(question, response).result()

    def submit_batch(self, questions: Sequence[dict],
                     responses: Sequence[str | bytes | None]) -> "list[Future[RewardResult]]":
        """Queues many responses; input predictions of the same program share sandbox jobs.

        Distinct ground-truth runs are packed up to `oi_group_size` per sandbox job, each call
        in its own forked process inside the job (no shared state, its own timeout); a job that
        dies falls back to one job per call, so results equal those of `submit`. Raises
        RecordError (before queueing anything) for a malformed question record.
        """
        if len(questions) != len(responses):
            raise ValueError(f"{len(questions)} questions but {len(responses)} responses")
        answers = [validate(q) for q in questions]
        out: list[Future | None] = [None] * len(answers)
        oi: list[tuple[int, whitebox.OiRequest]] = []
        for i, (answer, response) in enumerate(zip(answers, responses)):
            if answer["layout"] != "oi":
                out[i] = self._submit_valid(answer, response)
                continue
            req = whitebox.parse_oi(answer, response, self.cfg)
            if isinstance(req, RewardResult):
                out[i] = _done(req)
            else:
                oi.append((i, req))
        calls = self._oi_futures([req for _, req in oi])
        for (i, req), call in zip(oi, calls):
            out[i] = self._grade_later(answers[i], req, call)
        return out  # type: ignore[return-value]

    def score_batch(self, questions: Sequence[dict], responses: Sequence[str | bytes | None]) -> list[RewardResult]:
        """Scores pairs concurrently (via `submit_batch`); results in input order."""
        return [f.result() for f in self.submit_batch(questions, responses)]

    # ------------------------------------------------------------------------------ internals
    def _count_codegen(self, n: int) -> None:
        with self._lock:  # callbacks run on the pool's driver threads
            self.codegen_jobs += n

    def _need_pool(self) -> Any:
        if self.pool is None:
            raise RuntimeError("this question layout needs a SandboxPool (Scorer(pool=...))")
        return self.pool

    def _limits(self, timeout_s: float) -> Any:
        from execverify_jax.data.sandbox import Limits  # the data side's pool types

        lim = self._limits_cache.get(timeout_s)
        if lim is None:
            base = getattr(self.pool, "default_limits", None) or Limits()
            lim = Limits(**{**base.to_dict(), "timeout_s": timeout_s, "cpu_s": None})
            self._limits_cache[timeout_s] = lim
        return lim

    def _oi_futures(self, reqs: list[whitebox.OiRequest]) -> list[Future]:
        # Cached or new per-call futures; the new ones are packed `oi_group_size` per job.
        if reqs:
            self._need_pool()  # before any future is cached: none may be left unresolved
        prelude = self.cfg.prelude
        futures: list[Future] = []
        fresh: list[tuple[whitebox.OiRequest, Future]] = []
        with self._lock:
            for req in reqs:
                key = req.key(prelude)
                fut = self._oi_cache.get(key)
                if fut is not None:
                    self._oi_cache.move_to_end(key)
                    self.oi_cache_hits += 1
                else:
                    fut = Future()
                    fresh.append((req, fut))
                    self._remember(key, fut)
                futures.append(fut)
        size = self.cfg.oi_group_size
        for start in range(0, len(fresh), size):
            self._submit_oi_group(fresh[start:start + size])
        return futures

    def _remember(self, key: tuple, fut: Future) -> None:
        if self.cfg.oi_cache_size > 0:
            self._oi_cache[key] = fut
            while len(self._oi_cache) > self.cfg.oi_cache_size:
                self._oi_cache.popitem(last=False)

    def _submit_oi_group(self, chunk: list[tuple[whitebox.OiRequest, Future]]) -> None:
        # One job for the chunk (targets:run_ground_truth_many); calls are independent inside it.
        payload = {"prelude": self.cfg.prelude, "timeout_s": self.cfg.oi_timeout_s,
                   "fork": self.cfg.oi_fork_per_call,
                   "calls": [req.call() for req, _ in chunk]}
        wall = self.cfg.oi_timeout_s * len(chunk) + 1.0
        with self._lock:
            self.oi_jobs += 1

        def done(job: Future) -> None:
            try:
                outcome = job.result()
            except BaseException as exc:  # noqa: BLE001 - infrastructure failure: surface it
                for _, fut in chunk:
                    fut.set_exception(exc)
                return
            rows = outcome.value.get("results") if outcome.ok and isinstance(outcome.value, dict) else None
            if isinstance(rows, list) and len(rows) == len(chunk):
                for (_, fut), row in zip(chunk, rows):
                    fut.set_result(_call_outcome(row))
            elif len(chunk) == 1:  # the job itself died (limits, fork failure): that is the verdict
                chunk[0][1].set_result(CallOutcome(str(outcome.status), error_type=outcome.error_type))
            else:  # rerun one job per call, so a failure stays with the call that caused it
                for pair in chunk:
                    self._submit_oi_group([pair])

        try:
            job = self._need_pool().submit(GROUND_TRUTH_MANY_TARGET, payload, self._limits(wall))
        except BaseException as exc:  # noqa: BLE001 - e.g. the pool was closed: never leave a future pending
            for _, fut in chunk:
                if not fut.done():
                    fut.set_exception(exc)
            return
        job.add_done_callback(done)

    def _grade_later(self, answer: dict, req: whitebox.OiRequest, call: Future) -> "Future[RewardResult]":
        out: Future = Future()

        def finish(job: Future) -> None:
            try:
                out.set_result(whitebox.grade_oi(answer, req, job.result(), self.cfg))
            except BaseException as exc:  # noqa: BLE001 - infrastructure failure: surface it
                out.set_exception(exc)

        call.add_done_callback(finish)
        return out

    def _submit_oi(self, answer: dict, response: str | bytes | None) -> "Future[RewardResult]":
        req = whitebox.parse_oi(answer, response, self.cfg)
        if isinstance(req, RewardResult):
            return _done(req)
        return self._grade_later(answer, req, self._oi_futures([req])[0])

    def _submit_codegen(self, answer: dict, response: str | bytes | None) -> "Future[RewardResult]":
        tests = codegen.load_tests(answer)
        code, has_tags = codegen.extract_code(response, self.cfg)
        n = len(tests.inputs)
        if code is None:
            reason = "no_code" if has_tags else "no_answer"
            return _done(RewardResult(0.0, "codegen", False, reason,
                                      {"pass_rate": 0.0, "n_tests": n, "n_run": 0, "n_passed": 0, "phase": "none"}))
        pool, cfg = self._need_pool(), self.cfg
        indices = list(range(min(n, cfg.codegen_max_tests)))
        out: Future = Future()

        def after_all(job: Future) -> None:
            try:
                outcome = job.result()
                passed = codegen.verdicts(outcome.value, tests, indices, cfg) if outcome.ok else None
                if passed is not None:
                    out.set_result(codegen.codegen_result(passed, n, "all", cfg, {"status": str(outcome.status)}))
                    return
                self._codegen_fallback(code, tests, out, str(outcome.status))
            except BaseException as exc:  # noqa: BLE001
                out.set_exception(exc)

        self._count_codegen(1)
        payload = codegen.tests_payload(code, tests, indices, cfg.codegen_test_timeout_s, cfg)
        pool.submit(TESTS_TARGET, payload, self._limits(cfg.codegen_all_timeout_s)).add_done_callback(after_all)
        return out

    def _codegen_fallback(self, code: str, tests: codegen.Tests, out: Future, first_status: str) -> None:
        # The all-tests job died without verdicts: run the first N tests one job each (reference).
        cfg = self.cfg
        idx = list(range(min(len(tests.inputs), cfg.codegen_max_single_tests)))
        passed: list[bool | None] = [None] * len(idx)
        remaining = [len(idx)]
        lock = threading.Lock()

        def one(k: int, job: Future) -> None:
            try:
                outcome = job.result()
                v = codegen.verdicts(outcome.value, tests, [idx[k]], cfg) if outcome.ok else None
                ok = bool(v and v[0])
            except BaseException:  # noqa: BLE001 - a broken reply is a failed test
                ok = False
            with lock:
                passed[k] = ok
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                out.set_result(codegen.codegen_result([bool(p) for p in passed], len(tests.inputs), "single", cfg,
                                                      {"status": first_status}))

        lim = self._limits(cfg.codegen_single_wall_s)
        self._count_codegen(len(idx))
        try:
            jobs = [self._need_pool().submit(TESTS_TARGET, codegen.tests_payload(
                code, tests, [i], cfg.codegen_single_timeout_s, cfg), lim) for i in idx]
        except BaseException as exc:  # noqa: BLE001 - e.g. the pool was closed
            out.set_exception(exc)
            return
        for k, job in enumerate(jobs):
            job.add_done_callback(lambda j, k=k: one(k, j))


def _call_outcome(row: Any) -> CallOutcome:
    """One row of `run_ground_truth_many` as a CallOutcome (a malformed row is an error)."""
    if not (isinstance(row, list) and len(row) == 2 and isinstance(row[0], str)):
        return CallOutcome("error", error_type="BadRow")
    if row[0] != "ok":
        return CallOutcome(row[0], error_type=str(row[1])[:100] or None)
    try:
        return CallOutcome("ok", safe_codec.loads(row[1]))
    except (safe_codec.CodecError, TypeError):
        return CallOutcome("error", error_type="BadValue")


def score_batch(pool: Any | None, questions: Sequence[dict], responses: Sequence[str | bytes | None],
                cfg: RewardConfig | None = None) -> list[RewardResult]:
    """One-shot helper: `Scorer(pool, cfg).score_batch(questions, responses)`."""
    return Scorer(pool, cfg).score_batch(questions, responses)


def mean_by_kind(results: Iterable[RewardResult]) -> dict[str, dict[str, float]]:
    """Per-layout summary: count, mean reward, format rate (for logs and the CLI)."""
    acc: dict[str, list[RewardResult]] = collections.defaultdict(list)
    for r in results:
        acc[r.kind].append(r)
    return {k: {"count": len(v), "mean_reward": sum(r.reward for r in v) / len(v),
                "format_rate": sum(r.format_ok for r in v) / len(v)} for k, v in sorted(acc.items())}
