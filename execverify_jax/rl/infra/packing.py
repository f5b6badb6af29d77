"""Sequence packing for the GRPO and SFT updates (pure numpy, host side).

The padded update lays every sequence out as prompt bucket + completion bucket, so most of the
T x T attention and every MLP token of the padding is computed for nothing. Packing concatenates
the real tokens of several sequences into fixed-length buffers of `L` tokens instead:

  tokens_BT       int32  the sequences' real tokens, back to back; 0 after the last segment
  segment_ids_BT  int32  1, 2, ... per sequence in the buffer, 0 = padding; attention only
                         pairs a query with keys of its own segment (model/attention.py)
  positions_BT    int32  RoPE positions, restarting at 0 in every segment
  <field>_BT             every per-token field (loss mask, advantage, old/ref log-probs),
                         moved with its token

Rows are placed first-fit-decreasing (longest first, into the first buffer with room), so no
sequence ever crosses a buffer. A sequence is one segment, so sequence-level loss aggregation
(seq-mean-*) groups tokens by (buffer, segment id) (objective/aggregation.py). The layout
returned by `pack` maps every row back (`unpack`), e.g. for the packed log-prob pass.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Layout(NamedTuple):
    """Where each input row went: buffer index, start offset and length (all int64 [R])."""

    buffer_R: np.ndarray
    start_R: np.ndarray
    length_R: np.ndarray


def first_fit_decreasing(lengths_R: np.ndarray, L: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(buffer_R, start_R, num_buffers): rows longest first into the first buffer with room."""
    lengths_R = np.asarray(lengths_R, np.int64)
    if lengths_R.size and int(lengths_R.max()) > L:
        raise ValueError(f"pack_len={L!r} is shorter than the longest sequence ({int(lengths_R.max())} "
                         f"tokens): raise pack_len to at least that")
    buffer_R = np.zeros(len(lengths_R), np.int64)
    start_R = np.zeros(len(lengths_R), np.int64)
    used: list[int] = []
    # Stable sort: equal lengths keep their input order, so packing is deterministic.
    for r in np.argsort(-lengths_R, kind="stable"):
        n = int(lengths_R[r])
        for b, u in enumerate(used):
            if u + n <= L:
                break
        else:
            b = len(used)
            used.append(0)
        buffer_R[r], start_R[r] = b, used[b]
        used[b] += n
    return buffer_R, start_R, len(used)


def pack(rows: dict[str, list[np.ndarray]], L: int, multiple: int = 1
         ) -> tuple[dict[str, np.ndarray], Layout]:
    """Packs rows of per-token fields into [num_buffers, L] arrays.

    rows: field -> one 1-D array per row (all fields of a row have the same length; a row of
      length 0 takes no space). Must include "tokens".
    multiple: the number of buffers is rounded up to a multiple of it (micro-batch size), the
      extra buffers being all padding.
    Returns ({field}_BT for every field plus segment_ids_BT and positions_BT, layout).
    """
    lengths_R = np.asarray([len(t) for t in rows["tokens"]], np.int64)
    for name, arrs in rows.items():
        bad = [r for r, a in enumerate(arrs) if len(a) != lengths_R[r]]
        if bad:
            raise ValueError(f"pack: field {name!r} row {bad[0]} has {len(arrs[bad[0]])} tokens, "
                             f"'tokens' has {lengths_R[bad[0]]}")
    buffer_R, start_R, n = first_fit_decreasing(lengths_R, L)
    n = max(-(-n // multiple) * multiple, multiple)
    out = {f"{name}_BT": np.zeros((n, L), np.asarray(arrs[0]).dtype if arrs else np.float32)
           for name, arrs in rows.items()}
    seg_BT = np.zeros((n, L), np.int32)
    pos_BT = np.zeros((n, L), np.int32)
    next_seg = np.ones(n, np.int32)
    for r in np.lexsort((start_R, buffer_R)):  # segment ids increase along each buffer
        b, s, m = buffer_R[r], start_R[r], lengths_R[r]
        if m == 0:
            continue
        for name, arrs in rows.items():
            out[f"{name}_BT"][b, s:s + m] = arrs[r]
        seg_BT[b, s:s + m] = next_seg[b]
        next_seg[b] += 1
        pos_BT[b, s:s + m] = np.arange(m)
    out["segment_ids_BT"], out["positions_BT"] = seg_BT, pos_BT
    return out, Layout(buffer_R, start_R, lengths_R)


def unpack(x_BT: np.ndarray, layout: Layout) -> list[np.ndarray]:
    """The per-row 1-D arrays of a packed [num_buffers, L] field (inverse of `pack`)."""
    x_BT = np.asarray(x_BT)
    return [x_BT[b, s:s + m] for b, s, m in zip(layout.buffer_R, layout.start_R, layout.length_R)]


def padding_ratio(shape: tuple[int, ...], real_tokens: int) -> float:
    """Tokens computed (every position of a [rows, T] update) / real tokens."""
    return float(np.prod(shape)) / max(int(real_tokens), 1)


GRPO_FIELDS = ("mask", "adv", "old_logp", "ref_logp")


def pack_grpo(host: dict[str, np.ndarray], L: int, multiple: int = 1
              ) -> tuple[dict[str, np.ndarray], Layout]:
    """Packs a padded GRPO mini-batch (rl/infra/train_steps.py's layout: tokens_BT, attn_BT,
    mask_BC, adv_B or adv_BC, old_logp_BC, optional ref_logp_BC) into buffers of L tokens.

    Every row keeps its real tokens (attn_BT). The completion fields move with the token they
    score: field_BT[t] belongs to token t (predicted from position t - 1), as in the padded
    layout's last C positions. Returns tokens_BT, segment_ids_BT, positions_BT, mask_BT,
    adv_BT, old_logp_BT (and ref_logp_BT) and the layout.
    """
    tokens_BT, attn_BT = np.asarray(host["tokens_BT"]), np.asarray(host["attn_BT"]).astype(bool)
    B, T = tokens_BT.shape
    C = host["mask_BC"].shape[1]
    adv = (host["adv_BC"] if "adv_BC" in host else
           np.broadcast_to(np.asarray(host.get("adv_B", np.zeros(B, np.float32)))[:, None], (B, C)))
    per_tok = {"mask": host["mask_BC"], "adv": adv}
    for k in ("old_logp", "ref_logp"):  # absent before the log-prob pass
        if f"{k}_BC" in host:
            per_tok[k] = host[f"{k}_BC"]
    full = {k: np.concatenate([np.zeros((B, T - C), np.float32), np.asarray(v, np.float32)], 1)
            for k, v in per_tok.items()}
    rows = {"tokens": [tokens_BT[b, attn_BT[b]] for b in range(B)]}
    rows.update({k: [v[b, attn_BT[b]] for b in range(B)] for k, v in full.items()})
    return pack(rows, L, multiple)


def unpack_completion(x_BT: np.ndarray, layout: Layout, attn_BT: np.ndarray, C: int) -> np.ndarray:
    """x_BC in the padded layout (the last C of T positions, 0 where attn_BT is False) from a
    packed per-token field, e.g. the packed log-prob pass's logp_BT (`pack_grpo` layout)."""
    attn_BT = np.asarray(attn_BT).astype(bool)
    full_BT = np.zeros(attn_BT.shape, np.asarray(x_BT).dtype)
    for b, row in enumerate(unpack(x_BT, layout)):
        full_BT[b, attn_BT[b]] = row
    return full_BT[:, attn_BT.shape[1] - C:]


def pack_sft(batch: dict[str, np.ndarray], L: int, multiple: int = 1
             ) -> tuple[dict[str, np.ndarray], Layout]:
    """Packs an SFT batch (ids_BT, attn_BT, loss_mask_BT) into buffers of L tokens -> ids_BT,
    segment_ids_BT, positions_BT, loss_mask_BT (and the layout)."""
    ids_BT, attn_BT = np.asarray(batch["ids_BT"]), np.asarray(batch["attn_BT"]).astype(bool)
    lm_BT = np.asarray(batch["loss_mask_BT"])
    rows = {"tokens": [ids_BT[b, attn_BT[b]] for b in range(len(ids_BT))],
            "loss_mask": [lm_BT[b, attn_BT[b]] for b in range(len(ids_BT))]}
    out, layout = pack(rows, L, multiple)
    return {"ids_BT": out["tokens_BT"], "segment_ids_BT": out["segment_ids_BT"],
            "positions_BT": out["positions_BT"], "loss_mask_BT": out["loss_mask_BT"]}, layout
