"""The KV cache: a small pytree (k_LBSKH, v_LBSKH, lengths_B, end), preallocated once per bucket.

Layout: rows are LEFT-padded so that every row writes its next token at the same slot `end`
(one scalar dynamic_update_slice per layer, no per-row scatter). Row b's real tokens occupy slots
[end - lengths_B[b], end):

    slot:        0    1    2    3    4    5    6    7        (S = 8, end = 5 after prefill)
    row 0 (3):   pad  pad  a    b    c    .    .    .        lengths 3 -> valid slots [2, 5)
    row 1 (5):   a    b    c    d    e    .    .    .        lengths 5 -> valid slots [0, 5)

A decode step writes slot `end` for every row (rows already finished write junk that nobody
reads), then `end += 1`, `lengths_B += 1`. Query t of a call that wrote T tokens sits at slot
end - T + t and may attend slots [end - lengths_B, end - T + t].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class KVCache:
    """Attributes:
    k_LBSKH, v_LBSKH: keys/values per layer, in the cache dtype.
    lengths_B: int32, real tokens held per row.
    end: int32 scalar, the next slot to write (same for all rows).
    """

    k_LBSKH: jax.Array
    v_LBSKH: jax.Array
    lengths_B: jax.Array
    end: jax.Array

    @classmethod
    def init(cls, num_layers: int, batch: int, max_len: int, num_kv_heads: int, head_dim: int,
             dtype=jnp.float32) -> "KVCache":
        """An empty cache of S = max_len slots."""
        shape = (num_layers, batch, max_len, num_kv_heads, head_dim)
        return cls(k_LBSKH=jnp.zeros(shape, dtype), v_LBSKH=jnp.zeros(shape, dtype),
                   lengths_B=jnp.zeros((batch,), jnp.int32), end=jnp.zeros((), jnp.int32))

    @property
    def max_len(self) -> int:
        """S, the number of slots."""
        return self.k_LBSKH.shape[2]

    def advance(self, T: int, lengths_B: jax.Array) -> "KVCache":
        """The cache after writing T tokens per row, leaving each row with `lengths_B` real tokens."""
        return self.replace(lengths_B=lengths_B.astype(jnp.int32), end=self.end + T)

    def attention_mask(self, T: int) -> jax.Array:
        """mask_BTS (True = attend) for the T queries of the call that produced this cache."""
        S = self.max_len
        slot_S = jnp.arange(S, dtype=jnp.int32)
        query_slot_T = self.end - T + jnp.arange(T, dtype=jnp.int32)
        start_B = self.end - self.lengths_B
        causal_TS = slot_S[None, :] <= query_slot_T[:, None]
        return causal_TS[None, :, :] & (slot_S[None, None, :] >= start_B[:, None, None])
