"""Full-sequence causal attention, one function per backend, chosen by `ModelConfig.attention`.

All take q_BTKRH (queries grouped by kv head), k_BTKH, v_BTKH and mask_BT (True = real token;
causal masking is implied) and return o_BTKRH in the compute dtype. Scores and softmax are fp32.

  xla      the reference: full [B, K, R, T, T] fp32 scores (what the model always did before)
  chunked  blockwise (query blocks x key blocks) with an online softmax; each query block is
           rematerialised in the backward pass, so no more than one [B, K, R, c, T] block of
           scores is ever live; key blocks without an allowed pair are skipped (with packed
           segment ids also those holding only other segments' keys, per device). Pure XLA:
           the CPU default, and the fallback anywhere.
  cudnn    jax.nn.dot_product_attention(implementation="cudnn"): cuDNN flash attention (GPU,
           bf16/fp16 compute, head_dim % 8 == 0, <= 128)
  splash   the Pallas TPU splash-attention kernel (causal mask, padding as segment ids; packed
           segment ids pass straight through)

Packing: `mask_BT` may instead be int32 segment ids (0 = padding, 1, 2, ... = the packed
sequences of a row, rl/infra/packing.py). A query then attends only keys of its own segment
(causally); a bool mask keeps exactly the masks above (the padded path is untouched).

Padding: a query that may see no real key (a left-padding position) gets a meaningless but finite
output that differs between implementations (xla: the uniform average of all values; chunked:
of the values up to its query block; cudnn and splash: it sees itself). No real query ever attends
a padding key and no loss reads a padding position, so real positions, losses and gradients agree
to rounding across implementations (tested).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from execverify_jax.model import sharding as shd
from execverify_jax.model.config import ModelConfig

NEG = -1e30  # finite "minus infinity" for masked scores (fully masked rows stay finite)
_PAD_NEG = -3e38  # keys that only exist because T was padded to a block multiple: below NEG


def is_segments(mask_BT: jax.Array) -> bool:
    """True when `mask_BT` holds packed segment ids (an integer array), not a bool mask."""
    return jnp.issubdtype(mask_BT.dtype, jnp.integer)


def allowed(mask_BT: jax.Array, q_idx: jax.Array, k_idx: jax.Array) -> jax.Array:
    """ok_BTS for query rows q_idx and key columns k_idx of `mask_BT`: key real, and (segment
    ids) key in the query's own segment. Causality is the caller's."""
    k_BS = jnp.take(mask_BT, k_idx, axis=1)
    if not is_segments(mask_BT):
        return k_BS.astype(jnp.bool_)[:, None, :]
    q_BT = jnp.take(mask_BT, q_idx, axis=1)
    return (k_BS > 0)[:, None, :] & (q_BT[:, :, None] == k_BS[:, None, :])


def block_schedule(mask_BT: jax.Array, c: int) -> jax.Array:
    """need_nn[i, j]: does query block i (of c positions) need key block j in `attend_chunked`?

    Bool masks: every causal block (j <= i). Segment ids: j == i, or j < i and some row's key
    block j and query block i have overlapping [min, max] ranges of real segment ids (a
    necessary condition for a same-segment pair; for packed rows, whose segments are contiguous,
    also sufficient). A block whose keys all belong to other segments than its queries, or are
    padding, is skipped: its scores would all be masked, and a masked block changes no real
    query's online softmax (its weight exp(NEG - m) is 0 once a real key was seen, and the
    rescale exp(NEG - m_real) = 0 wipes it if seen first). The diagonal block always runs, so a
    padding query keeps a finite output. One decision for the whole batch (any row needs it).
    mask_BT's length must be a multiple of c.
    """
    B, Tp = mask_BT.shape
    n = Tp // c
    ij_causal = jnp.tril(jnp.ones((n, n), jnp.bool_))
    if not is_segments(mask_BT):
        return ij_causal
    seg_Bnc = mask_BT.astype(jnp.int32).reshape(B, n, c)
    lo_Bn = jnp.min(jnp.where(seg_Bnc > 0, seg_Bnc, jnp.iinfo(jnp.int32).max), axis=-1)
    hi_Bn = jnp.max(seg_Bnc, axis=-1)  # 0 for an all-padding block: overlaps nothing
    overlap_Bnn = (lo_Bn[:, None, :] <= hi_Bn[:, :, None]) & (lo_Bn[:, :, None] <= hi_Bn[:, None, :])
    return (ij_causal & jnp.any(overlap_Bnn, axis=0)) | jnp.eye(n, dtype=jnp.bool_)


def causal_padding_mask(mask_BT: jax.Array) -> jax.Array:
    """mask_BTS for a full-sequence forward: causal and key not padding (any padding side);
    with segment ids also key and query in the same segment."""
    T = mask_BT.shape[1]
    causal_TS = jnp.tril(jnp.ones((T, T), jnp.bool_))
    if not is_segments(mask_BT):
        return causal_TS[None] & mask_BT.astype(jnp.bool_)[:, None, :]
    idx = jnp.arange(T)
    return causal_TS[None] & allowed(mask_BT, idx, idx)


def masked_softmax(s_BKRTS: jax.Array, mask_BTS: jax.Array, dtype) -> jax.Array:
    """softmax over S of fp32 scores, masked slots at a large finite negative value."""
    s_BKRTS = jnp.where(mask_BTS[:, None, None, :, :], s_BKRTS, NEG)
    return jax.nn.softmax(s_BKRTS, axis=-1).astype(dtype)


def resolve(cfg: ModelConfig, T: int) -> str:
    """The implementation `cfg.attention` means for a length-T call on the default backend."""
    impl = cfg.attention
    if impl != "auto":
        return impl
    backend = jax.default_backend()
    if (backend == "gpu" and cfg.dtype in ("bfloat16", "float16") and cfg.head_dim % 8 == 0
            and cfg.head_dim <= 128):
        return "cudnn"
    if backend == "tpu":
        return "splash"
    return "xla" if T <= cfg.attention_chunk else "chunked"


def attend(cfg: ModelConfig, q_BTKRH: jax.Array, k_BTKH: jax.Array, v_BTKH: jax.Array,
           mask_BT: jax.Array) -> jax.Array:
    """Causal self-attention over this call's own T tokens with the configured implementation."""
    impl = resolve(cfg, q_BTKRH.shape[1])
    if impl == "xla":
        return attend_xla(q_BTKRH, k_BTKH, v_BTKH, mask_BT)
    if impl == "chunked":
        return attend_chunked_per_shard(q_BTKRH, k_BTKH, v_BTKH, mask_BT, cfg.attention_chunk)
    if impl == "cudnn":
        return attend_cudnn(q_BTKRH, k_BTKH, v_BTKH, mask_BT)
    return attend_splash(q_BTKRH, k_BTKH, v_BTKH, mask_BT)


def attend_xla(q_BTKRH, k_BTKH, v_BTKH, mask_BT) -> jax.Array:
    """The reference: all T x T fp32 scores at once."""
    dtype, H = q_BTKRH.dtype, q_BTKRH.shape[-1]
    s_BKRTS = jnp.einsum("btkrh,bskh->bkrts", q_BTKRH, k_BTKH, preferred_element_type=jnp.float32) * (H ** -0.5)
    p_BKRTS = masked_softmax(s_BKRTS, causal_padding_mask(mask_BT), dtype)
    return jnp.einsum("bkrts,bskh->btkrh", p_BKRTS, v_BTKH)


def block_size(T: int, chunk: int) -> int:
    """The block of `attend_chunked` for T positions: ceil(T / chunk) equal blocks, rounded up to
    a multiple of 8 where that still fits `chunk` (T = 640, chunk 512 -> 2 blocks of 320)."""
    n = -(-T // chunk)
    c = -(-T // n)
    if c % 8 and c + 8 - c % 8 <= chunk:
        c += 8 - c % 8
    return c


def attend_chunked(q_BTKRH, k_BTKH, v_BTKH, mask_BT, chunk: int) -> jax.Array:
    """Blockwise attention with an online softmax (Rabe & Staats; FlashAttention's recurrence).

    T is cut into n = ceil(T / chunk) blocks of equal size c <= chunk (rounded up to a multiple of
    8), padding at most 8n - 1 positions: blocks of exactly `chunk` would pad T = 640 to 1,024
    with chunk 512 (3x the time of the full square on CPU, docs/MODEL.md). For query block i, a
    scan over key blocks j keeps the running
    max m, normaliser l and unnormalised output acc. Key blocks that `block_schedule` rules out
    (above the diagonal; with segment ids also those holding only other segments' keys) are
    skipped with lax.cond, in the backward pass too. The query-block body is
    `jax.checkpoint`ed: the backward pass recomputes one block's scores instead of saving all.
    """
    B, T, K, R, H = q_BTKRH.shape
    dtype = q_BTKRH.dtype
    c = block_size(T, chunk)
    n = -(-T // c)
    pad = n * c - T
    if pad:
        q_BTKRH = jnp.pad(q_BTKRH, ((0, 0), (0, pad), (0, 0), (0, 0), (0, 0)))
        k_BTKH = jnp.pad(k_BTKH, ((0, 0), (0, pad), (0, 0), (0, 0)))
        v_BTKH = jnp.pad(v_BTKH, ((0, 0), (0, pad), (0, 0), (0, 0)))
        mask_BT = jnp.pad(mask_BT, ((0, 0), (0, pad)))
    segments = is_segments(mask_BT)
    real_nBc = mask_BT.astype(jnp.bool_).reshape(B, n, c).swapaxes(0, 1)
    q_nBcKRH = q_BTKRH.reshape(B, n, c, K, R, H).swapaxes(0, 1)
    k_nBcKH = k_BTKH.reshape(B, n, c, K, H).swapaxes(0, 1)
    v_nBcKH = v_BTKH.reshape(B, n, c, K, H).swapaxes(0, 1)
    pos_nc = jnp.arange(n * c, dtype=jnp.int32).reshape(n, c)
    scale = H ** -0.5
    need_nn = block_schedule(mask_BT, c)

    @functools.partial(jax.checkpoint, prevent_cse=False)
    def query_block(i, q_BcKRH):
        qpos_c = pos_nc[i]

        def key_block(carry, j):
            def update(carry):
                m_BKRc, l_BKRc, acc_BKRcH = carry
                kpos_c = pos_nc[j]
                s_BKRcs = jnp.einsum("bqkrh,bskh->bkrqs", q_BcKRH, k_nBcKH[j],
                                     preferred_element_type=jnp.float32) * scale
                # A bool mask keeps the padded path's block slice; segment ids also compare q, k.
                keys_Bcs = allowed(mask_BT, qpos_c, kpos_c) if segments else real_nBc[j][:, None, :]
                ok_Bcs = (kpos_c[None, :] <= qpos_c[:, None])[None] & keys_Bcs
                s_BKRcs = jnp.where(ok_Bcs[:, None, None], s_BKRcs, NEG)
                s_BKRcs = jnp.where((kpos_c < T)[None, None, None, None, :], s_BKRcs, _PAD_NEG)
                m_new = jnp.maximum(m_BKRc, s_BKRcs.max(-1))
                corr = jnp.exp(m_BKRc - m_new)
                p_BKRcs = jnp.exp(s_BKRcs - m_new[..., None])
                pv_BKRcH = jnp.einsum("bkrqs,bskh->bkrqh", p_BKRcs.astype(dtype), v_nBcKH[j],
                                      preferred_element_type=jnp.float32)
                return (m_new, l_BKRc * corr + p_BKRcs.sum(-1), acc_BKRcH * corr[..., None] + pv_BKRcH)

            # Blocks with no allowed (query, key) pair: above the diagonal, or other segments only.
            return jax.lax.cond(need_nn[i, j], update, lambda c_: c_, carry), None

        init = (jnp.full((B, K, R, c), -jnp.inf, jnp.float32), jnp.zeros((B, K, R, c), jnp.float32),
                jnp.zeros((B, K, R, c, H), jnp.float32))
        (_, l_BKRc, acc_BKRcH), _ = jax.lax.scan(key_block, init, jnp.arange(n))
        o_BKRcH = acc_BKRcH / l_BKRc[..., None]
        return o_BKRcH.transpose(0, 3, 1, 2, 4).astype(dtype)

    o_nBcKRH = jax.lax.map(lambda a: query_block(*a), (jnp.arange(n), q_nBcKRH))
    return o_nBcKRH.swapaxes(0, 1).reshape(B, n * c, K, R, H)[:, :T]


def attend_chunked_per_shard(q_BTKRH, k_BTKH, v_BTKH, mask_BT, chunk: int) -> jax.Array:
    """`attend_chunked`, run per device (shard_map over batch and kv heads) for packed segment
    ids under active sharding rules, so each device's `block_schedule` follows its own rows.

    A jitted SPMD program takes one lax.cond branch on every device, so the plain call would
    run the union of the micro-batch's schedules: at the paper's shapes (micro-batch of 8
    buffers of 8192 tokens, 8 devices) 0.61 of the causal blocks instead of a buffer's own 0.35
    (benchmarks/bench_packing.py, docs/BENCHMARKS.md §12). A bool mask (the padded layout)
    keeps the plain call, unchanged.
    """
    active = shd.active()
    if active is None or active[0].size == 1 or not is_segments(mask_BT):
        return attend_chunked(q_BTKRH, k_BTKH, v_BTKH, mask_BT, chunk)
    mesh, rules = active
    # Whole kv heads per shard keep their R query heads with them (same K axis spec for q, k, v).
    q_spec = shd.logical_to_spec((shd.BATCH, None, shd.ACT_KV_HEADS, None, None), q_BTKRH.shape, mesh, rules)
    kv_spec = shd.logical_to_spec((shd.BATCH, None, shd.ACT_KV_HEADS, None), k_BTKH.shape, mesh, rules)
    if q_spec[0] is None or q_spec[2] != kv_spec[2]:  # rows not split: one schedule is per device anyway
        return attend_chunked(q_BTKRH, k_BTKH, v_BTKH, mask_BT, chunk)
    m_spec = jax.sharding.PartitionSpec(q_spec[0], None)
    return jax.shard_map(lambda q, k, v, m: attend_chunked(q, k, v, m, chunk), mesh=mesh,
                         in_specs=(q_spec, kv_spec, kv_spec, m_spec), out_specs=q_spec,
                         check_vma=False)(q_BTKRH, k_BTKH, v_BTKH, mask_BT)


def _self_or_real_mask(mask_BT: jax.Array) -> jax.Array:
    """mask_B1TS: causal, key real, or key == query (so padding queries have one key)."""
    T = mask_BT.shape[1]
    eye_TS = jnp.eye(T, dtype=jnp.bool_)
    return (causal_padding_mask(mask_BT) | eye_TS[None])[:, None]


def attend_cudnn(q_BTKRH, k_BTKH, v_BTKH, mask_BT) -> jax.Array:
    """cuDNN flash attention (GPU). The boolean mask carries padding; is_causal lets cuDNN skip
    the blocks above the diagonal. Only a [B, 1, T, T] bool mask is materialised."""
    B, T, K, R, H = q_BTKRH.shape
    o_BTNH = jax.nn.dot_product_attention(
        q_BTKRH.reshape(B, T, K * R, H), k_BTKH, v_BTKH, mask=_self_or_real_mask(mask_BT),
        is_causal=True, implementation="cudnn")
    return o_BTNH.reshape(B, T, K, R, H)


def attend_splash(q_BTKRH, k_BTKH, v_BTKH, mask_BT, block: int = 128) -> jax.Array:
    """Pallas splash attention (TPU): causal mask, real/padding tokens as segment ids 1/0 (a
    padding query sees padding keys, never a real one). T is padded to a multiple of `block`.
    Under active sharding rules the kernel runs per shard (shard_map over batch and heads)."""
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm

    B, T, K, R, H = q_BTKRH.shape
    N = K * R
    pad = -T % block
    Tp = T + pad
    # A bool mask becomes segments 1 (real) / 0 (padding); packed segment ids are used as given.
    seg_BT = jnp.pad(mask_BT.astype(jnp.int32), ((0, 0), (0, pad)))
    q_BNTH = jnp.pad((q_BTKRH * (H ** -0.5)).reshape(B, T, N, H),
                     ((0, 0), (0, pad), (0, 0), (0, 0))).transpose(0, 2, 1, 3)
    k_BKTH = jnp.pad(k_BTKH, ((0, 0), (0, pad), (0, 0), (0, 0))).transpose(0, 2, 1, 3)
    v_BKTH = jnp.pad(v_BTKH, ((0, 0), (0, pad), (0, 0), (0, 0))).transpose(0, 2, 1, 3)

    def local(q_bNTH, k_bKTH, v_bKTH, seg_bT):
        n_local = q_bNTH.shape[1]
        mask = sm.MultiHeadMask([sm.CausalMask((Tp, Tp)) for _ in range(n_local)])
        kernel = sk.make_splash_mha(mask, head_shards=1, q_seq_shards=1)
        seg = sk.SegmentIds(q=seg_bT, kv=seg_bT)
        return jax.vmap(kernel)(q_bNTH, k_bKTH, v_bKTH, segment_ids=seg)

    active = shd.active()
    if active is None or active[0].size == 1:
        o_BNTH = local(q_BNTH, k_BKTH, v_BKTH, seg_BT)
    else:
        mesh, rules = active
        # Heads are split only when both N and K divide, so each shard keeps whole GQA groups.
        heads = shd.ACT_HEADS if shd.logical_to_spec((shd.ACT_KV_HEADS,), (K,), mesh, rules)[0] else None
        q_spec = shd.logical_to_spec((shd.BATCH, heads, None, None), (B, N, Tp, H), mesh, rules)
        kv_spec = shd.logical_to_spec((shd.BATCH, heads, None, None), (B, K, Tp, H), mesh, rules)
        if q_spec[1] != kv_spec[1]:
            q_spec = kv_spec = shd.logical_to_spec((shd.BATCH, None, None, None), (B, N, Tp, H), mesh, rules)
        seg_spec = jax.sharding.PartitionSpec(q_spec[0], None)
        o_BNTH = jax.shard_map(local, mesh=mesh, in_specs=(q_spec, kv_spec, kv_spec, seg_spec),
                               out_specs=q_spec, check_vma=False)(q_BNTH, k_BKTH, v_BKTH, seg_BT)
    return o_BNTH.transpose(0, 2, 1, 3)[:, :T].reshape(B, T, K, R, H)
