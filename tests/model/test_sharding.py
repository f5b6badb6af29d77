"""Mesh building, the rules table, and 8-device meshes == 1 device (the tiny JAX model, no torch)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from execverify_jax.model import sharding as shd
from execverify_jax.model.config import ModelConfig
from execverify_jax.model.params import abstract_model, create_model, flat_params
from execverify_jax.model.sampler import Sampler
from execverify_jax.model.strategies import Temperature
from testing import tiny_state

MESHES = [dict(data=8), dict(fsdp=4, tensor=2, data=1), dict(data=2, fsdp=2, tensor=2)]


def test_make_mesh_sizes_and_errors():
    assert len(jax.devices()) == 8, "tests/conftest.py should fake 8 CPU devices"
    assert dict(shd.make_mesh({"data": -1, "tensor": 2}).shape) == {"data": 4, "fsdp": 1, "tensor": 2}
    assert shd.make_mesh(shd.MeshConfig(1, 1, 1)).size == 1
    assert shd.parse_mesh_spec("data=2, fsdp=-1") == shd.MeshConfig(2, -1, 1)
    with pytest.raises(ValueError, match="needs 16 devices"):
        shd.make_mesh({"data": 16})
    with pytest.raises(ValueError, match="at most one"):
        shd.make_mesh({"data": -1, "fsdp": -1})
    with pytest.raises(ValueError, match="unknown mesh axis 'model'"):
        shd.make_mesh({"model": 2})
    with pytest.raises(ValueError, match="bad mesh item"):
        shd.parse_mesh_spec("model=2")


def test_rules_cover_every_parameter_and_sampling_is_tensor_parallel():
    cfg = ModelConfig.tiny(num_kv_heads=2)
    mesh = shd.make_mesh({"data": 1, "fsdp": 4, "tensor": 2})
    train = flat_params(shd.state_shardings(abstract_model(cfg)[1], mesh, shd.TRAIN_RULES))
    sample = flat_params(shd.state_shardings(abstract_model(cfg)[1], mesh, shd.SAMPLE_RULES))
    assert set(train) == set(flat_params(abstract_model(cfg)[1]))
    assert train["layers.attn.wq"].spec == P(None, "fsdp", "tensor", None)
    assert train["layers.mlp.w_down"].spec == P(None, "tensor", "fsdp")
    assert train["embedding"].spec == P("tensor", "fsdp")
    # Sampling: never on D; heads / MLP / vocab split over tensor x fsdp where they divide.
    assert sample["layers.mlp.w_down"].spec == P(None, ("tensor", "fsdp"), None)
    assert sample["layers.attn.wq"].spec == P(None, None, "tensor", None)  # 4 heads: tensor only
    assert sample["embedding"].spec == P(("tensor", "fsdp"), None)


def test_logical_to_spec_keeps_indivisible_dims_replicated():
    mesh = shd.make_mesh({"data": 2, "fsdp": 1, "tensor": 4})
    # 2 kv heads cannot be split 4 ways: replicated rather than an error.
    assert shd.logical_to_spec((shd.EMBED, shd.KV_HEADS, shd.HEAD_DIM), (64, 2, 16), mesh, shd.TRAIN_RULES) == P(None, None, None)
    assert shd.logical_to_spec((shd.BATCH, None), (6, 3), mesh, shd.TRAIN_RULES) == P("data", None)
    with pytest.raises(KeyError, match="no sharding rule"):
        shd.logical_to_spec(("nonsense",), (4,), mesh, shd.TRAIN_RULES)


@pytest.fixture(scope="module")
def reference():
    """One-device greedy + temperature samples and full-forward logits."""
    rng = np.random.RandomState(4)
    prompts = [list(rng.randint(0, 512, n)) for n in (3, 9, 14, 5, 6, 11, 2, 8)]
    cfg, graphdef, params = tiny_state(shd.single_device_mesh(), shd.SAMPLE_RULES)
    sampler = Sampler(cfg, graphdef, mesh=shd.single_device_mesh(), buckets=(16,))
    out = sampler.generate(params, prompts, 8, Temperature(0.8), seed=1)
    tokens = np.stack([np.concatenate([np.full(16 - len(p), 0), p]) for p in prompts])
    mask = tokens != 0
    mask[:, -1] = True
    logits = np.asarray(nnx.merge(graphdef, params)(jnp.asarray(tokens), mask_BT=jnp.asarray(mask)))
    return prompts, out, tokens, mask, logits


@pytest.mark.parametrize("mesh_cfg", MESHES, ids=lambda m: ",".join(f"{k}={v}" for k, v in m.items()))
def test_sharded_equals_one_device(reference, mesh_cfg):
    prompts, ref, tokens, mask, ref_logits = reference
    mesh = shd.make_mesh(mesh_cfg)
    # Training layout: full forward with activation constraints active.
    cfg, graphdef, params = tiny_state(mesh, shd.TRAIN_RULES)
    wq = flat_params(params)["layers.attn.wq"].get_value()
    assert len(wq.sharding.device_set) == 8
    with shd.use_rules(mesh, shd.TRAIN_RULES):
        logits = jax.jit(lambda p, t, m: nnx.merge(graphdef, p)(t, mask_BT=m))(
            params, jnp.asarray(tokens), jnp.asarray(mask))
    np.testing.assert_allclose(np.asarray(logits)[mask], ref_logits[mask], atol=1e-4)
    # Sampling layout: same samples and log-probs as one device.
    cfg, graphdef, params = tiny_state(mesh, shd.SAMPLE_RULES)
    sampler = Sampler(cfg, graphdef, mesh=mesh, buckets=(16,))
    out = sampler.generate(params, prompts, 8, Temperature(0.8), seed=1)
    np.testing.assert_array_equal(out.tokens_BC, ref.tokens_BC)
    np.testing.assert_allclose(out.logp_BC, ref.logp_BC, atol=1e-4)


def test_create_model_places_params_on_shards():
    mesh = shd.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    model = create_model(ModelConfig.tiny(), seed=0, mesh=mesh)
    wq = model.layers.attn.wq.get_value()
    assert wq.sharding.spec == P(None, "fsdp", "tensor", None)
    one = create_model(ModelConfig.tiny(), seed=0)
    np.testing.assert_array_equal(np.asarray(wq), np.asarray(one.layers.attn.wq.get_value()))


def test_reshard_train_to_sample_layout():
    from execverify_jax.model.params import reshard
    mesh = shd.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    train = create_model(ModelConfig.tiny(), seed=1, mesh=mesh)
    sample = reshard(train, mesh, shd.SAMPLE_RULES, dtype="bfloat16")
    wq = sample.layers.attn.wq.get_value()
    assert wq.sharding.spec == P(None, None, ("tensor", "fsdp"), None) and wq.dtype == jnp.bfloat16
    assert sample.cfg.dtype == "bfloat16"
    np.testing.assert_array_equal(np.asarray(wq), np.asarray(train.layers.attn.wq.get_value().astype(jnp.bfloat16)))


def test_engine_slots_are_sharded_and_equal_one_device(reference):
    """The engine's slot state is split over data x fsdp (not replicated on every device), stays
    so through admission, decode and the drain phase, and gives the one-device tokens."""
    from execverify_jax.model.engine import Engine

    prompts = reference[0]
    cfg, graphdef, params = tiny_state(shd.single_device_mesh(), shd.SAMPLE_RULES)
    ref = Engine(cfg, graphdef, slots=8, steps_per_call=4, block=8, buckets=(16,)).generate(
        params, prompts, 8, Temperature(0.8), n=2, seed=1)
    mesh = shd.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    cfg, graphdef, params = tiny_state(mesh, shd.SAMPLE_RULES)
    eng = Engine(cfg, graphdef, slots=6, steps_per_call=4, block=8, buckets=(16,), mesh=mesh)
    assert eng.slots == 8  # rounded up to a multiple of the 4 batch shards
    with shd.use_rules(mesh, shd.SAMPLE_RULES):
        state = eng._init_state(24, 8)
        k = state.k_SKHM[0]
        assert k.sharding.spec[0] == ("data", "fsdp") and k.addressable_shards[0].data.shape[0] == 2
        # A decode call keeps the layout (the compiled output, not only the input, is sharded).
        key = jax.random.key(0)
        layers = eng._unstack(graphdef, params)
        state = eng._run(graphdef, params, layers, state, key, np.int32(9), strategy=Temperature(0.8),
                         stop_ids=(), A=8, k=2)
        assert state.k_SKHM[0].sharding.spec[0] == ("data", "fsdp")
        assert state.tokens_SC.sharding.spec[0] == ("data", "fsdp")
        # The prompt store (prefix sharing) is replicated over the batch shards, kv heads on
        # tensor; attaching rows from it keeps the slots' layout.
        store = eng._zeros_store(2, 16, cfg.vocab_size, cfg.num_layers, cfg.num_kv_heads, cfg.head_dim,
                                 eng.cache_dtype)
        assert store.k_UKHP[0].sharding.spec[:2] == (None, "tensor")
        i32 = lambda *v: np.asarray(v, np.int32)  # noqa: E731
        state = eng._attach(state, store, i32(0, 1), i32(0, 5), np.zeros((2, 2), np.int32), i32(4, 4), key,
                            strategy=Temperature(0.8), stop_ids=())
        assert state.k_SKHM[0].sharding.spec[0] == ("data", "fsdp")
    out = eng.generate(params, prompts, 8, Temperature(0.8), n=2, seed=1)
    np.testing.assert_array_equal(out.tokens_BC, ref.tokens_BC)
    np.testing.assert_allclose(out.logp_BC, ref.logp_BC, atol=1e-4)
