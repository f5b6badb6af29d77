"""Accumulated micro-batch gradients equal the full mini-batch gradient, for every aggregation mode.

Toy policy: logits = x @ W + b over a small vocabulary; sequences of different lengths; uneven
micro-batches (Python-loop driver) and padded equal ones (lax.scan driver).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from execverify_jax.rl.infra.accumulate import (accumulate_grads, accumulate_grads_loop, combine_metrics,
                                          split_microbatches)
from execverify_jax.rl.objective.aggregation import loss_norm
from execverify_jax.rl.objective.config import AGG_MODES, GRPOConfig
from execverify_jax.rl.objective.loss import policy_loss

B, C, D, V = 7, 9, 4, 6


def make_problem(seed=0):
    rng = np.random.default_rng(seed)
    params = {"W": jnp.asarray(0.5 * rng.normal(size=(D, V)), jnp.float32),
              "b": jnp.asarray(0.1 * rng.normal(size=(V,)), jnp.float32)}
    lens = np.array([9, 1, 4, 7, 2, 9, 5])
    mask = (np.arange(C)[None] < lens[:, None]).astype(np.float32)
    batch = {
        "x": jnp.asarray(rng.normal(size=(B, C, D)), jnp.float32),
        "act": jnp.asarray(rng.integers(0, V, (B, C)), jnp.int32),
        "adv": jnp.asarray(rng.normal(size=B), jnp.float32),
        "mask": jnp.asarray(mask),
    }
    # old/ref log-probs from perturbed parameters so ratios hit both clips and the dual clip
    old_params = jax.tree.map(lambda p: p + 0.4 * jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
    ref_params = jax.tree.map(lambda p: p + 0.2 * jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
    batch["old"] = token_logp(old_params, batch)[0]
    batch["ref"] = token_logp(ref_params, batch)[0]
    return params, batch


def token_logp(params, mb):
    logits = mb["x"] @ params["W"] + params["b"][None, None, :]
    lp = jax.nn.log_softmax(logits, axis=-1)
    ent = -(jnp.exp(lp) * lp).sum(-1)
    return jnp.take_along_axis(lp, mb["act"][..., None], axis=-1)[..., 0], ent


def make_loss_fn(cfg):
    def loss_fn(params, mb, norm):
        logp, ent = token_logp(params, mb)
        return policy_loss(logp, mb["old"], mb["adv"], mb["mask"], cfg, ref_logp_BC=mb["ref"],
                           entropy_BC=ent, norm=norm)
    return loss_fn


def full_batch(cfg, params, batch):
    loss_fn = make_loss_fn(cfg)
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, None)
    return loss, grads, metrics


def assert_same(got, want, what):
    for k in want:
        np.testing.assert_allclose(np.asarray(got[k]), np.asarray(want[k]), rtol=2e-5, atol=1e-7,
                                   err_msg=f"{what}: {k}")


CFGS = [GRPOConfig(loss_agg_mode=m, max_response_len=C, kl_coef=0.05, entropy_coef=0.01, clip_eps_high=0.28)
        for m in AGG_MODES]


@pytest.mark.parametrize("cfg", CFGS, ids=AGG_MODES)
def test_loop_over_uneven_microbatches_is_exact(cfg):
    params, batch = make_problem()
    loss, grads, metrics = full_batch(cfg, params, batch)
    norm = loss_norm(batch["mask"])
    # uneven split 3 / 1 / 2 / 1, and the middle ones trimmed to their own max length
    cuts = [(0, 3), (3, 4), (4, 6), (6, 7)]
    mbs = []
    for lo, hi in cuts:
        mb = jax.tree.map(lambda a: a[lo:hi], batch)
        width = int(np.asarray(mb["mask"]).sum(1).max())
        mbs.append(jax.tree.map(lambda a: a[:, :width] if a.ndim >= 2 else a, mb))
    got_loss, got_grads, got_metrics = accumulate_grads_loop(make_loss_fn(cfg), params, mbs, norm)
    np.testing.assert_allclose(got_loss, loss, rtol=2e-5)
    assert_same(got_grads, grads, "grads")
    assert_same(got_metrics, metrics, "metrics")
    for k in ("clip_frac_low", "clip_frac_high", "dual_clip_frac"):  # every clip branch is exercised
        assert float(metrics[k]) > 0, k


@pytest.mark.parametrize("cfg", CFGS, ids=AGG_MODES)
def test_scan_over_padded_microbatches_is_exact(cfg):
    params, batch = make_problem(1)
    loss, grads, metrics = full_batch(cfg, params, batch)
    mbs = split_microbatches(batch, 3)  # 7 -> 3 micro-batches of 3, last padded with 2 empty rows
    assert mbs["x"].shape == (3, 3, C, D)
    got_loss, got_grads, got_metrics = jax.jit(
        lambda p, m, n: accumulate_grads(make_loss_fn(cfg), p, m, n))(params, mbs, loss_norm(batch["mask"]))
    np.testing.assert_allclose(got_loss, loss, rtol=2e-5)
    assert_same(got_grads, grads, "grads")
    assert_same(got_metrics, metrics, "metrics")


def test_averaging_microbatch_means_is_not_exact():
    """The bug the design avoids: normalising each micro-batch by its own counts."""
    cfg = GRPOConfig(loss_agg_mode="token-mean")
    params, batch = make_problem(2)
    _, grads, _ = full_batch(cfg, params, batch)
    mbs = [jax.tree.map(lambda a: a[lo:hi], batch) for lo, hi in [(0, 2), (2, 7)]]
    loss_fn = make_loss_fn(cfg)
    naive = [jax.grad(lambda p: loss_fn(p, mb, None)[0])(params) for mb in mbs]
    naive = jax.tree.map(lambda a, b: (a + b) / 2, *naive)
    assert not np.allclose(naive["W"], grads["W"], rtol=1e-3)


def test_bf16_params_accumulate_in_float32():
    cfg = GRPOConfig(loss_agg_mode="token-mean")
    params, batch = make_problem(3)
    p16 = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)
    loss_fn = lambda p, mb, n: make_loss_fn(cfg)(jax.tree.map(lambda a: a.astype(jnp.float32), p), mb, n)
    _, grads, _ = accumulate_grads(loss_fn, p16, split_microbatches(batch, 2), loss_norm(batch["mask"]))
    assert grads["W"].dtype == jnp.float32
    _, g16, _ = accumulate_grads(loss_fn, p16, split_microbatches(batch, 2), loss_norm(batch["mask"]),
                                 accum_dtype=None)
    assert g16["W"].dtype == jnp.bfloat16


def test_combine_metrics_rules_and_split_errors():
    out = combine_metrics({"a": 1.0, "r_max": 2.0, "r_min": 2.0}, {"a": 2.0, "r_max": 3.0, "r_min": 3.0})
    assert out == {"a": 3.0, "r_max": 3.0, "r_min": 2.0}
    with pytest.raises(ValueError, match="micro_batch_size=0"):
        split_microbatches({"x": jnp.zeros((4, 2))}, 0)
    with pytest.raises(ValueError, match="disagree"):
        split_microbatches({"x": jnp.zeros((4, 2)), "y": jnp.zeros((3,))}, 2)
    np_split = split_microbatches({"x": np.ones((5, 2), np.float32)}, 2)
    assert np_split["x"].shape == (3, 2, 2) and np_split["x"][2, 1].sum() == 0


def test_flax_nnx_state_as_params():
    """The intended use with an NNX model: split once, differentiate the Param state."""
    from flax import nnx

    cfg = GRPOConfig(loss_agg_mode="token-mean")
    _, batch = make_problem(4)
    model = nnx.Linear(D, V, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss_fn(p, mb, norm):
        m = nnx.merge(graphdef, p, rest)
        lp = jax.nn.log_softmax(m(mb["x"]), axis=-1)
        logp = jnp.take_along_axis(lp, mb["act"][..., None], axis=-1)[..., 0]
        return policy_loss(logp, mb["old"], mb["adv"], mb["mask"], cfg, norm=norm)

    (_, _), want = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, None)
    _, got, _ = accumulate_grads(loss_fn, params, split_microbatches(batch, 2), loss_norm(batch["mask"]))
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("cfg", CFGS, ids=AGG_MODES)
def test_per_token_advantages_accumulate_exactly(cfg):
    """Stepwise credit passes one advantage per token: still exact under micro-batching, and a
    row-constant per-token advantage is the per-sequence loss."""
    params, batch = make_problem(2)
    rng = np.random.default_rng(5)
    per_token = dict(batch, adv=jnp.asarray(rng.normal(size=(B, C)), jnp.float32))
    loss, grads, metrics = full_batch(cfg, params, per_token)
    got_loss, got_grads, got_metrics = jax.jit(lambda p, m, n: accumulate_grads(make_loss_fn(cfg), p, m, n))(
        params, split_microbatches(per_token, 3), loss_norm(batch["mask"]))
    np.testing.assert_allclose(got_loss, loss, rtol=2e-5)
    assert_same(got_grads, grads, "grads")
    assert_same(got_metrics, metrics, "metrics")
    broadcast = dict(batch, adv=jnp.broadcast_to(batch["adv"][:, None], (B, C)))
    np.testing.assert_allclose(full_batch(cfg, params, broadcast)[0], full_batch(cfg, params, batch)[0], rtol=1e-6)
    assert not np.allclose(loss, full_batch(cfg, params, batch)[0])
