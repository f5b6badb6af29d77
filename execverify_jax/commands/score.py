"""`execverify score`: score model responses against question records (stage I and II rewards).

Reads questions (JSONL, one question record per line, keyed by `id`) and responses (JSONL,
`{"question_id", "response"}` per line), writes each response record plus `reward` and
`breakdown`, and prints a summary: mean reward and format rate per layout, and how many malformed
lines were skipped. Every non-blank response line gets an output row, in input order: one that
cannot be scored (invalid JSON, unknown question, no text, a scoring failure) is written with
reward 0 and `breakdown.reason`; any text is written (records.json_line escapes what UTF-8 cannot
hold). Exit status 0 on success (even with skipped lines), 2 for usage errors.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from execverify_jax.commands import add_config_args, load_options
from execverify_jax.rewards.config import RewardConfig

NAME = "score"
HELP = "score model responses against question records"


@dataclass(frozen=True)
class ScoreOptions:
    """`execverify score` options (YAML keys; the flags are shorthands). `reward` is a RewardConfig."""

    questions: str  # question records (JSONL, with `id` and `answer`)
    responses: str  # responses (JSONL: question_id, response)
    out: str  # where to write the scored responses
    workers: int | None = None  # sandbox workers (default: CPU count)
    progress: bool = True
    reward: RewardConfig = field(default_factory=RewardConfig)


FLAGS = {"questions": "questions", "responses": "responses", "out": "out", "workers": "workers",
         "progress": "progress"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the options (cheap: no sandbox import here)."""
    add_config_args(parser, what="the options and a `reward:` section (a RewardConfig)", example="reward.gated=false")
    parser.add_argument("--questions", metavar="Q.jsonl", help="question records (JSONL, with `id` and `answer`); required")
    parser.add_argument("--responses", metavar="R.jsonl", help="responses (JSONL: question_id, response); required")
    parser.add_argument("--out", metavar="S.jsonl", help="where to write the scored responses; required")
    parser.add_argument("--workers", type=int, metavar="N", help="sandbox workers (default: CPU count)")
    parser.add_argument("--no-progress", dest="progress", action="store_const", const=False, default=None,
                        help="do not show a progress bar")


def _read_jsonl(path: str, what: str, skipped: dict) -> list[tuple[int, dict | None, str]]:
    """(line number, object or None, why not) per non-blank line (the shared reader: bytes that
    are not UTF-8 become U+FFFD; raw control characters inside strings are accepted)."""
    from execverify_jax.jsonl import BAD_JSON, BadLine, read_jsonl

    rows: list[tuple[int, dict | None, str]] = []
    for lineno, obj in read_jsonl(path, yield_bad=True):
        if isinstance(obj, BadLine):
            why = "invalid_json" if obj.reason == BAD_JSON else "not_an_object"
            _skip(skipped, f"{what}: {'invalid JSON' if obj.reason == BAD_JSON else 'not an object'}")
            rows.append((lineno, None, why))
        else:
            rows.append((lineno, obj, ""))
    return rows


def _unscored(row: dict, reason: str) -> dict:
    """A response row that could not be scored, as written: reward 0 and why."""
    return {**row, "reward": 0.0, "breakdown": {"reward": 0.0, "kind": None, "format": False, "reason": reason}}


def _skip(skipped: dict, key: str) -> None:
    skipped[key] = skipped.get(key, 0) + 1


def _scored_row(r: dict, fut, results: list, skipped: dict) -> dict:
    try:
        res = fut.result()
    except Exception as exc:  # noqa: BLE001 - one response's failure must not cost the others
        _skip(skipped, f"responses: scoring failed ({type(exc).__name__})")
        return _unscored(r, f"scoring_error: {type(exc).__name__}: {str(exc)[:200]}")
    results.append(res)
    return {**r, "reward": res.reward, "breakdown": res.to_dict()}


def run(args: argparse.Namespace) -> int:
    """Scores every response and writes the scored file; prints the summary."""
    from tqdm import tqdm

    from execverify_jax.data.records import json_line
    from execverify_jax.rewards.scorer import PRELOAD, Scorer, answer_of, mean_by_kind, validate
    from execverify_jax.rewards.whitebox import RecordError

    opts = load_options(ScoreOptions, args, "score", FLAGS)
    if opts is None:
        return 2
    cfg = opts.reward
    skipped: dict[str, int] = {}
    try:
        q_rows = _read_jsonl(opts.questions, "questions", skipped)
        r_rows = _read_jsonl(opts.responses, "responses", skipped)
    except OSError as exc:
        print(f"execverify score: {exc}", file=sys.stderr)
        return 2

    questions: dict[str, dict] = {}
    for _, q, _why in q_rows:
        if q is None:
            continue
        qid = q.get("id")
        if not isinstance(qid, (str, int)):
            _skip(skipped, "questions: no id")
            continue
        try:
            validate(q)
        except RecordError as exc:
            _skip(skipped, f"questions: bad answer record ({str(exc)[:60]})")
            continue
        questions[str(qid)] = q

    # Every response line gets an output row, in input order: those that cannot be scored are
    # written with reward 0 and a reason (a consumer can align output rows with input lines).
    jobs: list[tuple[dict, dict | None, str]] = []
    for lineno, r, why in r_rows:
        q = questions.get(str(r.get("question_id"))) if r is not None else None
        if r is None:
            r = {"response_line": lineno}
        elif q is None:
            _skip(skipped, "responses: unknown or skipped question_id")
            why = "unknown_question"
        elif not isinstance(r.get("response"), str):
            _skip(skipped, "responses: no response text")
            why, q = "no_response_text", None
        jobs.append((r, q, why))
    scorable = [(r, q) for r, q, _ in jobs if q is not None]

    needs_pool = any(answer_of(q)["layout"] != "io_mixed" for _, q in scorable)
    pool = None
    if needs_pool:
        from execverify_jax.data.sandbox import SandboxPool

        pool = SandboxPool(opts.workers, preload=PRELOAD)
    results = []
    try:
        scorer = Scorer(pool, cfg)
        futures = iter(scorer.submit_batch([q for _, q in scorable], [r["response"] for r, _ in scorable]))
        with open(opts.out, "w", encoding="utf-8") as out:
            for r, q, why in tqdm(jobs, desc="scoring", unit="resp", disable=not opts.progress, file=sys.stderr):
                row = _unscored(r, why) if q is None else _scored_row(r, next(futures), results, skipped)
                out.write(json_line(row))
    finally:
        if pool is not None:
            pool.close()

    print(f"scored {len(results)} responses -> {opts.out}")
    for kind, s in mean_by_kind(results).items():
        print(f"  {kind:9s} n={s['count']:6d}  mean reward={s['mean_reward']:.4f}  format rate={s['format_rate']:.3f}")
    total_skipped = sum(skipped.values())
    print(f"skipped malformed lines: {total_skipped}")
    for why, n in sorted(skipped.items()):
        print(f"  {n:6d}  {why}")
    return 0
