"""Host side of stepwise credit and format shaping: from scored rows to the arrays the
advantage functions (rl/objective/advantages.py) take.

Stepwise credit needs, per completion token, which answer line wrote it. The reward reports the
response *characters* of each answer line (`details["step_spans"]`: [start, end, segment], segment
1 = the assertion, k + 2 = white-box question k); here those become token positions through the
character offsets of the decoded completion (the reward scored exactly `decode(ids)`). A token
takes the segment of the first answer line it overlaps; a token overlapping none (reasoning,
tags, surplus lines, the stop token) takes segment 0, the sequence's own advantage.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

Decode = Callable[[Sequence[int]], str]


def token_char_ends(ids: Sequence[int], decode: Decode) -> np.ndarray:
    """end_T: the length of the decoded text after each token, so token t wrote characters
    [end_T[t - 1], end_T[t]) of decode(ids).

    Token-by-token decoding is used when the pieces concatenate to the whole text (byte-level BPE
    on complete characters; special tokens decode to ""). Otherwise a character is split over
    tokens: tokens are decoded in groups that end on a complete character (a group's earlier
    tokens wrote no character yet), linear in the length; prefix decoding (quadratic, exact) is
    the last resort when even that does not reproduce the text.
    """
    ids = [int(t) for t in ids]
    if not ids:
        return np.zeros(0, np.int64)
    full = decode(ids)
    pieces = [decode([t]) for t in ids]
    if "".join(pieces) == full:
        return np.cumsum([len(p) for p in pieces], dtype=np.int64)
    ends, total, start = [], 0, 0
    for t in range(len(ids)):
        chunk = decode(ids[start:t + 1])
        if chunk.endswith("\ufffd") and t + 1 < len(ids) and t + 1 - start < 8:
            ends.append(total)  # inside a character split over tokens
            continue
        total += len(chunk)
        ends.append(total)
        start = t + 1
    if total == len(full):
        return np.asarray(ends, np.int64)
    return np.asarray([len(decode(ids[:t + 1])) for t in range(len(ids))], np.int64)


def token_segments(ids: Sequence[int], spans: Sequence[Sequence[int]], C: int, decode: Decode) -> np.ndarray:
    """segment_C (int32, 0-padded to C): the stepwise segment of each completion token."""
    seg_C = np.zeros((C,), np.int32)
    if not spans or not len(ids):
        return seg_C
    end_T = token_char_ends(ids, decode)
    start_T = np.concatenate([[0], end_T[:-1]])
    for t in range(min(len(ids), C)):
        a, b = start_T[t], end_T[t]
        for s, e, seg in spans:
            if a < e and s < b:  # the token wrote at least one character of this line
                seg_C[t] = seg
                break
    return seg_C


def stepwise_inputs(rows: dict[int, dict], tokens_BC: np.ndarray, len_B: np.ndarray,
                    decode: Decode) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(step_reward_BK, step_valid_BK, segment_BC) for `advantages.stepwise_advantages`.

    rows: row -> the reward details of that completion (`step_rewards`: [output, question 1, ...],
    `step_spans`); rows without them (oi, codegen, toy) get no steps and all-zero segments, i.e.
    outcome credit. K is the largest number of steps of any row.
    """
    B, C = tokens_BC.shape
    K = max([len(rows.get(i, {}).get("step_rewards") or []) for i in range(B)] + [0])
    reward_BK = np.zeros((B, K), np.float32)
    valid_BK = np.zeros((B, K), bool)
    seg_BC = np.zeros((B, C), np.int32)
    for i in range(B):
        d = rows.get(i, {})
        steps = d.get("step_rewards") or []
        reward_BK[i, :len(steps)] = steps
        valid_BK[i, :len(steps)] = True
        seg_BC[i] = token_segments(tokens_BC[i, :len_B[i]].tolist(), d.get("step_spans") or [], C, decode)
    return reward_BK, valid_BK, seg_BC


def credit_details(result: Any) -> dict:
    """The part of a scored row's details that advantages need (JSON-able, for all-gathering)."""
    d = getattr(result, "details", None) or {}
    return {"shaping": float(d.get("shaping", 0.0)), "step_rewards": list(d.get("step_rewards") or []),
            "step_spans": [list(s) for s in d.get("step_spans") or []]}
