"""The sharded GRPO and SFT steps (8 fake CPU devices: data=2, fsdp=2, tensor=2) give the same
parameters and metrics as one device; parameters stay on their logical shardings. SFT with
`remat: true` over fsdp=8 equals SFT without it (issue 12: remat used to crash the RL path)."""

import jax
import numpy as np
import optax
import pytest

from execverify_jax.model import sharding as shd
from execverify_jax.model.config import ModelConfig
from execverify_jax.rl.objective.config import GRPOConfig, OptimConfig
from execverify_jax.rl.infra.optim import build_optimizer
from execverify_jax.rl.infra.train_steps import make_grpo_update, make_logprob_fn, make_sft_update, put_batch
from execverify_jax.rl.infra.train_state import create_train_state, state_shardings

CFG = ModelConfig.tiny(vocab_size=64, num_heads=4, num_kv_heads=2)


def _grpo_batch():
    rng = np.random.default_rng(0)
    B, P, C = 8, 6, 5
    tokens = rng.integers(0, 64, (B, P + C)).astype(np.int32)
    attn = np.ones((B, P + C), bool)
    attn[0, :2] = False  # left padding
    mask = np.ones((B, C), np.float32)
    mask[1, 3:] = 0
    attn[1, P + 3:] = False
    adv = rng.normal(size=B).astype(np.float32)
    return dict(tokens_BT=tokens, attn_BT=attn, mask_BC=mask, adv_B=adv)


def _run_grpo(mesh):
    tx = build_optimizer(OptimConfig(lr=1e-3), 10)
    gd, st = create_train_state(CFG, tx, seed=0, mesh=mesh)
    sh = state_shardings(CFG, tx, mesh)
    g = GRPOConfig(group_size=2, prompts_per_step=4, num_minibatches=1, micro_batch_size=4)
    upd = make_grpo_update(gd, tx, g, mesh, sh)
    lp = make_logprob_fn(gd, mesh, micro_batch_size=4)
    b = put_batch(_grpo_batch(), mesh)
    b["old_logp_BC"] = lp(st.params, b) - 0.05  # off-policy, so the clip branches are exercised
    metrics = []
    for _ in range(2):
        st, m = upd(st, b)
        metrics.append(jax.device_get(m))
    return st, metrics


def _run_grpo_packed(mesh):
    """Packed buffers through chunked attention (blocks skipped per device under shard_map)."""
    from execverify_jax.rl.infra.packing import pack_grpo

    cfg = CFG.replace(attention="chunked", attention_chunk=4, remat=True)
    # SGD at lr 1: the parameter change is the gradient (Adam would blow rounding noise in a
    # near-zero gradient entry up to lr).
    tx = optax.sgd(1.0)
    gd, st = create_train_state(cfg, tx, seed=0, mesh=mesh)
    g = GRPOConfig(group_size=2, prompts_per_step=4, num_minibatches=1, micro_batch_size=4, packing=True,
                   pack_len=16)
    upd = make_grpo_update(gd, tx, g, mesh, state_shardings(cfg, tx, mesh), packed=True)
    host = _grpo_batch()
    host["old_logp_BC"] = np.full(host["mask_BC"].shape, -4.0, np.float32)
    pk, _ = pack_grpo(host, 16, multiple=4)
    st, m = upd(st, put_batch(pk, mesh))
    return st, [jax.device_get(m)]


def _run_sft(mesh, cfg=CFG, micro=4):
    tx = build_optimizer(OptimConfig.sft(lr=1e-3), 10)
    gd, st = create_train_state(cfg, tx, seed=1, mesh=mesh)
    upd = make_sft_update(gd, tx, mesh, state_shardings(cfg, tx, mesh), micro_batch_size=micro)
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 64, (8, 12)).astype(np.int32)
    attn = np.ones((8, 12), bool)
    attn[:, 10:] = False
    loss_mask = np.zeros((8, 12), bool)
    loss_mask[:, 5:10] = True
    st, m = upd(st, put_batch(dict(ids_BT=ids, attn_BT=attn, loss_mask_BT=loss_mask), mesh))
    return st, [jax.device_get(m)]


@pytest.mark.parametrize("run", [_run_grpo, _run_grpo_packed, pytest.param(_run_sft, marks=pytest.mark.slow)],
                         ids=["grpo", "grpo_packed", "sft"])
def test_sharded_step_equals_single_device(run):
    if len(jax.devices()) < 8:
        pytest.skip("needs 8 (fake) devices")
    s1, m1 = run(shd.single_device_mesh())
    mesh = shd.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    s8, m8 = run(mesh)
    wq = s8.params["layers"]["attn"]["wq"][...]  # stacked [L, D, N, H]
    assert wq.sharding.is_equivalent_to(shd.named_sharding(("layers", "embed", "q_heads", "head_dim"), wq.shape, mesh, shd.TRAIN_RULES), wq.ndim)
    assert len(wq.sharding.device_set) == 8
    _assert_same(s1, m1, s8, m8)
    for a, b in zip(jax.tree.leaves(s1.opt_state), jax.tree.leaves(s8.opt_state)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    assert m1[-1]["grad_norm"] > 0


def _assert_same(s1, m1, s2, m2, rtol=1e-4):
    for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=1e-5)
    for a, b in zip(m1, m2):
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=1e-6, err_msg=k)


@pytest.mark.slow
def test_sft_with_remat_equals_without_on_fsdp8():
    if len(jax.devices()) < 8:
        pytest.skip("needs 8 (fake) devices")
    mesh = shd.make_mesh({"data": 1, "fsdp": -1, "tensor": 1})
    s0, m0 = _run_sft(mesh, CFG, micro=8)
    s1, m1 = _run_sft(mesh, CFG.replace(remat=True), micro=8)
    assert m1[0]["grad_norm"] > 0
    _assert_same(s0, m0, s1, m1, rtol=1e-5)
