"""Stacked/scanned layers, remat policies, attention implementations, prefill over the prompt."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from execverify_jax.model import attention as attn
from execverify_jax.model.config import ModelConfig
from execverify_jax.model.kv_cache import KVCache
from execverify_jax.model.params import abstract_model, create_model

CFG = ModelConfig.tiny(num_layers=3)


def _batch(B=3, T=21, V=512, seed=0):
    rng = np.random.RandomState(seed)
    tokens = jnp.asarray(rng.randint(0, V, (B, T)), jnp.int32)
    mask = np.ones((B, T), bool)
    mask[1, :6] = False  # left padding
    mask[2, 15:] = False  # right padding
    mask[2, :2] = False  # and both
    return tokens, jnp.asarray(mask)


@pytest.fixture(scope="module")
def params():
    return nnx.split(create_model(CFG, seed=3))[1]


def _run(cfg, params, tokens, mask):
    """(logits, grads of a masked loss) for `cfg`'s layer loop / remat / attention settings."""
    graphdef = abstract_model(cfg)[0]

    def loss(p):
        logits = nnx.merge(graphdef, p)(tokens, mask_BT=mask)
        return jnp.sum(jnp.where(mask[..., None], logits, 0.0) ** 2) * 1e-3, logits

    (_, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    return np.asarray(logits), grads


def _assert_grads_close(g1, g2, atol=1e-6):
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=atol)


def test_layers_are_stacked_with_a_layers_axis():
    _, abstract = abstract_model(CFG)
    wq = abstract["layers"]["attn"]["wq"]
    assert wq.get_value().shape == (3, 64, 4, 16)
    assert wq.get_metadata()["logical_axes"][0] == "layers"


def test_scanned_unrolled_and_remat_policies_agree(params):
    tokens, mask = _batch()
    ref_logits, ref_grads = _run(CFG.replace(scan_layers=False, attention="xla"), params, tokens, mask)
    m = np.asarray(mask)
    for kw in (dict(attention="xla"),
               dict(remat=True, remat_policy="nothing_saveable", attention="xla"),
               dict(remat=True, remat_policy="dots_with_no_batch_dims_saveable", scan_layers=False),
               dict(remat=True, remat_policy="dots_saveable", attention="chunked", attention_chunk=8)):
        logits, grads = _run(CFG.replace(**kw), params, tokens, mask)
        np.testing.assert_allclose(logits[m], ref_logits[m], atol=1e-5, err_msg=str(kw))
        _assert_grads_close(grads, ref_grads)


@pytest.mark.parametrize("chunk", [4, 7, 32])
def test_chunked_attention_equals_reference_with_padding(chunk):
    B, T, K, R, H = 3, 21, 2, 2, 16
    rng = np.random.RandomState(chunk)
    q, k, v = (jnp.asarray(rng.randn(*s), jnp.float32) for s in ((B, T, K, R, H), (B, T, K, H), (B, T, K, H)))
    _, mask = _batch(B, T)
    ref = attn.attend_xla(q, k, v, mask)
    got = attn.attend_chunked(q, k, v, mask, chunk)
    # Queries of real tokens (a padding query with no visible key differs by design).
    m = np.asarray(mask)
    np.testing.assert_allclose(np.asarray(got)[m], np.asarray(ref)[m], atol=1e-5)

    def loss(fn):
        return lambda q, k, v: jnp.sum(jnp.where(mask[:, :, None, None, None], fn(q, k, v), 0.0) ** 2)

    g_ref = jax.grad(loss(lambda *a: attn.attend_xla(*a, mask)), argnums=(0, 1, 2))(q, k, v)
    g_got = jax.grad(loss(lambda *a: attn.attend_chunked(*a, mask, chunk)), argnums=(0, 1, 2))(q, k, v)
    for a, b in zip(g_got, g_ref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4)


def test_resolve_picks_per_backend_and_length():
    assert attn.resolve(CFG.replace(attention="chunked"), 8) == "chunked"
    if jax.default_backend() == "cpu":
        assert attn.resolve(CFG, CFG.attention_chunk) == "xla"  # one block: nothing to chunk
        assert attn.resolve(CFG, CFG.attention_chunk + 1) == "chunked"
    with pytest.raises(ValueError, match="attention 'flash'"):
        CFG.replace(attention="flash")
    with pytest.raises(ValueError, match="remat_policy 'everything'"):
        CFG.replace(remat_policy="everything")


def test_prefill_over_prompt_equals_cached_prefill(params):
    """model.prefill (attention over the P prompt positions) == the old prefill through the
    cache (attention over all P + C slots): same last logits, same cache contents."""
    model = nnx.merge(abstract_model(CFG.replace(attention="chunked", attention_chunk=4))[0], params)
    rng = np.random.RandomState(1)
    P, C = 10, 5
    lengths = jnp.asarray([10, 4, 7], jnp.int32)
    prompt = jnp.asarray(rng.randint(1, 512, (3, P)), jnp.int32)
    prompt = jnp.where(jnp.arange(P)[None] >= P - lengths[:, None], prompt, 0)
    logits_new, cache_new = jax.jit(lambda m_p, t, n: nnx.merge(abstract_model(model.cfg)[0], m_p)
                                    .prefill(t, n, P + C), )(params, prompt, lengths)
    old_cache = KVCache.init(CFG.num_layers, 3, P + C, CFG.num_kv_heads, CFG.head_dim)
    logits_old, cache_old = jax.jit(lambda m_p, t, c, n: nnx.merge(abstract_model(CFG)[0], m_p)
                                    .decode_step(t, c, n, last_only=True))(params, prompt, old_cache, lengths)
    np.testing.assert_allclose(np.asarray(logits_new), np.asarray(logits_old[:, -1]), atol=1e-5)
    assert int(cache_new.end) == P and cache_new.max_len == P + C
    np.testing.assert_array_equal(np.asarray(cache_new.lengths_B), np.asarray(lengths))
    for i in range(CFG.num_layers):
        for new, old, slot_axis in ((cache_new.k_BKHS[i], cache_old.k_BKHS[i], 3),
                                    (cache_new.v_BKSH[i], cache_old.v_BKSH[i], 2)):
            for b, n in enumerate(np.asarray(lengths)):  # real slots [P - n, P)
                sl = [slice(None)] * 3
                sl[slot_axis - 1] = slice(P - n, P)
                np.testing.assert_allclose(np.asarray(new[b])[tuple(sl)], np.asarray(old[b])[tuple(sl)], atol=1e-5)


@pytest.mark.gpu
def test_cudnn_attention_matches_reference():
    if jax.default_backend() != "gpu":
        pytest.skip("needs a GPU backend")
    _attention_matches_reference(attn.attend_cudnn, jnp.bfloat16, atol=2e-2)


@pytest.mark.tpu
def test_splash_attention_matches_reference():
    if jax.default_backend() != "tpu":
        pytest.skip("needs a TPU backend")
    _attention_matches_reference(attn.attend_splash, jnp.float32, atol=2e-3, T=256)


def _attention_matches_reference(fn, dtype, atol, T=64):
    B, K, R, H = 2, 2, 2, 64
    rng = np.random.RandomState(0)
    q, k, v = (jnp.asarray(rng.randn(*s), dtype) for s in ((B, T, K, R, H), (B, T, K, H), (B, T, K, H)))
    mask = np.ones((B, T), bool)
    mask[1, : T // 4] = False
    mask = jnp.asarray(mask)
    ref = attn.attend_xla(q.astype(jnp.float32), k.astype(jnp.float32), v.astype(jnp.float32), mask)
    got = jax.jit(fn)(q, k, v, mask).astype(jnp.float32)
    m = np.asarray(mask)  # padding queries differ by design (see attention.py)
    np.testing.assert_allclose(np.asarray(got)[m], np.asarray(ref)[m], atol=atol)


def _brute_force_need(seg_BT: np.ndarray, c: int) -> np.ndarray:
    """need_nn from the definition: some row has a causal same-segment real pair in the block."""
    B, T = seg_BT.shape
    n = T // c
    q, k = np.arange(T)[:, None], np.arange(T)[None, :]
    ok_BTS = (seg_BT[:, :, None] == seg_BT[:, None, :]) & (seg_BT[:, None, :] > 0) & (k <= q)[None]
    return ok_BTS.reshape(B, n, c, n, c).any(axis=(0, 2, 4))


def test_block_schedule_skips_only_blocks_without_an_allowed_pair():
    rng = np.random.RandomState(0)
    c = 4
    # Packed rows: contiguous segments, padding at the end (all-padding blocks included).
    seg = np.zeros((2, 32), np.int32)
    seg[0, :3], seg[0, 3:17], seg[0, 17:19], seg[0, 19:22] = 1, 2, 3, 4
    seg[1, :9], seg[1, 9:10], seg[1, 10:25] = 1, 2, 3
    need = np.asarray(attn.block_schedule(jnp.asarray(seg), c))
    brute = _brute_force_need(seg, c)
    eye = np.eye(8, dtype=bool)
    np.testing.assert_array_equal(need, brute | eye)  # exact for contiguous segments
    assert need.sum() < 8 * 9 // 2  # something is skipped
    for one in seg:  # per row as well
        np.testing.assert_array_equal(np.asarray(attn.block_schedule(jnp.asarray(one[None]), c)),
                                      _brute_force_need(one[None], c) | eye)
    # Arbitrary (non-contiguous) ids: conservative, never skips a needed block.
    for _ in range(5):
        rnd = rng.randint(0, 4, (3, 24)).astype(np.int32)
        need = np.asarray(attn.block_schedule(jnp.asarray(rnd), c))
        assert not (_brute_force_need(rnd, c) & ~need).any()
    # A bool mask keeps every causal block.
    np.testing.assert_array_equal(np.asarray(attn.block_schedule(jnp.ones((2, 12), bool), c)),
                                  np.tril(np.ones((3, 3), bool)))


def test_chunked_blocks_split_T_evenly():
    """Equal blocks of at most `chunk` (multiples of 8 where they fit): T = 640 with chunk 512
    runs 2 blocks of 320, not 2 of 512 over a T padded to 1,024."""
    assert attn.block_size(640, 512) == 320
    assert attn.block_size(1024, 512) == 512 and attn.block_size(8192, 512) == 512
    assert attn.block_size(513, 512) == 264  # 2 blocks, 15 padded positions
    assert attn.block_size(12, 4) == 4 and attn.block_size(9, 4) == 3
    for T, chunk in ((640, 512), (513, 512), (9, 4), (100, 32), (3, 512)):
        c = attn.block_size(T, chunk)
        assert c <= chunk and -(-T // c) == -(-T // chunk)  # never more blocks than before


@pytest.mark.parametrize("chunk", [4, 5])
def test_chunked_attention_with_skipped_segment_blocks_equals_reference(chunk):
    """Packed segment ids (blocks skipped, all-padding blocks at the end): outputs at real
    queries and gradients equal the reference, and nothing is NaN."""
    B, T, K, R, H = 2, 30, 2, 2, 8
    rng = np.random.RandomState(chunk)
    q, k, v = (jnp.asarray(rng.randn(*s), jnp.float32) for s in ((B, T, K, R, H), (B, T, K, H), (B, T, K, H)))
    seg = np.zeros((B, T), np.int32)
    seg[0, :3], seg[0, 3:17], seg[0, 17:19], seg[0, 19:21] = 1, 2, 3, 4
    seg[1, :9], seg[1, 9:10], seg[1, 10:22] = 1, 2, 3
    seg = jnp.asarray(seg)
    real = np.asarray(seg) > 0
    need = np.asarray(attn.block_schedule(jnp.pad(seg, ((0, 0), (0, -T % chunk))), chunk))
    assert need.sum() < need.shape[0] * (need.shape[0] + 1) // 2
    ref = attn.attend_xla(q, k, v, seg)
    got = attn.attend_chunked(q, k, v, seg, chunk)
    assert np.isfinite(np.asarray(got)).all()
    np.testing.assert_allclose(np.asarray(got)[real], np.asarray(ref)[real], atol=1e-5)

    def loss(fn):
        return lambda q, k, v: jnp.sum(jnp.where(real[:, :, None, None, None], fn(q, k, v), 0.0) ** 2)

    g_ref = jax.grad(loss(lambda *a: attn.attend_xla(*a, seg)), argnums=(0, 1, 2))(q, k, v)
    g_got = jax.jit(jax.grad(loss(lambda *a: attn.attend_chunked(*a, seg, chunk)), argnums=(0, 1, 2)))(q, k, v)
    for a, b in zip(g_got, g_ref):
        assert np.isfinite(np.asarray(a)).all()
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4)


def test_chunked_segments_run_per_device_under_sharding_rules():
    """Under active rules on the 8 fake devices, packed segment ids go through shard_map (each
    device's block schedule from its own rows); outputs and gradients equal the reference."""
    from execverify_jax.model import sharding as shd

    if len(jax.devices()) < 8:
        pytest.skip("needs the 8 fake CPU devices of tests/conftest.py")
    B, T, K, R, H, c = 8, 24, 2, 2, 8, 4
    rng = np.random.RandomState(7)
    q, k, v = (jnp.asarray(rng.randn(*s), jnp.float32) for s in ((B, T, K, R, H), (B, T, K, H), (B, T, K, H)))
    seg = np.zeros((B, T), np.int32)
    for b in range(B):  # a different segment layout per row (per device)
        cuts = np.sort(rng.choice(np.arange(1, 20), 2 + b % 3, replace=False))
        for i, (s0, s1) in enumerate(zip(np.r_[0, cuts], np.r_[cuts, 20 + b % 4])):
            seg[b, s0:s1] = i + 1
    seg = jnp.asarray(seg)
    real = np.asarray(seg) > 0
    mesh = shd.make_mesh({"data": 1, "fsdp": 8, "tensor": 1})

    def loss(fn):
        return lambda q, k, v: jnp.sum(jnp.where(real[:, :, None, None, None], fn(q, k, v), 0.0) ** 2)

    sharded = lambda q, k, v: attn.attend_chunked_per_shard(q, k, v, seg, c)  # noqa: E731
    with shd.use_rules(mesh, shd.TRAIN_RULES):
        assert "shard_map" in str(jax.make_jaxpr(sharded)(q, k, v))
        got = jax.jit(sharded)(q, k, v)
        g_got = jax.jit(jax.grad(loss(sharded), argnums=(0, 1, 2)))(q, k, v)
    ref = attn.attend_xla(q, k, v, seg)
    np.testing.assert_allclose(np.asarray(got)[real], np.asarray(ref)[real], atol=1e-5)
    g_ref = jax.grad(loss(lambda *a: attn.attend_xla(*a, seg)), argnums=(0, 1, 2))(q, k, v)
    for a, b in zip(g_got, g_ref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4)
    # The padded layout (bool mask) keeps the plain call.
    with shd.use_rules(mesh, shd.TRAIN_RULES):
        plain = str(jax.make_jaxpr(lambda q, k, v: attn.attend_chunked_per_shard(q, k, v, seg > 0, c))(q, k, v))
    assert "shard_map" not in plain
