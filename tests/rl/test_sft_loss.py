"""SFT masked cross-entropy: numpy parity, target shifting, exact accumulation, padding safety."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from execverify_jax.rl.infra.accumulate import accumulate_grads, accumulate_grads_loop, split_microbatches
from execverify_jax.rl.objective.aggregation import loss_norm
from execverify_jax.rl.sft.loss import next_token_targets, sft_loss


def np_ce(logits, target, mask):
    z = logits - logits.max(-1, keepdims=True)
    lp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    nll = -np.take_along_axis(lp, target[..., None], -1)[..., 0]
    return nll, (logits.argmax(-1) == target)


def test_next_token_targets():
    ids = jnp.array([[10, 11, 12, 13, 14]])
    assistant = jnp.array([[0, 0, 1, 1, 1]])  # prompt = 10, 11; answer = 12, 13, 14
    tgt, mask = next_token_targets(ids, assistant)
    np.testing.assert_array_equal(tgt, [[11, 12, 13, 14, 0]])
    # logits at positions 1, 2, 3 predict 12, 13, 14
    np.testing.assert_array_equal(mask, [[0, 1, 1, 1, 0]])
    with pytest.raises(ValueError, match="loss_mask_BT"):
        next_token_targets(ids, assistant[:, :3])


def test_token_mean_and_seq_mean_match_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 7)).astype(np.float32)
    target = rng.integers(0, 7, (3, 5))
    mask = np.array([[1, 1, 1, 1, 0], [0, 1, 0, 0, 0], [1, 1, 1, 1, 1]], np.float32)
    nll, hit = np_ce(logits, target, mask)
    loss, m = sft_loss(jnp.asarray(logits), jnp.asarray(target), jnp.asarray(mask))
    np.testing.assert_allclose(loss, (nll * mask).sum() / mask.sum(), rtol=1e-5)
    np.testing.assert_allclose(m["ce"], (nll * mask).sum() / mask.sum(), rtol=1e-5)
    np.testing.assert_allclose(m["accuracy"], (hit * mask).sum() / mask.sum(), rtol=1e-6)
    assert float(m["num_tokens"]) == 10
    loss_s, _ = sft_loss(jnp.asarray(logits), jnp.asarray(target), jnp.asarray(mask), mode="seq-mean-token-mean")
    np.testing.assert_allclose(loss_s, ((nll * mask).sum(1) / mask.sum(1)).mean(), rtol=1e-5)


def test_hand_worked_uniform_logits():
    # uniform logits over V = 4: CE = log 4 for every counted token, whatever the target
    loss, _ = sft_loss(jnp.zeros((2, 3, 4)), jnp.array([[0, 1, 2], [3, 0, 1]]), jnp.array([[1, 1, 0], [1, 0, 0]]))
    np.testing.assert_allclose(loss, np.log(4.0), rtol=1e-6)


def test_padding_targets_out_of_range_are_ignored():
    logits = jnp.zeros((1, 3, 4))
    target = jnp.array([[1, -100, 99999]])  # HF-style ignore ids in padding
    loss, m = sft_loss(logits, target, jnp.array([[1, 0, 0]]))
    np.testing.assert_allclose(loss, np.log(4.0), rtol=1e-6)
    assert float(m["num_tokens"]) == 1


def toy(seed=1):
    rng = np.random.default_rng(seed)
    params = {"W": jnp.asarray(rng.normal(size=(3, 5)), jnp.float32)}
    lens = np.array([6, 2, 5, 1, 4])
    batch = {"x": jnp.asarray(rng.normal(size=(5, 6, 3)), jnp.float32),
             "y": jnp.asarray(rng.integers(0, 5, (5, 6)), jnp.int32),
             "mask": jnp.asarray((np.arange(6)[None] < lens[:, None]).astype(np.float32))}
    return params, batch


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean"])
def test_accumulation_is_exact(mode):
    params, batch = toy()

    def loss_fn(p, mb, norm):
        return sft_loss(mb["x"] @ p["W"], mb["y"], mb["mask"], norm=norm, mode=mode)

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, None)
    norm = loss_norm(batch["mask"])
    mbs = [jax.tree.map(lambda a: a[lo:hi], batch) for lo, hi in [(0, 1), (1, 4), (4, 5)]]
    for got in (accumulate_grads_loop(loss_fn, params, mbs, norm),
                accumulate_grads(loss_fn, params, split_microbatches(batch, 2), norm)):
        np.testing.assert_allclose(got[0], loss, rtol=1e-5)
        np.testing.assert_allclose(got[1]["W"], grads["W"], rtol=1e-5, atol=1e-7)
        for k in metrics:
            np.testing.assert_allclose(got[2][k], metrics[k], rtol=1e-5, err_msg=k)


def test_gradient_matches_softmax_minus_onehot():
    params, batch = toy(2)
    g = jax.grad(lambda p: sft_loss(batch["x"] @ p["W"], batch["y"], batch["mask"])[0])(params)["W"]
    x, y, mask = (np.asarray(batch[k]) for k in ("x", "y", "mask"))
    logits = x @ np.asarray(params["W"])
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    delta = (p - np.eye(5)[y]) * mask[..., None] / mask.sum()
    np.testing.assert_allclose(g, np.einsum("btd,btv->dv", x, delta), rtol=1e-4, atol=1e-6)


def test_sft_loss_from_chunked_logprobs_equals_logits_version():
    """The training step's chunked path (target_logprobs + sft_loss_from_logp) == sft_loss on the
    full logits: loss, metrics and gradients."""
    from flax import nnx

    from execverify_jax.model.config import ModelConfig
    from execverify_jax.model.logprobs import target_logprobs
    from execverify_jax.model.params import create_model
    from execverify_jax.rl.sft.loss import sft_loss_from_logp
    graphdef, params = nnx.split(create_model(ModelConfig.tiny(num_layers=1), seed=2))
    rng = np.random.RandomState(0)
    ids = jnp.asarray(rng.randint(0, 512, (2, 13)), jnp.int32)
    target, mask = next_token_targets(ids, jnp.asarray(rng.rand(2, 13) < 0.6))

    def full(p):
        m = nnx.merge(graphdef, p)
        return sft_loss(m(ids), target, mask)

    def chunked(p):
        m = nnx.merge(graphdef, p)
        logp, hit = target_logprobs(m, m.hidden(ids), target, chunk=4, with_hit=True)
        return sft_loss_from_logp(logp, hit, mask)

    (l1, m1), g1 = jax.value_and_grad(full, has_aux=True)(params)
    (l2, m2), g2 = jax.value_and_grad(chunked, has_aux=True)(params)
    np.testing.assert_allclose(float(l2), float(l1), rtol=1e-6)
    for k in m1:
        np.testing.assert_allclose(float(m2[k]), float(m1[k]), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g2), jax.tree.leaves(g1)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-7)
