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
import json
import sys

NAME = "score"
HELP = "score model responses against question records"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the options (cheap: no sandbox import here)."""
    parser.add_argument("--questions", required=True, metavar="Q.jsonl", help="question records (JSONL, with `id` and `answer`)")
    parser.add_argument("--responses", required=True, metavar="R.jsonl", help="responses (JSONL: question_id, response)")
    parser.add_argument("--out", required=True, metavar="S.jsonl", help="where to write the scored responses")
    parser.add_argument("--config", metavar="YAML", help="config file; its `reward:` section (or the whole file) is a RewardConfig")
    parser.add_argument("--set", action="append", default=[], metavar="reward.KEY=VALUE",
                        help="override a RewardConfig field, e.g. --set reward.gated=false (repeatable)")
    parser.add_argument("--workers", type=int, default=None, metavar="N", help="sandbox workers (default: CPU count)")
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")


def load_config(path: str | None, overrides: list[str]):
    """RewardConfig from an optional YAML file plus `reward.key=value` overrides."""
    from execverify_jax.config_loader import apply_overrides, from_dict, read_yaml
    from execverify_jax.rewards.config import RewardConfig

    data = read_yaml(path) if path else {}
    section = data.get("reward", data) if isinstance(data, dict) else data
    sets = [s if s.startswith("reward.") else f"reward.{s}" for s in overrides]
    merged = apply_overrides({"reward": section or {}}, sets)["reward"]
    return from_dict(RewardConfig, merged, "reward")


def _read_jsonl(path: str, what: str, skipped: dict) -> list[tuple[int, dict | None, str]]:
    """(line number, object or None, why not) per non-blank line. Bytes that are not UTF-8
    become U+FFFD; raw control characters (a NUL) inside strings are accepted."""
    rows: list[tuple[int, dict | None, str]] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line, strict=False)
            except (ValueError, RecursionError):
                _skip(skipped, f"{what}: invalid JSON")
                rows.append((lineno, None, "invalid_json"))
                continue
            if not isinstance(obj, dict):
                _skip(skipped, f"{what}: not an object")
                rows.append((lineno, None, "not_an_object"))
                continue
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

    from execverify_jax.config_loader import ConfigError
    from execverify_jax.data.records import json_line
    from execverify_jax.rewards.scorer import PRELOAD, Scorer, answer_of, mean_by_kind, validate
    from execverify_jax.rewards.whitebox import RecordError

    try:
        cfg = load_config(args.config, args.set)
    except ConfigError as exc:
        print(f"execverify score: {exc}", file=sys.stderr)
        return 2
    skipped: dict[str, int] = {}
    try:
        q_rows = _read_jsonl(args.questions, "questions", skipped)
        r_rows = _read_jsonl(args.responses, "responses", skipped)
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

        pool = SandboxPool(args.workers, preload=PRELOAD)
    results = []
    try:
        scorer = Scorer(pool, cfg)
        futures = iter(scorer.submit_batch([q for _, q in scorable], [r["response"] for r, _ in scorable]))
        with open(args.out, "w", encoding="utf-8") as out:
            for r, q, why in tqdm(jobs, desc="scoring", unit="resp", disable=args.no_progress, file=sys.stderr):
                row = _unscored(r, why) if q is None else _scored_row(r, next(futures), results, skipped)
                out.write(json_line(row))
    finally:
        if pool is not None:
            pool.close()

    print(f"scored {len(results)} responses -> {args.out}")
    for kind, s in mean_by_kind(results).items():
        print(f"  {kind:9s} n={s['count']:6d}  mean reward={s['mean_reward']:.4f}  format rate={s['format_rate']:.3f}")
    total_skipped = sum(skipped.values())
    print(f"skipped malformed lines: {total_skipped}")
    for why, n in sorted(skipped.items()):
        print(f"  {n:6d}  {why}")
    return 0
