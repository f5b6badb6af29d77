"""Multi-controller helpers: every process runs the same program on its own data shard.

The loop's contract on a pod / multi-host GPU job:
  * each process reads prompts_per_step / process_count prompts from its grain shard
    (`process_index`, `process_count`);
  * the prompt batches are all-gathered, so every process holds the same global batch and calls
    the (global, sharded) sampler and train step with identical host inputs;
  * each process scores only its own rows (its CPU sandbox pool), and the rewards are gathered;
  * Orbax saves/restores span all processes; the per-process grain iterator states are gathered
    into the checkpoint metadata.
On one process every helper is the identity.
"""

from __future__ import annotations

import json
from typing import Any

import jax
import numpy as np


def process_info() -> tuple[int, int]:
    """(process_index, process_count)."""
    return jax.process_index(), jax.process_count()


def allgather_rows(x: np.ndarray) -> np.ndarray:
    """Concatenates every process's rows (axis 0) in process order."""
    if jax.process_count() == 1:
        return np.asarray(x)
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(np.asarray(x), tiled=True))


def allgather_batch(batch: dict[str, Any], pad_id: int) -> dict[str, np.ndarray]:
    """The numeric arrays of a (left-padded) loader batch gathered along axis 0; prompts are
    re-padded on the left to the largest P of any process."""
    keys = ("prompt_BP", "prompt_len_B", "record_index_B")
    if jax.process_count() == 1:
        return {k: np.asarray(batch[k]) for k in keys}
    prompt = np.asarray(batch["prompt_BP"])
    P = int(np.max(allgather_rows(np.asarray([prompt.shape[1]]))))
    if prompt.shape[1] < P:
        prompt = np.concatenate([np.full((prompt.shape[0], P - prompt.shape[1]), pad_id, prompt.dtype), prompt], 1)
    return {"prompt_BP": allgather_rows(prompt), "prompt_len_B": allgather_rows(batch["prompt_len_B"]),
            "record_index_B": allgather_rows(batch["record_index_B"])}


def allgather_json(obj: Any) -> list[Any]:
    """Every process's JSON-able `obj`, in process order (e.g. grain iterator states)."""
    if jax.process_count() == 1:
        return [obj]
    from jax.experimental import multihost_utils
    raw = np.frombuffer(json.dumps(obj).encode(), np.uint8)
    n = int(np.max(allgather_rows(np.asarray([raw.size]))))
    buf = np.zeros((1, n + 8), np.uint8)
    buf[0, :8] = np.frombuffer(np.int64(raw.size).tobytes(), np.uint8)
    buf[0, 8:8 + raw.size] = raw
    allb = np.asarray(multihost_utils.process_allgather(buf, tiled=True))
    out = []
    for row in allb:
        size = int(np.frombuffer(row[:8].tobytes(), np.int64)[0])
        out.append(json.loads(row[8:8 + size].tobytes().decode()))
    return out
