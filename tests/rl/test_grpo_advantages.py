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


# ------------------------------------------------------------------ format shaping (issue 15)
import itertools

from execverify_jax.rl.objective.advantages import shaped_advantages, stepwise_advantages

BONUS = 0.2


def _shaped(kinds, cfg):
    """kinds: per sample (correctness, well_formed); returns the advantages."""
    c = jnp.asarray([k[0] for k in kinds], jnp.float32)
    s = jnp.asarray([BONUS if k[1] else 0.0 for k in kinds], jnp.float32)
    return np.asarray(shaped_advantages(c, s, len(kinds), cfg))


def test_additive_shaping_ranks_a_well_formed_wrong_answer_like_a_correct_one():
    cfg = GRPOConfig(format_shaping="additive")
    wrong = _shaped([(0.0, True)] + [(0.0, False)] * 7, cfg)
    right = _shaped([(2.0, True)] + [(0.0, False)] * 7, cfg)
    np.testing.assert_allclose(wrong, right, rtol=1e-4)  # [0.2, 0 x 7] ~ [2.2, 0 x 7] (eps aside)
    np.testing.assert_allclose(wrong[0], 2.475, atol=1e-3)


def test_tiebreak_shaping_never_lets_format_beat_correctness():
    """Every group of G = 4 over the sample types {wrong, output-only 1.0, correct 2.0} x {well
    formed, not}: a well-formed wrong answer's advantage is <= 0 <= a well-formed correct one's,
    strictly whenever its group is informative; format never reorders different correctness."""
    cfg = GRPOConfig(group_size=4)
    types = [(c, f) for c in (0.0, 1.0, 2.0) for f in (True, False)]
    for group in itertools.product(types, repeat=4):
        adv = _shaped(list(group), cfg)
        informative = len({c for c, _ in group}) > 1
        for (c, f), a in zip(group, adv):
            if c == 0.0 and f:
                assert a <= 0 and (a < 0 or not informative), (group, adv)
            if c == 2.0 and f:
                assert a >= 0 and (a > 0 or not informative), (group, adv)
        for (ci, _), ai in zip(group, adv):
            for (cj, _), aj in zip(group, adv):
                if ci > cj:
                    assert ai > aj, (group, adv)
    # within equal correctness the well-formed sample is preferred
    adv = _shaped([(0.0, True), (0.0, False), (0.0, False), (0.0, True)], cfg)
    np.testing.assert_allclose(adv, [0.0, -BONUS, -BONUS, 0.0], atol=1e-6)


def test_tiebreak_equals_plain_grpo_without_a_bonus():
    rng = np.random.default_rng(3)
    r = jnp.asarray(rng.choice([0.0, 1.0, 1.5, 2.0], 32), jnp.float32)
    cfg = GRPOConfig()
    np.testing.assert_array_equal(shaped_advantages(r, jnp.zeros_like(r), 8, cfg), group_advantages(r, 8, cfg))


# ------------------------------------------------------------------ stepwise credit (issue 15)
def test_stepwise_advantages_by_hand():
    """G = 2 samples of a question with one output and two white-box steps.

    steps [out, q1, q2]: sample 0 = [1, 1, 0], sample 1 = [1, 0, 1]. Output: equal -> 0.
    q1: [1, 0] -> mean 0.5, unbiased std sqrt(0.5) -> +-0.7071; q2 the mirror image.
    Tokens: segment 0 takes the sequence advantage, 1 the output's, 2 q1's, 3 q2's."""
    cfg = GRPOConfig(group_size=2)
    adv_B = jnp.asarray([0.3, -0.3])
    steps_BK = jnp.asarray([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    valid_BK = jnp.ones((2, 3), bool)
    seg_BC = jnp.asarray([[0, 1, 2, 2, 3, 0], [0, 0, 1, 3, 2, 9]])  # 9: out of range -> clipped to q2
    got = np.asarray(stepwise_advantages(adv_B, steps_BK, valid_BK, seg_BC, 2, cfg))
    h = 0.5 / (math.sqrt(0.5) + 1e-6)
    np.testing.assert_allclose(got, [[0.3, 0.0, h, h, -h, 0.3], [-0.3, -0.3, 0.0, h, -h, h]], rtol=1e-5)
    # invalid steps (a question with fewer sub-questions) fall back to the sequence's advantage
    valid_BK = jnp.asarray([[True, True, False], [True, True, False]])
    got = np.asarray(stepwise_advantages(adv_B, steps_BK, valid_BK, seg_BC, 2, cfg))
    assert got[0, 4] == np.float32(0.3) and got[1, 3] == np.float32(-0.3)


def test_stepwise_without_steps_is_outcome_credit():
    adv_B = jnp.asarray([1.0, -1.0])
    got = stepwise_advantages(adv_B, jnp.zeros((2, 0)), jnp.zeros((2, 0), bool), jnp.zeros((2, 4), jnp.int32),
                              2, GRPOConfig(group_size=2))
    np.testing.assert_array_equal(got, np.repeat(np.asarray(adv_B)[:, None], 4, 1))


def test_call_bonus_cannot_beat_correctness_under_tiebreak():
    # rewards/whitebox puts the call bonus (reward.call_reward) into details["shaping"] with the
    # format bonus (tests/rewards/test_whitebox.py); here the advantages of such groups.
    # one correct answer with a wrong call is impossible; a correct (2.0) one without the format
    # bonus against wrong ones with every bonus (format 0.2 + call 0.3)
    correct = jnp.asarray([2.0, 0.0, 0.0, 0.0])
    shaping = jnp.asarray([0.0, 0.5, 0.2, 0.0])
    adv = np.asarray(shaped_advantages(correct, shaping, 4, GRPOConfig(group_size=4, format_shaping="tiebreak")))
    assert adv[0] > 0 and (adv[1:] <= 0).all() and adv[1] > adv[2] > adv[3]
    # no sample correct: the right call is preferred, at most 0 (never pushed up)
    adv = np.asarray(shaped_advantages(jnp.zeros(4), shaping, 4, GRPOConfig(group_size=4, format_shaping="tiebreak")))
    np.testing.assert_allclose(adv, [-0.5, 0.0, -0.3, -0.5], atol=1e-6)
