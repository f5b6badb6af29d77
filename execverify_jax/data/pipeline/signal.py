"""Data that carries signal: input choice and the degenerate-program filter (issue 15).

A program that returns the same value for all of its inputs, or only trivial values
(True/False/None/0/1 and empty str/list/tuple/dict/set), lets input prediction be solved with
"generic arguments" and output prediction with a constant guess. The pipeline therefore
  1. synthesizes `signal.extra_inputs` more candidate inputs than it keeps and keeps the
     `inputs_per_program` whose outputs differ (non-trivial distinct outputs first), and
  2. keeps an all-equal (>= 2 inputs) or all-trivial program only with probability
     `signal.keep_all_equal` / `signal.keep_all_trivial` (0 = drop, 1 = keep; deterministic per
     program), counting the drops as rejections `degenerate:all_equal` / `degenerate:all_trivial`.
`stats.json` reports both fractions of the final programs (`outputs`).
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from execverify_jax.data import safe_codec


_NOT_TRIVIAL = object()


def _decoded(enc: Any) -> Any:
    try:
        return safe_codec.from_jsonable(enc)
    except safe_codec.CodecError:  # an undecodable label is simply not trivial
        return _NOT_TRIVIAL


def is_trivial(enc: Any) -> bool:
    """True for the outputs a constant guess often hits: True/False/None, 0/1 (int), empty
    str/list/tuple/dict/set. `enc` is a safe_codec jsonable value."""
    v = _decoded(enc)
    if v is None or type(v) is bool:
        return True
    if type(v) is int:
        return v in (0, 1)
    if type(v) in (str, list, tuple, dict, set, frozenset):
        return len(v) == 0
    return False


def output_key(enc: Any) -> str:
    """A canonical key of an encoded output (equal keys = equal labels)."""
    return json.dumps(enc, sort_keys=True, default=repr)


def degenerate(outputs: Sequence[Any]) -> str | None:
    """"all_equal" (>= 2 outputs, one value), "all_trivial" (every output trivial) or None."""
    if len(outputs) >= 2 and len({output_key(o) for o in outputs}) == 1:
        return "all_equal"
    if outputs and all(is_trivial(o) for o in outputs):
        return "all_trivial"
    return None


def select_inputs(outputs: Sequence[Any], n: int) -> list[int]:
    """Indices of up to `n` inputs to keep, in their original order, preferring distinct
    non-trivial outputs, then distinct trivial ones, then the rest (first come first kept)."""
    chosen: list[int] = []
    seen: set[str] = set()
    for want_trivial in (False, True):
        for i, o in enumerate(outputs):
            if len(chosen) >= n:
                break
            k = output_key(o)
            if i not in chosen and k not in seen and is_trivial(o) == want_trivial:
                chosen.append(i)
                seen.add(k)
    for i in range(len(outputs)):
        if len(chosen) >= n:
            break
        if i not in chosen:
            chosen.append(i)
    return sorted(chosen)


def signal_stats(programs: Sequence[dict]) -> dict[str, float]:
    """Fractions of programs whose outputs are all equal (among those with >= 2 inputs, counted
    over all programs) and all trivial, for stats.json."""
    n = len(programs)
    eq = sum(1 for p in programs if len(p["outputs"]) >= 2 and len({output_key(o) for o in p["outputs"]}) == 1)
    triv = sum(1 for p in programs if p["outputs"] and all(is_trivial(o) for o in p["outputs"]))
    return {"all_equal_fraction": round(eq / n, 4) if n else 0.0,
            "all_trivial_fraction": round(triv / n, 4) if n else 0.0,
            "all_equal": eq, "all_trivial": triv}
