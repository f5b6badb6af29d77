"""Sequence packing for the GRPO and SFT updates (pure numpy, host side).

The padded update lays every sequence out as prompt bucket + completion bucket, so most of the
T x T attention and every MLP token of the padding is computed for nothing. Packing concatenates
the real tokens of several sequences into fixed-length buffers of `L` tokens instead:

  tokens_BT       int32  the sequences' real tokens, back to back; 0 after the last segment
  segment_ids_BT  int32  1, 2, ... per sequence in the buffer, 0 = padding; attention only
                         pairs a query with keys of its own segment (model/attention.py)
  positions_BT    int32  RoPE positions, restarting at 0 in every segment
  <field>_BT             every per-token field, moved with its token (`pack`, SFT)

GRPO (`pack_grpo`) keeps only the completion tokens' fields, gathered into a completion slab
[buffers, C] (`completion_slab`: target_pos_BC, segment_ids_BC, mask/adv/old_logp/ref_logp_BC),
so the step computes logits only for those tokens.

Rows are placed first-fit-decreasing (longest first, into the first buffer with room; for GRPO
also spreading completion tokens over the buffers, `balanced_placement`), so no sequence ever
crosses a buffer. A sequence is one segment, so sequence-level loss aggregation
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


def first_fit_decreasing(lengths_R: np.ndarray, L: int, second_R: np.ndarray | None = None,
                         cap: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """(buffer_R, start_R, num_buffers): rows longest first into the first buffer with room.

    second_R / cap: a second per-row count (completion tokens) whose sum per buffer must also
    stay <= cap (`balanced_placement`)."""
    lengths_R = np.asarray(lengths_R, np.int64)
    if lengths_R.size and int(lengths_R.max()) > L:
        raise ValueError(f"pack_len={L!r} is shorter than the longest sequence ({int(lengths_R.max())} "
                         f"tokens): raise pack_len to at least that")
    second_R = np.zeros_like(lengths_R) if second_R is None else np.asarray(second_R, np.int64)
    cap = int(second_R.max(initial=0)) if cap is None else cap
    buffer_R = np.zeros(len(lengths_R), np.int64)
    start_R = np.zeros(len(lengths_R), np.int64)
    used: list[int] = []
    used2: list[int] = []
    # Stable sort: equal lengths keep their input order, so packing is deterministic.
    for r in np.argsort(-lengths_R, kind="stable"):
        n, n2 = int(lengths_R[r]), int(second_R[r])
        for b, u in enumerate(used):
            if u + n <= L and used2[b] + n2 <= cap:
                break
        else:
            b = len(used)
            used.append(0)
            used2.append(0)
        buffer_R[r], start_R[r] = b, used[b]
        used[b] += n
        used2[b] += n2
    return buffer_R, start_R, len(used)


def round_up(n: int, multiple: int) -> int:
    """n buffers rounded up to a multiple of `multiple` (at least one multiple)."""
    return max(-(-n // multiple) * multiple, multiple)


def balanced_placement(lengths_R: np.ndarray, comp_R: np.ndarray, L: int, multiple: int = 1,
                       granule: int | None = None) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(buffer_R, start_R, num_buffers, C): first-fit-decreasing into buffers of L tokens that
    also spreads the completion tokens (comp_R per row), so the completion slab's capacity C
    (the most completion tokens in any buffer, `completion_capacity`) stays near the mean.

    Plain first-fit-decreasing gives N buffers (rounded up to `multiple`); capacities from the
    smallest possible (the mean per buffer, or the longest single completion) upwards are tried
    with the extra per-buffer limit, and the first that still fits in those N buffers is kept.
    So the buffers (and train_padding_ratio) are those of plain packing, only the slab shrinks.
    """
    lengths_R, comp_R = np.asarray(lengths_R, np.int64), np.asarray(comp_R, np.int64)
    buffer_R, start_R, n = first_fit_decreasing(lengths_R, L)
    n = round_up(n, multiple)
    plain = completion_capacity(_most_per_buffer(buffer_R, comp_R, n), L, granule)
    lo = completion_capacity(max(-(-int(comp_R.sum()) // n), int(comp_R.max(initial=0))), L, granule)
    g = max(L // 16, 1) if granule is None else max(int(granule), 1)
    for C in range(lo, plain, g):
        b_R, s_R, m = first_fit_decreasing(lengths_R, L, comp_R, C)
        if m <= n:
            return b_R, s_R, n, C
    return buffer_R, start_R, n, plain


def choose_pack_len(lengths_R: np.ndarray, L: int, multiple: int = 1, granule: int | None = None) -> int:
    """The buffer length, a multiple of `granule` (default L // 16) in [longest row, L], whose
    first-fit-decreasing packing (buffer count rounded up to `multiple`) computes the fewest
    tokens (buffers x length; ties: the shorter length, whose attention is cheaper).

    With few real tokens per mini-batch, whole buffers of a fixed L round a lot: 1,510 tokens in
    2 buffers of 1,024 compute 1.36x the real ones (BENCHMARKS §11, 0.5B run); 2 x 832 compute
    1.10x. At most L / granule lengths, so at most that many buffer shapes to compile."""
    lengths_R = np.asarray(lengths_R, np.int64)
    g = max(L // 16, 1) if granule is None else max(int(granule), 1)
    longest = int(lengths_R.max(initial=1))
    if longest > L:
        first_fit_decreasing(lengths_R, L)  # raises, naming pack_len
    best = (round_up(first_fit_decreasing(lengths_R, L)[2], multiple) * L, L)
    # Shorter lengths cannot beat a cost below (real tokens rounded up to whole buffers).
    for cand in range(-(-longest // g) * g, L, g):
        n = first_fit_decreasing(lengths_R, cand)[2]
        best = min(best, (round_up(n, multiple) * cand, cand))
    return best[1]


def _most_per_buffer(buffer_R: np.ndarray, x_R: np.ndarray, n: int) -> int:
    return int(np.bincount(buffer_R, weights=x_R, minlength=n).max(initial=0)) if len(x_R) else 0


def pack(rows: dict[str, list[np.ndarray]], L: int, multiple: int = 1,
         placement: tuple[np.ndarray, np.ndarray, int] | None = None
         ) -> tuple[dict[str, np.ndarray], Layout]:
    """Packs rows of per-token fields into [num_buffers, L] arrays.

    rows: field -> one 1-D array per row (all fields of a row have the same length; a row of
      length 0 takes no space). Must include "tokens".
    multiple: the number of buffers is rounded up to a multiple of it (micro-batch size), the
      extra buffers being all padding.
    placement: (buffer_R, start_R, num_buffers) to use instead of plain first-fit-decreasing.
    Returns ({field}_BT for every field plus segment_ids_BT and positions_BT, layout).
    """
    lengths_R = np.asarray([len(t) for t in rows["tokens"]], np.int64)
    for name, arrs in rows.items():
        bad = [r for r, a in enumerate(arrs) if len(a) != lengths_R[r]]
        if bad:
            raise ValueError(f"pack: field {name!r} row {bad[0]} has {len(arrs[bad[0]])} tokens, "
                             f"'tokens' has {lengths_R[bad[0]]}")
    buffer_R, start_R, n = first_fit_decreasing(lengths_R, L) if placement is None else placement
    n = round_up(n, multiple)
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


def completion_capacity(max_count: int, L: int, granule: int | None = None) -> int:
    """Columns of the completion slab: the most completion tokens any buffer holds, rounded up
    to a multiple of `granule` (default L // 16) so a run compiles a handful of shapes, not one
    per batch; at least one column, at most L."""
    g = max(L // 16, 1) if granule is None else max(int(granule), 1)
    return int(min(max(-(-int(max_count) // g) * g, g), L))


def completion_slab(comp_BT: np.ndarray, fields_BT: dict[str, np.ndarray], seg_BT: np.ndarray,
                    granule: int | None = None) -> dict[str, np.ndarray]:
    """The completion tokens of each buffer, gathered left-aligned into [buffers, C] columns.

    comp_BT: True at the buffer positions whose token is a completion token (the packed step
    computes logits only there). Returns target_pos_BC (each column's buffer position, 0 in
    unused columns: position 0 always holds a prompt token or padding, never a completion
    token), segment_ids_BC (renumbered 1, 2, ... per buffer in order, 0 unused, so they stay
    < C + 1 as aggregation.segment_counts needs) and every field of fields_BT as field_BC
    (0 in unused columns).
    """
    comp_BT = np.asarray(comp_BT, bool)
    n_B = comp_BT.sum(1)
    C = completion_capacity(int(n_B.max()) if n_B.size else 0, comp_BT.shape[1], granule)
    valid_BC = np.arange(C)[None, :] < n_B[:, None]
    # Stable: the completion positions first, in buffer order.
    pos_BC = np.argsort(~comp_BT, axis=1, kind="stable")[:, :C]
    pos_BC = np.where(valid_BC, pos_BC, 0).astype(np.int32)
    out = {f"{k}_BC": np.where(valid_BC, np.take_along_axis(v, pos_BC, 1), 0).astype(v.dtype)
           for k, v in fields_BT.items()}
    seg_BC = np.take_along_axis(seg_BT, pos_BC, 1)
    # Segment ids increase along a buffer, so a new id starts wherever the gathered id changes.
    new_BC = np.concatenate([np.ones_like(seg_BC[:, :1], bool), seg_BC[:, 1:] != seg_BC[:, :-1]], 1)
    out["segment_ids_BC"] = np.where(valid_BC, np.cumsum(new_BC, 1), 0).astype(np.int32)
    out["target_pos_BC"] = pos_BC
    return out


def pack_grpo(host: dict[str, np.ndarray], L: int, multiple: int = 1, granule: int | None = None,
              auto: bool = False) -> tuple[dict[str, np.ndarray], Layout]:
    """Packs a padded GRPO mini-batch (rl/infra/train_steps.py's layout: tokens_BT, attn_BT,
    mask_BC, adv_B or adv_BC, old_logp_BC, optional ref_logp_BC) into buffers of L tokens.

    Every row keeps its real tokens (attn_BT); rows are placed by `balanced_placement`. The
    per-token fields follow their tokens into the buffers and are gathered, with the completion
    tokens' positions, into the completion slab (`completion_slab`, C = its capacity, bucketed
    by `granule`): the packed step computes logits only for those C columns per buffer, as the
    padded step does for its last C positions. `auto`: buffers of `choose_pack_len` tokens (at
    most L, a multiple of the granule, which stays L // 16 for the slab). Returns tokens_BT,
    segment_ids_BT, positions_BT, target_pos_BC, segment_ids_BC, mask_BC, adv_BC, old_logp_BC
    (and ref_logp_BC) and the layout.
    """
    tokens_BT, attn_BT = np.asarray(host["tokens_BT"]), np.asarray(host["attn_BT"]).astype(bool)
    B, T = tokens_BT.shape
    C = host["mask_BC"].shape[1]
    adv = (host["adv_BC"] if "adv_BC" in host else
           np.broadcast_to(np.asarray(host.get("adv_B", np.zeros(B, np.float32)))[:, None], (B, C)))
    per_tok = {"mask": host["mask_BC"], "adv": adv, "comp": np.ones((B, C), np.float32)}
    for k in ("old_logp", "ref_logp"):  # absent before the log-prob pass
        if f"{k}_BC" in host:
            per_tok[k] = host[f"{k}_BC"]
    full = {k: np.concatenate([np.zeros((B, T - C), np.float32), np.asarray(v, np.float32)], 1)
            for k, v in per_tok.items()}
    rows = {"tokens": [tokens_BT[b, attn_BT[b]] for b in range(B)]}
    rows.update({k: [v[b, attn_BT[b]] for b in range(B)] for k, v in full.items()})
    lengths_R = attn_BT.sum(1)
    if auto:
        granule = max(L // 16, 1) if granule is None else granule
        L = choose_pack_len(lengths_R, L, multiple, granule)
    buffer_R, start_R, n, _ = balanced_placement(lengths_R, attn_BT[:, T - C:].sum(1), L, multiple, granule)
    out, layout = pack(rows, L, multiple, (buffer_R, start_R, n))
    comp_BT = out.pop("comp_BT") > 0
    fields = {k: out.pop(f"{k}_BT") for k in per_tok if k != "comp"}
    out.update(completion_slab(comp_BT, fields, out["segment_ids_BT"], granule))
    return out, layout


def unpack_completion(x_BC: np.ndarray, target_pos_BC: np.ndarray, layout: Layout, attn_BT: np.ndarray,
                      C: int) -> np.ndarray:
    """x_BC in the padded layout (the last C of T positions, 0 where attn_BT is False) from a
    completion-slab field of the packed batch, e.g. the packed log-prob pass's logp (`pack_grpo`
    layout: column c of buffer b belongs to buffer position target_pos_BC[b, c])."""
    attn_BT = np.asarray(attn_BT).astype(bool)
    x_BC, pos_BC = np.asarray(x_BC), np.asarray(target_pos_BC)
    L = int(layout.start_R.max() + layout.length_R.max()) if len(layout.start_R) else 1
    buf_BL = np.zeros((x_BC.shape[0], max(L, int(pos_BC.max()) + 1)), x_BC.dtype)
    np.put_along_axis(buf_BL, pos_BC, np.where(pos_BC > 0, x_BC, 0), 1)
    buf_BL[:, 0] = 0  # unused columns all point at position 0 (never a completion token)
    full_BT = np.zeros(attn_BT.shape, x_BC.dtype)
    for b, row in enumerate(unpack(buf_BL, layout)):
        full_BT[b, attn_BT[b]] = row
    return full_BT[:, attn_BT.shape[1] - C:]


def prediction_positions(loss_mask_BT: np.ndarray, C: int | None = None, granule: int | None = None
                         ) -> np.ndarray:
    """pred_pos_BC: each row's positions t whose next token (t + 1) is a loss token, left-aligned,
    so the SFT step computes logits for these C positions only instead of all T (the prompt is
    most of an SFT sequence: the demo's ~400-token prompts carry ~60-200 target tokens).

    Unused columns hold T - 1, whose prediction is never learned (it has no next token), so
    they are masked by the step's own target mask. For packed buffers a position whose next
    token starts another segment is kept here and masked by the step the same way. C: given
    (>= every row's count; one compile per batch shape) or, if None, `completion_capacity`
    of the batch's largest count (bucketed by `granule`, default T / 16)."""
    lm_BT = np.asarray(loss_mask_BT).astype(bool)
    B, T = lm_BT.shape
    need_BT = np.zeros_like(lm_BT)
    need_BT[:, :-1] = lm_BT[:, 1:]
    n_B = need_BT.sum(1)
    largest = int(n_B.max()) if n_B.size else 0
    if C is None:
        C = completion_capacity(largest, T, granule)
    elif C < largest:
        raise ValueError(f"prediction_positions: C={C} is smaller than a row's {largest} loss tokens")
    C = min(int(C), T)
    pos_BC = np.argsort(~need_BT, axis=1, kind="stable")[:, :C]
    return np.where(np.arange(C)[None, :] < n_B[:, None], pos_BC, T - 1).astype(np.int32)


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
