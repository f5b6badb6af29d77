"""The KV cache: a small pytree (k_BKHS per layer, v_BKSH per layer, lengths_B, end),
preallocated once per bucket.

Keys are stored [B, K, H, S] and values [B, K, S, H]: the operand layouts of the two attention
matmuls (q.k over H, p.v over S), and one array per layer rather than one stacked [L, ...] array.
Both measured on XLA:CPU (benchmarks/bench_sampler.py, docs/BENCHMARKS.md): the natural stacked
[L, B, S, K, H] layout made XLA transpose and copy each layer's whole cache on every decode step.

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
    k_BKHS: tuple of L key arrays [B, K, H, S] (slots last), in the cache dtype.
    v_BKSH: tuple of L value arrays [B, K, S, H], in the cache dtype.
    lengths_B: int32, real tokens held per row.
    end: int32 scalar, the next slot to write (same for all rows).
    """

    k_BKHS: tuple[jax.Array, ...]
    v_BKSH: tuple[jax.Array, ...]
    lengths_B: jax.Array
    end: jax.Array

    @classmethod
    def init(cls, num_layers: int, batch: int, max_len: int, num_kv_heads: int, head_dim: int,
             dtype=jnp.float32) -> "KVCache":
        """An empty cache of S = max_len slots."""
        k_shape = (batch, num_kv_heads, head_dim, max_len)
        v_shape = (batch, num_kv_heads, max_len, head_dim)
        return cls(k_BKHS=tuple(jnp.zeros(k_shape, dtype) for _ in range(num_layers)),
                   v_BKSH=tuple(jnp.zeros(v_shape, dtype) for _ in range(num_layers)),
                   lengths_B=jnp.zeros((batch,), jnp.int32), end=jnp.zeros((), jnp.int32))

    @property
    def max_len(self) -> int:
        """S, the number of slots."""
        return self.v_BKSH[0].shape[2]

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
