"""Abstract (no allocation) checks on 8 fake CPU devices: the 7B sampling copy is sharded, and a
deep model's training/log-prob/prefill functions lower and compile from ShapeDtypeStructs."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from execverify_jax.model import sharding as shd
from execverify_jax.model.config import ModelConfig
from execverify_jax.model.logprobs import completion_logprobs
from execverify_jax.model.params import abstract_model, abstract_params, param_shardings


def _per_device_bytes(abstract, shardings) -> tuple[int, int]:
    """(bytes of one device's shards, bytes of the whole state)."""
    shapes = [(v.shape, v.dtype) for v in jax.tree.leaves(abstract)]
    assert len(shapes) == len(jax.tree.leaves(shardings))
    shards = jax.tree.leaves(shardings)
    total = sum(math.prod(s) * np.dtype(d).itemsize for s, d in shapes)
    local = sum(math.prod(sh.shard_shape(s)) * np.dtype(d).itemsize for (s, d), sh in zip(shapes, shards))
    return local, total


def test_7b_sampling_copy_is_sharded_not_replicated():
    cfg = ModelConfig.qwen2p5_coder_7b(param_dtype="bfloat16", dtype="bfloat16")
    _, abstract = abstract_model(cfg)
    for mesh_cfg in ({"fsdp": 8, "data": 1}, {"fsdp": 4, "tensor": 2, "data": 1}):
        mesh = shd.make_mesh(mesh_cfg)
        local, total = _per_device_bytes(abstract, param_shardings(cfg, mesh, shd.SAMPLE_RULES))
        assert total > 15e9  # the 7.6B-parameter bf16 copy
        # Attention q/o (28 heads) cannot split 8 ways and stay replicated; the rest is 1/8.
        assert local < 0.3 * total, (mesh_cfg, local / total)
        train_local, _ = _per_device_bytes(abstract, param_shardings(cfg, mesh, shd.TRAIN_RULES))
        assert train_local < 0.15 * total


def _lowered(cfg: ModelConfig, mesh, B=8, T=32, C=8):
    """jit(grad of a completion log-prob loss).lower(...) on ShapeDtypeStructs with shardings."""
    graphdef, params = abstract_params(cfg, mesh)
    tokens = jax.ShapeDtypeStruct((B, T), jnp.int32, sharding=shd.named_sharding(
        (shd.BATCH, None), (B, T), mesh, shd.TRAIN_RULES))
    mask = jax.ShapeDtypeStruct((B, T), jnp.bool_, sharding=tokens.sharding)

    def loss(p, t, m):
        return completion_logprobs(nnx.merge(graphdef, p), t, C, m, chunk=4).sum()

    with shd.use_rules(mesh, shd.TRAIN_RULES):
        return jax.jit(jax.grad(loss)).lower(params, tokens, mask)


def test_deep_model_compiles_abstractly_and_scan_keeps_hlo_size_flat():
    mesh = shd.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    base = ModelConfig.tiny(remat=True, attention="chunked", attention_chunk=8)
    shallow = _lowered(base.replace(num_layers=2), mesh)
    deep = _lowered(base.replace(num_layers=24), mesh)
    compiled = deep.compile()
    mem = compiled.memory_analysis()
    assert mem is not None and mem.temp_size_in_bytes > 0
    # Layers are one scanned body: the program does not grow with depth (unrolled: ~12x).
    assert len(deep.as_text()) < 1.3 * len(shallow.as_text())
    unrolled = _lowered(base.replace(num_layers=24, scan_layers=False), mesh)
    assert len(unrolled.as_text()) > 3 * len(deep.as_text())


def test_prefill_lowers_from_abstract_inputs():
    """The sampler's prefill jit takes ShapeDtypeStructs (what bench_memory.py lowers)."""
    from execverify_jax.model.sampler import _prefill
    from execverify_jax.model.strategies import Greedy
    cfg = ModelConfig.tiny(num_layers=4, attention="chunked", attention_chunk=8)
    mesh = shd.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    graphdef, params = abstract_params(cfg, mesh, shd.SAMPLE_RULES)
    B, P = 8, 32
    fn = jax.jit(_prefill, static_argnums=(0,), static_argnames=("strategy", "max_new", "pad_id", "stop_ids", "cache_dtype"))
    with shd.use_rules(mesh, shd.SAMPLE_RULES):
        lowered = fn.lower(graphdef, params, jax.ShapeDtypeStruct((B, P), jnp.int32),
                           jax.ShapeDtypeStruct((B,), jnp.int32), jax.ShapeDtypeStruct((B,), jnp.int32),
                           jax.random.key(0),
                           strategy=Greedy(), max_new=16, pad_id=0, stop_ids=(), cache_dtype="float32")
    state = lowered.out_info
    assert state.cache.k_BKHS[0].shape == (B, cfg.num_kv_heads, cfg.head_dim, P + 16)
    assert lowered.compile().memory_analysis() is not None
