"""Group advantages, dynamic sampling, overlong filtering and KL-in-reward."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from execverify_jax.rl.objective.advantages import (group_advantages, informative_groups, kl_penalized_rewards,
                                          overlong_filter, truncated_sequences)
from execverify_jax.rl.objective.config import GRPOConfig


def test_hand_worked_group():
    # rewards [1, 0, 0, 0]: mean 0.25, unbiased std sqrt((0.5625 + 3 * 0.0625) / 3) = 0.5
    adv = group_advantages(jnp.array([1.0, 0.0, 0.0, 0.0]), 4, GRPOConfig(group_size=4))
    np.testing.assert_allclose(adv, np.array([0.75, -0.25, -0.25, -0.25]) / (0.5 + 1e-6), rtol=1e-6)


def test_zero_group_mean_and_unbiased_std():
    rng = np.random.default_rng(0)
    r = rng.uniform(0, 3, 6 * 8).astype(np.float32)
    adv = np.asarray(group_advantages(jnp.asarray(r), 8, GRPOConfig()))
    r_g, adv_g = r.reshape(6, 8), adv.reshape(6, 8)
    np.testing.assert_allclose(adv_g.mean(1), 0, atol=1e-5)
    std = r_g.std(1, ddof=1, keepdims=True)
    np.testing.assert_allclose(adv_g, (r_g - r_g.mean(1, keepdims=True)) / (std + 1e-6), rtol=1e-5, atol=1e-6)
    # the biased std would give a different answer: the test can tell them apart
    assert not np.allclose(adv_g, (r_g - r_g.mean(1, keepdims=True)) / (r_g.std(1, keepdims=True) + 1e-6))


@pytest.mark.parametrize("value", [0.0, 1.0, 0.1, 1.7, 2.0 / 3.0])
def test_identical_rewards_give_exactly_zero(value):
    r = jnp.array([value] * 8 + [0.0, 1.0] * 4, jnp.float32)
    for cfg in (GRPOConfig(), GRPOConfig.dr_grpo()):
        adv = np.asarray(group_advantages(r, 8, cfg))
        assert np.all(adv[:8] == 0.0)
        assert np.all(adv[8:] != 0.0)


def test_dr_grpo_is_mean_centred_only():
    r = jnp.array([2.0, 0.0, 1.0, 1.0, 0.5, 0.5, 0.0, 3.0])
    adv = group_advantages(r, 4, GRPOConfig.dr_grpo(group_size=4))
    np.testing.assert_allclose(adv, [1.0, -1.0, 0.0, 0.0, -0.5, -0.5, -1.0, 2.0], rtol=1e-6)


def test_bad_group_size_is_an_error():
    with pytest.raises(ValueError, match="group_size=3"):
        group_advantages(jnp.zeros(8), 3, GRPOConfig())
    with pytest.raises(ValueError, match="group_size=1"):
        group_advantages(jnp.zeros(8), 1, GRPOConfig())


def test_informative_groups():
    r_BG = jnp.array([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [2.0, 2.0, 1.9]])
    np.testing.assert_array_equal(informative_groups(r_BG), [False, True, False, True])


def test_truncated_sequences_and_overlong_filter():
    stop = (7, 9)
    comp = jnp.array([[1, 2, 3, 4],    # full length, no stop: truncated
                      [1, 2, 3, 7],    # full length, ends with stop: fine
                      [1, 9, 0, 0],    # stopped early
                      [1, 2, 3, 0]])   # short without stop (e.g. other reason): not truncated
    mask = jnp.array([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]], jnp.float32)
    trunc = truncated_sequences(comp, mask, stop, max_len=4)
    np.testing.assert_array_equal(trunc, [True, False, False, False])
    filtered = overlong_filter(mask, trunc)
    np.testing.assert_array_equal(filtered[0], 0)
    np.testing.assert_array_equal(filtered[1:], mask[1:])
    assert filtered.dtype == mask.dtype


def test_kl_in_reward_subtracts_summed_token_kl():
    old = jnp.array([[-1.0, -2.0, -3.0]])
    ref = jnp.array([[-1.5, -1.0, 0.0]])
    mask = jnp.array([[1, 1, 0]])
    r = kl_penalized_rewards(jnp.array([1.0]), old, ref, mask, coef=0.1, estimator="k1")
    np.testing.assert_allclose(r, [1.0 - 0.1 * ((-1.0 + 1.5) + (-2.0 + 1.0))], rtol=1e-6)
    r3 = kl_penalized_rewards(jnp.array([1.0]), old, ref, mask, coef=0.1, estimator="k3")
    k3 = sum(math.exp(d) - d - 1 for d in (-0.5, 1.0))
    np.testing.assert_allclose(r3, [1.0 - 0.1 * k3], rtol=1e-6)
