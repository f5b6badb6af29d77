"""Flax NNX decoder for the Qwen2 / Llama families: GQA, RoPE, RMSNorm, SwiGLU.

Shape letters: B batch, T query length, S key/cache length, D width, F mlp hidden, V vocab,
N query heads, K kv heads, R = N // K, H head dim, L layers.

Parameters carry `logical_axes` metadata (see sharding.py); activations are constrained with
`shard(...)`, a no-op unless sharding rules are active. Weights are stored in `param_dtype` and cast
to the compute `dtype` on use; RMSNorm statistics, attention softmax and logits are fp32.
The full-sequence forward takes `mask_BT` (True = real token; causal masking implied) and runs the
attention implementation `cfg.attention` selects (attention.py); the cached decode step takes a
boolean `mask_BTS` (True = may attend). Masked scores get a large finite negative value instead of
-inf so fully masked rows (left padding) stay finite.
The L blocks are stacked ([L, ...] parameters) and scanned (see Transformer).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from execverify_jax.model import attention as attn
from execverify_jax.model import sharding as shd
from execverify_jax.model.config import ModelConfig
from execverify_jax.model.kv_cache import KVCache

NORMAL = jax.nn.initializers.normal(0.02)  # the HF default std
ZEROS = jax.nn.initializers.zeros
ONES = jax.nn.initializers.ones
_KEYLESS = (ZEROS, ONES)  # they draw no key, so every seed gives the weights it always gave


def _param(rngs: nnx.Rngs, shape: tuple[int, ...], axes: tuple[str, ...], dtype,
           init: jax.nn.initializers.Initializer, layers: int | None = None) -> nnx.Param:
    """A parameter with logical axes, drawn in fp32 by a `jax.nn.initializers` function.

    `layers=L` stacks L independent copies along a leading axis named `layers`.
    """
    if layers is not None:
        shape, axes = (layers,) + tuple(shape), (shd.LAYERS,) + tuple(axes)
    key = None if init in _KEYLESS else rngs.params()
    return nnx.Param(init(key, shape, jnp.float32).astype(dtype), logical_axes=axes)


def weight_matmul(cfg: ModelConfig, spec: str, x: jax.Array, w: jax.Array) -> jax.Array:
    """einsum(spec, x, w) for a weight matmul, result in x's (compute) dtype.

    By default both inputs are in the compute dtype. With `cfg.matmul_dtype` set, both are cast
    to it and the product is accumulated in the compute dtype (e.g. bf16 x bf16 -> fp32). On
    XLA:CPU this is 1.5x faster per matmul than fp32 and halves the weight bytes a decode step
    streams; casting bf16 weights *up* to fp32 instead would stream them twice (measured).
    """
    dt = x.dtype
    if cfg.matmul_dtype is None or jnp.dtype(cfg.matmul_dtype) == dt:
        return jnp.einsum(spec, x, w.astype(dt))
    mdt = jnp.dtype(cfg.matmul_dtype)
    return jnp.einsum(spec, x.astype(mdt), w.astype(mdt), preferred_element_type=dt)


def rope_inv_freq(cfg: ModelConfig) -> np.ndarray:
    """Inverse RoPE frequencies (H/2,), float32, as transformers computes them (default / llama3)."""
    H = cfg.head_dim
    inv = (1.0 / (cfg.rope_theta ** (np.arange(0, H, 2, dtype=np.int64).astype(np.float32) / H))).astype(np.float32)
    if cfg.rope_type == "llama3":
        factor, lo, hi = cfg.rope_factor, cfg.rope_low_freq_factor, cfg.rope_high_freq_factor
        old = cfg.rope_original_max_positions
        low_wavelen, high_wavelen = old / lo, old / hi
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
        inv = np.where(medium, smoothed, scaled).astype(np.float32)
    return inv


def apply_rope(x_BTNH: jax.Array, positions_BT: jax.Array, inv_freq: np.ndarray) -> jax.Array:
    """Rotary embedding in the HF "rotate_half" layout (first/second half of H are the pairs)."""
    angles_BTh = positions_BT.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)[None, None, :]
    cos = jnp.cos(angles_BTh)[:, :, None, :].astype(x_BTNH.dtype)
    sin = jnp.sin(angles_BTh)[:, :, None, :].astype(x_BTNH.dtype)
    x1, x2 = jnp.split(x_BTNH, 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


class RMSNorm(nnx.Module):
    """RMSNorm with fp32 statistics (as transformers)."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, layers: int | None = None):
        self.eps = cfg.rms_norm_eps
        self.dtype = jnp.dtype(cfg.dtype)
        self.scale = _param(rngs, (cfg.hidden_size,), (shd.NORM,), cfg.param_dtype, ONES, layers)

    def __call__(self, x_BTD: jax.Array) -> jax.Array:
        x32 = x_BTD.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return y.astype(self.dtype) * self.scale[...].astype(self.dtype).reshape((1,) * (y.ndim - 1) + (-1,))


def _attend_cached(q_BTKRH: jax.Array, k_BTKH: jax.Array, v_BTKH: jax.Array, mask_BTS: jax.Array,
                   kv: tuple[jax.Array, jax.Array, jax.Array], dtype
                   ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """Writes this call's keys/values into one layer's cache at slots [end, end + T), then
    attends over all S slots; returns (o_BTKRH, the updated (k_BKHS, v_BKSH))."""
    B, T, K, R, H = q_BTKRH.shape
    k_BKHS, v_BKSH, end = kv
    # The cache stores keys as [.., H, S] and values as [.., S, H]: exactly the operand layouts of
    # the two attention matmuls, so no per-step transpose of a whole layer.
    k_BKHS = jax.lax.dynamic_update_slice(k_BKHS, k_BTKH.transpose(0, 2, 3, 1).astype(k_BKHS.dtype), (0, 0, 0, end))
    v_BKSH = jax.lax.dynamic_update_slice(v_BKSH, v_BTKH.transpose(0, 2, 1, 3).astype(v_BKSH.dtype), (0, 0, end, 0))
    # Queries as [B, K, M = T*R, H] so both matmuls are plain batched [M, H] x [H, S] and
    # [M, S] x [S, H] products (the forms XLA:CPU runs fastest; measured).
    q_BKMH = q_BTKRH.transpose(0, 2, 1, 3, 4).reshape(B, K, T * R, H)
    s_BKMS = jnp.einsum("bkmh,bkhs->bkms", q_BKMH, k_BKHS.astype(dtype),
                        preferred_element_type=jnp.float32) * (H ** -0.5)
    p_BKRTS = attn.masked_softmax(s_BKMS.reshape(B, K, T, R, -1).transpose(0, 1, 3, 2, 4), mask_BTS, dtype)
    p_BKMS = p_BKRTS.transpose(0, 1, 3, 2, 4).reshape(B, K, T * R, -1)
    o_BKMH = jnp.einsum("bkms,bksh->bkmh", p_BKMS, v_BKSH.astype(dtype))
    return o_BKMH.reshape(B, K, T, R, H).transpose(0, 2, 1, 3, 4), (k_BKHS, v_BKSH)


class Attention(nnx.Module):
    """Grouped-query attention with RoPE; optional q/k/v (Qwen2) and o (Llama) biases."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, layers: int | None = None):
        D, N, K, H, pd = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.param_dtype
        self.cfg = cfg
        self.wq = _param(rngs, (D, N, H), (shd.EMBED, shd.Q_HEADS, shd.HEAD_DIM), pd, NORMAL, layers)
        self.wk = _param(rngs, (D, K, H), (shd.EMBED, shd.KV_HEADS, shd.HEAD_DIM), pd, NORMAL, layers)
        self.wv = _param(rngs, (D, K, H), (shd.EMBED, shd.KV_HEADS, shd.HEAD_DIM), pd, NORMAL, layers)
        self.wo = _param(rngs, (N, H, D), (shd.Q_HEADS, shd.HEAD_DIM, shd.EMBED), pd, NORMAL, layers)
        if cfg.qkv_bias:
            self.bq = _param(rngs, (N, H), (shd.Q_HEADS, shd.HEAD_DIM), pd, ZEROS, layers)
            self.bk = _param(rngs, (K, H), (shd.KV_HEADS, shd.HEAD_DIM), pd, ZEROS, layers)
            self.bv = _param(rngs, (K, H), (shd.KV_HEADS, shd.HEAD_DIM), pd, ZEROS, layers)
        if cfg.o_bias:
            self.bo = _param(rngs, (D,), (shd.EMBED,), pd, ZEROS, layers)

    def _proj(self, x_BTD: jax.Array, name: str) -> jax.Array:
        dt = x_BTD.dtype
        y = weight_matmul(self.cfg, "btd,dkh->btkh", x_BTD, getattr(self, "w" + name)[...])
        if self.cfg.qkv_bias:
            y = y + getattr(self, "b" + name)[...].astype(dt)[None, None]
        return y

    def __call__(self, x_BTD: jax.Array, positions_BT: jax.Array, mask: jax.Array,
                 kv: tuple[jax.Array, jax.Array, jax.Array] | None = None, capture_kv: bool = False
                 ) -> tuple[jax.Array, tuple[jax.Array, jax.Array] | None]:
        """Self-attention -> (y_BTD, kv_out).

        Without `kv` (full sequence): `mask` is mask_BT (real tokens; causal is implied), keys are
        this call's tokens, attention runs with `cfg.attention` (attention.py); with `capture_kv`
        kv_out is this call's (k_BTKH, v_BTKH) after RoPE (prefill writes them into the cache).
        With `kv = (k_BKHS, v_BKSH, end)` (this layer's cache): `mask` is mask_BTS, this call's
        keys/values are written at slots [end, end + T), the queries attend over all S slots and
        kv_out is the updated (k_BKHS, v_BKSH) (XLA updates the donated cache in place).
        """
        cfg = self.cfg
        B, T, _ = x_BTD.shape
        K, R, H = cfg.num_kv_heads, cfg.num_groups, cfg.head_dim
        inv_freq = rope_inv_freq(cfg)  # numpy constant, computed at trace time
        q_BTNH = shd.shard(apply_rope(self._proj(x_BTD, "q"), positions_BT, inv_freq),
                           (shd.BATCH, shd.LENGTH, shd.ACT_HEADS, None))
        k_BTKH = apply_rope(self._proj(x_BTD, "k"), positions_BT, inv_freq)
        v_BTKH = self._proj(x_BTD, "v")
        q_BTKRH = q_BTNH.reshape(B, T, K, R, H)
        if kv is None:
            o_BTKRH = attn.attend(cfg, q_BTKRH, k_BTKH, v_BTKH, mask)
            kv_out = (k_BTKH, v_BTKH) if capture_kv else None
        else:
            o_BTKRH, kv_out = _attend_cached(q_BTKRH, k_BTKH, v_BTKH, mask, kv, x_BTD.dtype)
        o_BTNH = shd.shard(o_BTKRH.reshape(B, T, K * R, H), (shd.BATCH, shd.LENGTH, shd.ACT_HEADS, None))
        y_BTD = weight_matmul(cfg, "btnh,nhd->btd", o_BTNH, self.wo[...])
        if cfg.o_bias:
            y_BTD = y_BTD + self.bo[...].astype(x_BTD.dtype)[None, None]
        return y_BTD, kv_out


class MLP(nnx.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, layers: int | None = None):
        D, F, pd = cfg.hidden_size, cfg.intermediate_size, cfg.param_dtype
        self.cfg = cfg
        self.w_gate = _param(rngs, (D, F), (shd.EMBED, shd.MLP), pd, NORMAL, layers)
        self.w_up = _param(rngs, (D, F), (shd.EMBED, shd.MLP), pd, NORMAL, layers)
        self.w_down = _param(rngs, (F, D), (shd.MLP, shd.EMBED), pd, NORMAL, layers)

    def __call__(self, x_BTD: jax.Array) -> jax.Array:
        g_BTF = weight_matmul(self.cfg, "btd,df->btf", x_BTD, self.w_gate[...])
        u_BTF = weight_matmul(self.cfg, "btd,df->btf", x_BTD, self.w_up[...])
        h_BTF = shd.shard(jax.nn.silu(g_BTF) * u_BTF, (shd.BATCH, shd.LENGTH, shd.ACT_MLP))
        return weight_matmul(self.cfg, "btf,fd->btd", h_BTF, self.w_down[...])


class Block(nnx.Module):
    """Pre-norm decoder block: x + attn(norm(x)); x + mlp(norm(x)).

    `layers=L` builds the L blocks of a model at once, every parameter stacked on a leading
    `layers` axis; a block with one layer's slices (`layer_block`) is what runs.
    """

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs, layers: int | None = None):
        self.attn_norm = RMSNorm(cfg, rngs, layers)
        self.attn = Attention(cfg, rngs, layers)
        self.mlp_norm = RMSNorm(cfg, rngs, layers)
        self.mlp = MLP(cfg, rngs, layers)

    def __call__(self, x_BTD: jax.Array, positions_BT: jax.Array, mask: jax.Array,
                 kv: tuple | None = None, capture_kv: bool = False) -> tuple[jax.Array, tuple | None]:
        """One block; `mask`, `kv`, `capture_kv` and the returned kv as in Attention."""
        h_BTD, kv_out = self.attn(self.attn_norm(x_BTD), positions_BT, mask, kv, capture_kv)
        x_BTD = shd.shard(x_BTD + h_BTD, (shd.BATCH, shd.LENGTH, shd.ACT_EMBED))
        x_BTD = shd.shard(x_BTD + self.mlp(self.mlp_norm(x_BTD)), (shd.BATCH, shd.LENGTH, shd.ACT_EMBED))
        return x_BTD, kv_out


def remat_policy(name: str):
    """The jax.checkpoint policy for a ModelConfig.remat_policy name (config.REMAT_POLICIES)."""
    cp = jax.checkpoint_policies
    if name == "offload_dots":
        return cp.offload_dot_with_no_batch_dims("device", "pinned_host")
    return getattr(cp, name)


def causal_padding_mask(mask_BT: jax.Array) -> jax.Array:
    """mask_BTS for a full-sequence forward: causal and key not padding (any padding side)."""
    return attn.causal_padding_mask(mask_BT)


def positions_from_mask(mask_BT: jax.Array) -> jax.Array:
    """Position ids counting only real tokens (cumsum - 1, clipped at 0), as HF generate does."""
    return jnp.maximum(jnp.cumsum(mask_BT.astype(jnp.int32), axis=1) - 1, 0)


class Transformer(nnx.Module):
    """The decoder: embed -> L blocks -> final RMSNorm -> lm_head (or tied embedding).

    The L blocks are one stacked `Block` (`self.layers`, parameters [L, ...]). Every forward is a
    pure function of the parameter values: the layer loop splits `self.layers` into (graphdef,
    state), and each step merges one layer's slice of the state into a fresh block inside the
    traced body, so no module crosses a trace level (lax.scan, jax.checkpoint, lax.map).
    """

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embedding = _param(rngs, (cfg.vocab_size, cfg.hidden_size), (shd.VOCAB, shd.EMBED),
                                cfg.param_dtype, NORMAL)
        self.layers = Block(cfg, rngs, layers=cfg.num_layers)
        self.final_norm = RMSNorm(cfg, rngs)
        if not cfg.tie_word_embeddings:
            self.lm_head = _param(rngs, (cfg.hidden_size, cfg.vocab_size), (shd.EMBED, shd.VOCAB),
                                  cfg.param_dtype, NORMAL)

    def embed(self, tokens_BT: jax.Array) -> jax.Array:
        """Token embeddings in the compute dtype."""
        x_BTD = jnp.take(self.embedding[...], tokens_BT, axis=0).astype(self.cfg.dtype)
        return shd.shard(x_BTD, (shd.BATCH, shd.LENGTH, shd.ACT_EMBED))

    def head_weight(self) -> jax.Array:
        """The output projection: lm_head [D, V], or the tied embedding [V, D]."""
        return self.embedding[...] if self.cfg.tie_word_embeddings else self.lm_head[...]

    def logits(self, h_BTD: jax.Array) -> jax.Array:
        """fp32 logits from final hidden states (already normed)."""
        return project_logits(self.cfg, h_BTD, self.head_weight())

    def layer_stack(self) -> tuple[nnx.GraphDef, nnx.State]:
        """(graphdef, state [L, ...]) of the stacked blocks; `layer_block(g, s, i)` is layer i."""
        return nnx.split(self.layers)

    def _run_layers(self, x_BTD: jax.Array, positions_BT: jax.Array, mask_BT: jax.Array,
                    capture_kv: bool = False) -> tuple[jax.Array, tuple | None]:
        """All blocks of a full-sequence forward -> (x_BTD, (k_LBTKH, v_LBTKH) if capture_kv)."""
        cfg = self.cfg
        graphdef, stack = self.layer_stack()

        def body(x_BTD, layer_state):
            block = nnx.merge(graphdef, layer_state)
            return block(x_BTD, positions_BT, mask_BT, capture_kv=capture_kv)

        if cfg.remat:
            body = jax.checkpoint(body, policy=remat_policy(cfg.remat_policy), prevent_cse=not cfg.scan_layers)
        elif cfg.scan_layers:
            # A scanned body without remat would make scan's partial evaluation stack, for every
            # layer, the block masks that the chunked attention's own remat recomputes (T x T per
            # layer; measured with memory_analysis). Saving the weight-matmul outputs instead keeps
            # what an unrolled non-remat forward keeps, bar cheap elementwise ops.
            body = jax.checkpoint(body, policy=remat_policy("dots_with_no_batch_dims_saveable"),
                                  prevent_cse=False)
        if cfg.scan_layers:
            return jax.lax.scan(body, x_BTD, stack)
        kvs = []
        for i in range(cfg.num_layers):
            x_BTD, kv = body(x_BTD, jax.tree.map(lambda a: a[i], stack))
            kvs.append(kv)
        return x_BTD, (jax.tree.map(lambda *a: jnp.stack(a), *kvs) if capture_kv else None)

    def hidden(self, tokens_BT: jax.Array, positions_BT: jax.Array | None = None,
               mask_BT: jax.Array | None = None) -> jax.Array:
        """Final-normed hidden states h_BTD of a full-sequence forward (no cache).

        `mask_BT` is a bool real-token mask or, for packed rows, int32 segment ids (0 = padding;
        attention stays inside a segment) together with per-segment `positions_BT`.
        """
        if mask_BT is None:
            mask_BT = jnp.ones(tokens_BT.shape, jnp.bool_)
        if positions_BT is None:
            positions_BT = positions_from_mask(mask_BT)
        if not attn.is_segments(mask_BT):  # packed rows keep their int32 segment ids
            mask_BT = mask_BT.astype(jnp.bool_)
        x_BTD, _ = self._run_layers(self.embed(tokens_BT), positions_BT, mask_BT)
        return self.final_norm(x_BTD)

    def __call__(self, tokens_BT: jax.Array, positions_BT: jax.Array | None = None,
                 mask_BT: jax.Array | None = None) -> jax.Array:
        """Full-sequence forward -> logits_BTV (fp32).

        mask_BT marks real tokens (either padding side); positions default to counting real
        tokens only, so left-padded rows get the same positions as unpadded ones.
        """
        return self.logits(self.hidden(tokens_BT, positions_BT, mask_BT))

    def prefill(self, prompt_BP: jax.Array, lengths_B: jax.Array, max_len: int,
                cache_dtype=None) -> tuple[jax.Array, KVCache]:
        """Left-padded prompts -> (logits_BV of each row's last prompt token, a KVCache of
        `max_len` slots holding the prompts in slots [0, P)).

        Attention runs over the P prompt positions only (the full-sequence path with
        `cfg.attention`), then each layer's keys/values are written into the cache.
        """
        cfg = self.cfg
        B, P = prompt_BP.shape
        dtype = jnp.dtype(cache_dtype or cfg.dtype)
        mask_BP = jnp.arange(P, dtype=jnp.int32)[None, :] >= (P - lengths_B)[:, None]
        positions_BP = jnp.maximum(lengths_B[:, None] - P + jnp.arange(P, dtype=jnp.int32)[None, :], 0)
        x_BPD, (k_LBPKH, v_LBPKH) = self._run_layers(self.embed(prompt_BP), positions_BP, mask_BP,
                                                     capture_kv=True)
        pad = max_len - P
        k_axes = (shd.BATCH, shd.ACT_KV_HEADS, None, shd.LENGTH)
        v_axes = (shd.BATCH, shd.ACT_KV_HEADS, shd.LENGTH, None)
        k_cache = tuple(shd.shard(jnp.pad(k_LBPKH[i].transpose(0, 2, 3, 1).astype(dtype),
                                          ((0, 0), (0, 0), (0, 0), (0, pad))), k_axes)
                        for i in range(cfg.num_layers))
        v_cache = tuple(shd.shard(jnp.pad(v_LBPKH[i].transpose(0, 2, 1, 3).astype(dtype),
                                          ((0, 0), (0, 0), (0, pad), (0, 0))), v_axes)
                        for i in range(cfg.num_layers))
        cache = KVCache(k_BKHS=k_cache, v_BKSH=v_cache, lengths_B=lengths_B.astype(jnp.int32),
                        end=jnp.asarray(P, jnp.int32))
        # Left padding puts every row's last prompt token at position P - 1.
        logits_BV = self.logits(self.final_norm(x_BPD[:, -1:]))[:, 0]
        return logits_BV, cache

    def unstacked_layers(self) -> list[nnx.State]:
        """Each layer's slice of the stacked block parameters, as separate arrays (decode)."""
        _, stack = self.layer_stack()
        return [jax.tree.map(lambda a: a[i], stack) for i in range(self.cfg.num_layers)]

    def decode_step(self, tokens_BT: jax.Array, cache: KVCache, lengths_B: jax.Array,
                    last_only: bool = False, layers: list[nnx.State] | None = None
                    ) -> tuple[jax.Array, KVCache]:
        """Forward T new tokens per row against the KV cache -> (logits_BTV, updated cache).

        The tokens are written at cache slots [cache.end, cache.end + T); `lengths_B` is each
        row's number of real tokens after this call (prefill: the prompt lengths; decode:
        cache.lengths_B + T). Rows are left-aligned to the write slot, i.e. left-padded.
        `last_only` computes logits for the last position only.
        The layers run unrolled (one cache array per layer; see kv_cache.py and docs/MODEL.md).
        `layers` (from `unstacked_layers()`, sliced once outside a decode loop) avoids slicing
        the stacked parameters inside the loop, which XLA:CPU redid on every step (measured).
        """
        T = tokens_BT.shape[1]
        new_cache = cache.advance(T, lengths_B)
        positions_BT = lengths_B[:, None] - T + jnp.arange(T, dtype=jnp.int32)[None, :]
        positions_BT = jnp.maximum(positions_BT, 0)
        mask_BTS = new_cache.attention_mask(T)
        x_BTD = self.embed(tokens_BT)
        graphdef, _ = self.layer_stack()
        layers = self.unstacked_layers() if layers is None else layers
        k_cache, v_cache = [], []
        for i in range(self.cfg.num_layers):
            block = nnx.merge(graphdef, layers[i])
            x_BTD, (k_BKHS, v_BKSH) = block(x_BTD, positions_BT, mask_BTS,
                                           (cache.k_BKHS[i], cache.v_BKSH[i], cache.end))
            k_cache.append(k_BKHS)
            v_cache.append(v_BKSH)
        if last_only:
            x_BTD = x_BTD[:, -1:]
        logits_BTV = self.logits(self.final_norm(x_BTD))
        return logits_BTV, new_cache.replace(k_BKHS=tuple(k_cache), v_BKSH=tuple(v_cache))


def project_logits(cfg: ModelConfig, h_BTD: jax.Array, w: jax.Array) -> jax.Array:
    """fp32 logits of hidden states under the output weight `w` (Transformer.head_weight)."""
    dt = jnp.dtype(cfg.matmul_dtype or h_BTD.dtype)
    spec = "btd,vd->btv" if cfg.tie_word_embeddings else "btd,dv->btv"
    out = jnp.einsum(spec, h_BTD.astype(dt), w.astype(dt), preferred_element_type=jnp.float32)
    return shd.shard(out, (shd.BATCH, shd.LENGTH, shd.ACT_VOCAB))
