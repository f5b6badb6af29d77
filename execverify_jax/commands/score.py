"""`execverify score`: score model responses against question records (stage I and II rewards).

Reads questions (JSONL, one question record per line, keyed by `id`) and responses (JSONL,
`{"question_id", "response"}` per line), writes each response record plus `reward` and
`breakdown`, and prints a summary: mean reward and format rate per layout, and how many malformed
lines were skipped. Exit status 0 on success (even with skipped lines), 2 for usage errors.
"""

from __future__ import annotations

import argparse
import collections
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


def _read_jsonl(path: str, what: str, skipped: dict) -> list[tuple[int, dict]]:
    from execverify_jax.jsonl import BAD_JSON, NOT_AN_OBJECT, read_jsonl

    bad: collections.Counter = collections.Counter()
    rows = list(read_jsonl(path, bad))
    for key, why in ((BAD_JSON, "invalid JSON"), (NOT_AN_OBJECT, "not an object")):
        if bad[key]:
            skipped[f"{what}: {why}"] = skipped.get(f"{what}: {why}", 0) + bad[key]
    return rows


def _skip(skipped: dict, key: str) -> None:
    skipped[key] = skipped.get(key, 0) + 1


def run(args: argparse.Namespace) -> int:
    """Scores every response and writes the scored file; prints the summary."""
    from tqdm import tqdm

    from execverify_jax.config_loader import ConfigError
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
    for _, q in q_rows:
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

    jobs = []
    for _, r in r_rows:
        q = questions.get(str(r.get("question_id")))
        if q is None:
            _skip(skipped, "responses: unknown or skipped question_id")
            continue
        if not isinstance(r.get("response"), str):
            _skip(skipped, "responses: no response text")
            continue
        jobs.append((r, q))

    needs_pool = any(answer_of(q)["layout"] != "io_mixed" for _, q in jobs)
    pool = None
    if needs_pool:
        from execverify_jax.data.sandbox import SandboxPool

        pool = SandboxPool(args.workers, preload=PRELOAD)
    results = []
    try:
        scorer = Scorer(pool, cfg)
        futures = scorer.submit_batch([q for _, q in jobs], [r["response"] for r, _ in jobs])
        with open(args.out, "w", encoding="utf-8") as out:
            for (r, _), fut in tqdm(zip(jobs, futures), total=len(jobs), desc="scoring", unit="resp",
                                    disable=args.no_progress, file=sys.stderr):
                res = fut.result()
                results.append(res)
                out.write(json.dumps({**r, "reward": res.reward, "breakdown": res.to_dict()},
                                     ensure_ascii=False) + "\n")
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
