"""The one length-bucket rule: a length goes to the smallest bucket that holds it.

Pure Python (no jax, no package imports): the data loader, the SFT batcher, the sampler and the
GRPO update all pad to buckets, and the model side may not import data/, so the helper lives at
the top level next to config_loader.py (docs/ARCHITECTURE.md, import rules).
"""

from __future__ import annotations

from typing import Sequence


def bucket_for(length: int, buckets: Sequence[int], over: int | None = None) -> int:
    """Smallest bucket >= `length` (`buckets` in any order).

    A length above the largest bucket gets `over` when given; without it that is an error, since
    padding to a bucket that cannot hold the sequence would silently cut it.
    """
    fits = [b for b in buckets if b >= length]
    if fits:
        return min(fits)
    if over is None:
        raise ValueError(f"length {length} is longer than the largest bucket {max(buckets, default=None)}")
    return over
