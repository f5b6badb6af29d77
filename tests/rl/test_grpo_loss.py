"""GRPO policy loss against numbers worked by hand and an independent numpy loop reference."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from execverify_jax.rl.objective.config import AGG_MODES, GRPOConfig
from execverify_jax.rl.objective.loss import policy_loss

# Four tokens, one per sequence, hand-worked with eps 0.2/0.2 and dual clip c = 3:
#   A=+1, rho=e^0.5=1.6487 -> max(-1.6487, -1.2) = -1.2            (high clip)
#   A=-1, rho=e^1.5=4.4817 -> max(4.4817, 1.2) = 4.4817 -> min(., 3) = 3  (dual clip)
#   A=-1, rho=e^-0.5=0.6065 -> max(0.6065, 0.8) = 0.8              (low clip)
#   A=+1, rho=1 -> -1
HAND_LOGP = np.array([[0.5], [1.5], [-0.5], [0.0]], np.float32) - 2.0
HAND_OLD = np.full((4, 1), -2.0, np.float32)
HAND_ADV = np.array([1.0, -1.0, -1.0, 1.0], np.float32)
HAND_MASK = np.ones((4, 1), np.float32)
HAND_TOKEN_LOSS = np.array([-1.2, 3.0, 0.8, -1.0])


def np_reference(logp, old, adv, mask, *, el=0.2, eh=0.2, c=3.0, mode="token-mean", norm_len=None,
                 ref=None, kl_coef=0.0, entropy=None, ent_coef=0.0):
    """Plain-Python loop reference, written from the formulas in docs/GRPO.md."""
    B, C = logp.shape
    per_seq_sum, per_seq_n = [], []
    for i in range(B):
        s, n = 0.0, 0
        for t in range(C):
            if not mask[i, t]:
                continue
            r = math.exp(float(logp[i, t]) - float(old[i, t]))
            a = float(adv[i])
            l = max(-a * r, -a * min(max(r, 1 - el), 1 + eh))
            if c is not None and a < 0:
                l = min(l, -c * a)
            if kl_coef:
                d = float(ref[i, t]) - float(logp[i, t])
                l += kl_coef * (math.exp(d) - d - 1)
            if ent_coef:
                l -= ent_coef * float(entropy[i, t])
            s += l
            n += 1
        per_seq_sum.append(s)
        per_seq_n.append(n)
    seqs = [i for i in range(B) if per_seq_n[i] > 0]
    if mode == "token-mean":
        return sum(per_seq_sum) / sum(per_seq_n)
    if mode == "seq-mean-token-mean":
        return sum(per_seq_sum[i] / per_seq_n[i] for i in seqs) / len(seqs)
    if mode == "seq-mean-token-sum":
        return sum(per_seq_sum[i] for i in seqs) / len(seqs)
    return sum(per_seq_sum[i] for i in seqs) / len(seqs) / norm_len


def random_batch(seed=0, B=5, C=6):
    rng = np.random.default_rng(seed)
    logp = rng.normal(-1.5, 0.6, (B, C)).astype(np.float32)
    old = (logp + rng.normal(0, 0.3, (B, C))).astype(np.float32)  # ratios spread across the clips
    adv = rng.normal(0, 1.0, B).astype(np.float32)
    lens = rng.integers(1, C + 1, B)
    mask = (np.arange(C)[None, :] < lens[:, None]).astype(np.float32)
    return logp, old, adv, mask


def run(cfg, logp, old, adv, mask, **kw):
    return policy_loss(jnp.asarray(logp), jnp.asarray(old), jnp.asarray(adv), jnp.asarray(mask), cfg, **kw)


def test_hand_worked_token_losses_and_metrics():
    cfg = GRPOConfig(loss_agg_mode="token-mean")
    loss, m = run(cfg, HAND_LOGP, HAND_OLD, HAND_ADV, HAND_MASK)
    np.testing.assert_allclose(loss, HAND_TOKEN_LOSS.mean(), rtol=1e-5)
    np.testing.assert_allclose(m["clip_frac_high"], 0.25)
    np.testing.assert_allclose(m["clip_frac_low"], 0.25)  # only token 3: rho < 0.8 with A < 0
    np.testing.assert_allclose(m["dual_clip_frac"], 0.25)
    np.testing.assert_allclose(m["ratio_max"], math.exp(1.5), rtol=1e-5)
    np.testing.assert_allclose(m["ratio_mean"], (math.exp(0.5) + math.exp(1.5) + math.exp(-0.5) + 1) / 4, rtol=1e-5)
    np.testing.assert_allclose(m["num_tokens"], 4.0)
    # approx_kl = mean((rho - 1) - log rho)
    rho = np.exp([0.5, 1.5, -0.5, 0.0])
    np.testing.assert_allclose(m["approx_kl"], np.mean(rho - 1 - np.log(rho)), rtol=1e-5)


def test_dual_clip_off_leaves_large_negative_advantage_loss_unbounded():
    loss, m = run(GRPOConfig(loss_agg_mode="token-mean", dual_clip_c=None), HAND_LOGP, HAND_OLD, HAND_ADV, HAND_MASK)
    np.testing.assert_allclose(loss, (-1.2 + math.exp(1.5) + 0.8 - 1.0) / 4, rtol=1e-5)
    assert float(m["dual_clip_frac"]) == 0.0


def test_dual_clip_constant_from_config():
    loss, _ = run(GRPOConfig(loss_agg_mode="token-mean", dual_clip_c=2.0), HAND_LOGP, HAND_OLD, HAND_ADV, HAND_MASK)
    np.testing.assert_allclose(loss, (-1.2 + 2.0 + 0.8 - 1.0) / 4, rtol=1e-5)


def test_clip_higher_widens_only_the_upper_bound():
    logp = np.log(np.array([[1.25], [0.75]], np.float32))
    old = np.zeros((2, 1), np.float32)
    adv = np.array([1.0, -1.0], np.float32)
    mask = np.ones((2, 1), np.float32)
    sym, m_sym = run(GRPOConfig(loss_agg_mode="token-mean"), logp, old, adv, mask)
    high, m_high = run(GRPOConfig(loss_agg_mode="token-mean", clip_eps_high=0.28), logp, old, adv, mask)
    # symmetric: -1.2 and max(0.75, 0.8) = 0.8; clip-higher: -1.25 unclipped, low side unchanged
    np.testing.assert_allclose(sym, (-1.2 + 0.8) / 2, rtol=1e-5)
    np.testing.assert_allclose(high, (-1.25 + 0.8) / 2, rtol=1e-5)
    assert float(m_sym["clip_frac_high"]) == 0.5 and float(m_high["clip_frac_high"]) == 0.0
    assert float(m_high["clip_frac_low"]) == 0.5


@pytest.mark.parametrize("mode", AGG_MODES)
def test_every_aggregation_mode_matches_numpy_loop(mode):
    logp, old, adv, mask = random_batch(1)
    mask[2] = 0.0  # an empty sequence: must not count as a sequence
    cfg = GRPOConfig(loss_agg_mode=mode, max_response_len=16)
    loss, m = run(cfg, logp, old, adv, mask)
    want = np_reference(logp, old, adv, mask, mode=mode, norm_len=16)
    np.testing.assert_allclose(loss, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m["pg_loss"], want, rtol=1e-5, atol=1e-6)


def test_aggregation_modes_by_hand():
    # Two sequences with per-token losses [-1.2, 3.0] (n=2) and [0.8] (n=1).
    logp = np.array([[0.5, 1.5], [-0.5, 0.0]], np.float32) - 2.0
    old = np.full((2, 2), -2.0, np.float32)
    adv = np.array([1.0, -1.0], np.float32)  # seq 0 token 1 now has A=+1: rho=e^1.5 -> -1.2
    mask = np.array([[1, 1], [1, 0]], np.float32)
    expect = {"token-mean": (-1.2 - 1.2 + 0.8) / 3,
              "seq-mean-token-mean": ((-2.4 / 2) + 0.8) / 2,
              "seq-mean-token-sum": (-2.4 + 0.8) / 2,
              "seq-mean-token-sum-norm": (-2.4 + 0.8) / 2 / 10}
    for mode, want in expect.items():
        loss, _ = run(GRPOConfig(loss_agg_mode=mode, max_response_len=10), logp, old, adv, mask)
        np.testing.assert_allclose(loss, want, rtol=1e-5, err_msg=mode)


def test_k3_kl_term_by_hand_and_its_gradient():
    # logp = -1, ref = -1.5: d = -0.5, k3 = e^-0.5 + 0.5 - 1 = 0.1065307; A = 0 so pg = 0.
    logp = np.full((1, 1), -1.0, np.float32)
    ref = np.full((1, 1), -1.5, np.float32)
    cfg = GRPOConfig(kl_coef=0.5)
    args = (jnp.asarray(logp), jnp.asarray(logp), jnp.zeros(1), jnp.ones((1, 1)), cfg)
    loss, m = policy_loss(*args, ref_logp_BC=jnp.asarray(ref))
    k3 = math.exp(-0.5) + 0.5 - 1
    np.testing.assert_allclose(loss, 0.5 * k3, rtol=1e-5)
    np.testing.assert_allclose(m["kl_ref"], k3, rtol=1e-5)
    g = jax.grad(lambda lp: policy_loss(lp, args[1], *args[2:], ref_logp_BC=jnp.asarray(ref))[0])(args[0])
    np.testing.assert_allclose(g, 0.5 * (1 - math.exp(-0.5)), rtol=1e-5)  # d k3 / d logp = 1 - e^d


def test_kl_and_entropy_terms_match_numpy_loop():
    logp, old, adv, mask = random_batch(2)
    rng = np.random.default_rng(3)
    ref = (logp + rng.normal(0, 0.2, logp.shape)).astype(np.float32)
    ent = rng.uniform(0.1, 2.0, logp.shape).astype(np.float32)
    cfg = GRPOConfig(kl_coef=0.04, entropy_coef=0.01, clip_eps_high=0.28)
    loss, m = run(cfg, logp, old, adv, mask, ref_logp_BC=jnp.asarray(ref), entropy_BC=jnp.asarray(ent))
    want = np_reference(logp, old, adv, mask, eh=0.28, mode=cfg.loss_agg_mode, ref=ref, kl_coef=0.04,
                        entropy=ent, ent_coef=0.01)
    np.testing.assert_allclose(loss, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m["entropy"], (ent * mask).sum() / mask.sum(), rtol=1e-5)


def test_ratio_one_gives_plain_policy_gradient():
    """logp == old_logp: grad = -sum_it w_it A_i grad logp_it, with the softmax gradient by hand."""
    rng = np.random.default_rng(4)
    B, C, D, V = 3, 4, 5, 7
    x = rng.normal(size=(B, C, D)).astype(np.float32)
    act = rng.integers(0, V, (B, C))
    W = (0.3 * rng.normal(size=(D, V))).astype(np.float32)
    adv = np.array([1.5, -0.7, 0.2], np.float32)
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], np.float32)

    def logp_fn(W):
        lp = jax.nn.log_softmax(jnp.einsum("bcd,dv->bcv", x, W), axis=-1)
        return jnp.take_along_axis(lp, jnp.asarray(act)[..., None], axis=-1)[..., 0]

    for mode, weights in {"token-mean": mask / mask.sum(),
                          "seq-mean-token-mean": mask / mask.sum(1, keepdims=True) / B}.items():
        cfg = GRPOConfig(loss_agg_mode=mode)
        g = jax.grad(lambda W: policy_loss(logp_fn(W), jax.lax.stop_gradient(logp_fn(W)),
                                           jnp.asarray(adv), jnp.asarray(mask), cfg)[0])(jnp.asarray(W))
        logits = np.einsum("bcd,dv->bcv", x, W)
        p = np.exp(logits - logits.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        want = np.zeros_like(W)
        for i in range(B):
            for t in range(C):
                onehot = np.eye(V)[act[i, t]]
                want -= weights[i, t] * adv[i] * np.outer(x[i, t], onehot - p[i, t])
        np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-6, err_msg=mode)


def test_garbage_in_padding_cannot_poison_loss_or_gradient():
    logp, old, adv, mask = random_batch(5)
    logp[mask == 0] = np.inf
    old[mask == 0] = -np.inf
    ref = np.where(mask == 0, np.nan, logp).astype(np.float32)
    cfg = GRPOConfig(kl_coef=0.1)
    f = lambda lp: run(cfg, lp, old, adv, mask, ref_logp_BC=jnp.asarray(ref))[0]
    loss = f(jnp.asarray(logp))
    g = jax.grad(f)(jnp.asarray(logp))
    assert np.isfinite(float(loss)) and np.all(np.isfinite(np.asarray(g)))
    assert np.all(np.asarray(g)[mask == 0] == 0)


def test_fully_masked_batch_gives_zero_not_nan():
    logp, old, adv, mask = random_batch(6)
    for mode in AGG_MODES:
        loss, m = run(GRPOConfig(loss_agg_mode=mode), logp, old, adv, np.zeros_like(mask))
        assert float(loss) == 0.0 and float(m["num_tokens"]) == 0.0


def test_missing_inputs_and_bad_shapes_are_clear_errors():
    logp, old, adv, mask = random_batch(7)
    with pytest.raises(ValueError, match="kl_coef=0.1"):
        run(GRPOConfig(kl_coef=0.1), logp, old, adv, mask)
    with pytest.raises(ValueError, match="entropy_coef=0.01"):
        run(GRPOConfig(entropy_coef=0.01), logp, old, adv, mask)
    with pytest.raises(ValueError, match="adv_B"):
        run(GRPOConfig(), logp, old, adv[:-1], mask)
    with pytest.raises(ValueError, match="old_logp_BC"):
        run(GRPOConfig(), logp, old[:, :-1], adv, mask)


def test_loss_is_jittable_with_config_static():
    logp, old, adv, mask = random_batch(8)
    cfg = GRPOConfig()
    f = jax.jit(lambda *a: policy_loss(*a, cfg))
    loss, _ = f(jnp.asarray(logp), jnp.asarray(old), jnp.asarray(adv), jnp.asarray(mask))
    np.testing.assert_allclose(loss, np_reference(logp, old, adv, mask, mode=cfg.loss_agg_mode), rtol=1e-5)


def test_default_reproduces_verl_031_micro_batch_one_pipeline():
    """verl 0.3.1 with micro-batch = 1 sequence: each micro-batch takes the token mean of its one
    sequence, divides by the accumulation count and the results are summed. Our default equals it;
    our global `token-mean` does not (unequal lengths)."""
    logp, old, adv, mask = random_batch(9, B=6, C=8)
    mask[:, 0] = 1.0  # verl responses always have >= 1 token
    verl = 0.0
    for i in range(6):  # one micro-batch per sequence, agg_loss(token-mean) inside it
        verl += np_reference(logp[i:i + 1], old[i:i + 1], adv[i:i + 1], mask[i:i + 1], mode="token-mean") / 6
    default, _ = run(GRPOConfig(), logp, old, adv, mask)
    np.testing.assert_allclose(default, verl, rtol=1e-5, atol=1e-6)
    global_mean, _ = run(GRPOConfig(loss_agg_mode="token-mean"), logp, old, adv, mask)
    assert abs(float(global_mean) - verl) > 1e-3
