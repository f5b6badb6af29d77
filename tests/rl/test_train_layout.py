"""Issue 12, training side, on 8 fake CPU devices: the optimizer state is sharded exactly like the
params (so per-device train-state bytes are ~1/8 of the total), micro-batches spread over every
data-parallel device (a size that cannot is a config error), and the GRPO loop runs with
`model.remat: true` over an fsdp=8 mesh (it crashed with TraceContextError before; SFT with remat:
tests/rl/test_train_sharded.py)."""

from pathlib import Path

import jax
import numpy as np
import pytest

from execverify_jax.config_loader import load
from execverify_jax.model import sharding as shd
from execverify_jax.model.config import ModelConfig
from execverify_jax.rl.infra.accumulate import merge_microbatches, split_microbatches
from execverify_jax.rl.infra.optim import build_optimizer
from execverify_jax.rl.infra.train_state import create_train_state, state_shardings
from execverify_jax.rl.infra.train_steps import make_grpo_update, make_sft_update, put_batch
from execverify_jax.rl.objective.config import GRPOConfig, OptimConfig
from execverify_jax.rl.run_config import TrainConfig

REPO = Path(__file__).resolve().parents[2]
CFG = ModelConfig.tiny(vocab_size=64, num_heads=4, num_kv_heads=2)


def _fsdp8():
    if len(jax.devices()) < 8:
        pytest.skip("needs 8 (fake) devices")
    return shd.make_mesh({"data": 1, "fsdp": -1, "tensor": 1})


def _device0_bytes(tree) -> int:
    dev = jax.devices()[0]
    return sum(s.data.nbytes for x in jax.tree.leaves(tree) for s in x.addressable_shards if s.device == dev)


def test_optimizer_state_sharded_like_params():
    mesh = _fsdp8()
    tx = build_optimizer(OptimConfig(lr=1e-3, grad_clip=1.0), 10)
    _, st = create_train_state(CFG, tx, seed=0, mesh=mesh)
    params = {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(st.params)}
    matched = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(st.opt_state):
        key = jax.tree_util.keystr(path)
        name = next((k for k in params if key.endswith(k)), None)
        if name is None:  # not a per-parameter leaf (Adam's count): replicated scalar
            assert leaf.ndim == 0 and leaf.sharding.is_fully_replicated, key
            continue
        assert ".mu[" in key or ".nu[" in key, key
        p = params[name]
        assert leaf.shape == p.shape
        assert leaf.sharding.is_equivalent_to(p.sharding, p.ndim), (key, leaf.sharding, p.sharding)
        matched += 1
    assert matched == 2 * len(params)  # mu and nu for every parameter
    # Every big (embed-carrying) tensor is split 8 ways: per-device bytes ~ total / 8.
    total = sum(x.nbytes for x in jax.tree.leaves(st.opt_state))
    assert _device0_bytes(st.opt_state) <= 1.15 * total / 8
    assert _device0_bytes(st.params) <= 1.15 * sum(x.nbytes for x in jax.tree.leaves(st.params)) / 8


def test_micro_batch_not_dividing_data_parallel_is_config_error():
    mesh = shd.make_mesh({"data": 2, "fsdp": 4, "tensor": 1}) if len(jax.devices()) >= 8 else pytest.skip("8 devices")
    tx = build_optimizer(OptimConfig(lr=1e-3), 10)
    sh = state_shardings(CFG, tx, mesh)
    with pytest.raises(ValueError, match=r"grpo\.micro_batch_size=4 .*data=2 x fsdp=4 = 8.*grpo\.micro_batch_size=8"):
        make_grpo_update(None, tx, GRPOConfig(group_size=2, prompts_per_step=4, num_minibatches=1,
                                               micro_batch_size=4), mesh, sh)
    with pytest.raises(ValueError, match=r"sft\.micro_batch_size=2 .*e\.g\. sft\.micro_batch_size=8"):
        make_sft_update(None, tx, mesh, sh, micro_batch_size=2)
    make_sft_update(None, tx, mesh, sh, micro_batch_size=16)  # a multiple is fine


def test_strided_micro_batches_take_rows_from_every_device():
    mesh = _fsdp8()
    B, mb = 32, 8
    rows = put_batch({"r": np.arange(B, dtype=np.int32)}, mesh)["r"]
    owner = {int(i): s.device for s in rows.addressable_shards for i in np.asarray(s.data)}
    split = np.asarray(split_microbatches({"r": rows}, mb, strided=True)["r"])
    assert split.shape == (B // mb, mb)
    for m in range(B // mb):  # each micro-batch: one row from each of the 8 devices' blocks
        assert len({owner[int(i)] for i in split[m]}) == 8
    np.testing.assert_array_equal(np.asarray(merge_microbatches(split, B, strided=True)), np.arange(B))
    # padding (B not a multiple of the micro-batch) round-trips too
    x = np.arange(10)
    np.testing.assert_array_equal(merge_microbatches(split_microbatches(x, 4, strided=True), 10, strided=True), x)


@pytest.mark.slow
def test_grpo_loop_with_remat_on_fsdp8(tmp_path):
    _fsdp8()
    from execverify_jax.rl.grpo.trainer import train
    from execverify_jax.rl.infra.metrics import read_metrics

    cfg = load(TrainConfig, REPO / "configs" / "toy_cpu.yaml",
               ["model.remat=true", "model.dtype=bfloat16", "mesh={data: 1, fsdp: -1, tensor: 1}",
                "rollout.sample_reshard=true", "rollout.sample_dtype=bfloat16", "grpo.micro_batch_size=8",
                "max_steps=2", "tensorboard=false", "save_every=100"])
    trainer, summary = train(cfg, tmp_path / "run")
    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[-1]["optimizer_step"] == 4
    assert all(np.isfinite(r["train/loss"]) and r["train/grad_norm"] > 0 for r in rows)
    wq = trainer.state.params["layers"]["attn"]["wq"][...]  # stacked [L, ...] layout
    assert len(wq.sharding.device_set) == 8
