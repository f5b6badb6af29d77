"""Held-out evaluation of a policy on question records: generate (greedy by default, the paper's
validation setting), score with the same rewards as training, summarise per question kind."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from execverify_jax.rl.infra.metrics import reward_metrics


def evaluate(params: Any, sampler: Any, tokenizer: Any, scorer: Any, records: Sequence[dict], *,
             max_new_tokens: int, batch_size: int = 16, strategy: Any = None, n: int = 1,
             seed: int = 0) -> tuple[dict[str, float], list[dict]]:
    """(metrics, rows): reward/accuracy metrics over `records` x `n` samples, and one row per
    sample {question_id, kind, reward, reason, response}."""
    from execverify_jax.model.strategies import Greedy

    strategy = strategy or Greedy()
    results, lengths, truncated, rows = [], [], [], []
    stop = tuple(tokenizer.stop_ids)
    for start in range(0, len(records), batch_size):
        chunk = list(records[start:start + batch_size])
        prompts = [tokenizer.apply_chat(r["messages"]) for r in chunk]
        out = sampler.generate(params, prompts, max_new_tokens, strategy, stop_ids=stop, n=n, seed=seed + start)
        texts = [tokenizer.decode(out.tokens_BC[i, : out.lengths_B[i]].tolist()) for i in range(len(out.lengths_B))]
        recs = [chunk[i // n] for i in range(len(texts))]
        futs = scorer.submit_batch(recs, texts)
        for i, f in enumerate(futs):
            res = f.result()
            results.append(res)
            lengths.append(int(out.lengths_B[i]))
            truncated.append(not bool(out.stopped_B[i]))
            rows.append({"question_id": recs[i].get("id"), "kind": recs[i].get("kind"), "reward": float(res.reward),
                         "reason": res.reason, "response": texts[i]})
    metrics = reward_metrics(results, lengths, truncated) if results else {}
    metrics["n"] = float(len(results))
    return metrics, rows


def summarize(metrics: dict[str, float]) -> dict[str, float]:
    """The headline numbers (rounded) of an evaluation."""
    keys = [k for k in metrics if k.startswith(("reward/", "acc/")) or k in ("format_rate", "n")]
    return {k: round(float(metrics[k]), 4) for k in sorted(keys) if np.isfinite(metrics[k])}
