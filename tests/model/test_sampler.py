"""Sampler properties: seeds, strategies, stop ids, n samples, log-probs, padding buckets."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
from flax import nnx

from execverify_jax.model.sampler import Sampler, bucket_for, left_pad
from execverify_jax.model.strategies import Greedy, Strategy, Temperature, TopK, TopP, make_strategy


def _forward(model, tokens_T):
    return nnx.jit(lambda m, t: m(t))(model, jnp.asarray(tokens_T)[None])


@pytest.fixture(scope="module")
def setup(tiny_jax):
    sampler, params = Sampler.for_model(tiny_jax, buckets=(8, 16, 32))
    rng = np.random.RandomState(11)
    prompts = [list(rng.randint(0, 512, n)) for n in (3, 9, 14)]
    return tiny_jax, sampler, params, prompts


def test_same_seed_same_samples_other_seed_differs(setup):
    _, sampler, params, prompts = setup
    a = sampler.generate(params, prompts, 10, Temperature(0.7), seed=5)
    b = sampler.generate(params, prompts, 10, Temperature(0.7), seed=5)
    c = sampler.generate(params, prompts, 10, Temperature(0.7), seed=6)
    np.testing.assert_array_equal(a.tokens_BC, b.tokens_BC)
    np.testing.assert_array_equal(a.logp_BC, b.logp_BC)
    assert not np.array_equal(a.tokens_BC, c.tokens_BC)


def test_top_k_1_and_tiny_top_p_equal_greedy(setup):
    _, sampler, params, prompts = setup
    greedy = sampler.generate(params, prompts, 10, Greedy())
    for strat in (TopK(1, temperature=0.7), TopP(1e-6, temperature=1.3)):
        out = sampler.generate(params, prompts, 10, strat, seed=3)
        np.testing.assert_array_equal(out.tokens_BC, greedy.tokens_BC)


def test_top_k_only_draws_top_k_tokens(setup):
    model, sampler, params, prompts = setup
    out = sampler.generate(params, prompts[:1], 1, TopK(3), n=32, seed=1)
    logits = np.asarray(_forward(model, np.asarray(prompts[0])))[0, -1]
    allowed = set(np.argsort(-logits)[:3].tolist())
    drawn = set(out.tokens_BC[:, 0].tolist())
    assert drawn <= allowed and len(drawn) > 1


def test_stop_ids_end_rows_and_pad_after(setup):
    _, sampler, params, prompts = setup
    greedy = sampler.generate(params, prompts, 10, Greedy())
    stop = int(greedy.tokens_BC[1, 4])  # row 1 must stop at (or before) step 4
    out = sampler.generate(params, prompts, 10, Greedy(), stop_ids=(stop, 10**6 % 512))
    L = int(out.lengths_B[1])
    assert out.stopped_B[1] and L <= 5 and out.tokens_BC[1, L - 1] == stop
    assert (out.tokens_BC[1, L:] == sampler.pad_id).all() and (out.logp_BC[1, L:] == 0).all()
    np.testing.assert_array_equal(out.tokens_BC[1, :L], greedy.tokens_BC[1, :L])
    for i in range(3):  # rows are consistent with their own lengths
        assert out.stopped_B[i] == (stop in greedy.tokens_BC[i].tolist() or 10**6 % 512 in greedy.tokens_BC[i].tolist())


def test_all_rows_stopping_ends_the_loop_early(setup):
    _, sampler, params, prompts = setup
    greedy = sampler.generate(params, prompts[:1], 10, Greedy())
    out = sampler.generate(params, prompts[:1], 10, Greedy(), stop_ids=(int(greedy.tokens_BC[0, 0]),))
    assert out.lengths_B[0] == 1 and out.stopped_B[0]


def test_n_samples_are_grouped_by_prompt(setup):
    _, sampler, params, prompts = setup
    out = sampler.generate(params, prompts, 10, Temperature(0.7), n=4, seed=2)
    assert out.tokens_BC.shape == (12, 10)
    np.testing.assert_array_equal(out.prompt_index_B, np.repeat(np.arange(3), 4))
    group = out.tokens_BC[:4]
    assert len({tuple(r) for r in group}) > 1  # the n samples differ


@pytest.mark.parametrize("strategy", [Temperature(0.7), TopP(0.9, temperature=1.2), Greedy()])
def test_logprobs_equal_forward_recomputation(setup, strategy):
    model, sampler, params, prompts = setup
    out = sampler.generate(params, prompts, 10, strategy, seed=9)
    T = getattr(strategy, "temperature", 1.0)
    for i, p in enumerate(prompts):
        full = np.concatenate([np.asarray(p), out.tokens_BC[i]])
        logits = np.asarray(_forward(model, full))[0] / T
        logp = scipy.special.log_softmax(logits, axis=-1)
        rec = logp[len(p) - 1:-1][np.arange(10), out.tokens_BC[i]]
        np.testing.assert_allclose(out.logp_BC[i], rec, atol=2e-5)


def test_result_independent_of_batch_companions_and_bucket(setup):
    _, sampler, params, prompts = setup
    alone = sampler.generate(params, prompts[:1], 10, Greedy())  # bucket 8
    batched = sampler.generate(params, prompts, 10, Greedy())  # bucket 16, more left padding
    np.testing.assert_array_equal(alone.tokens_BC[0], batched.tokens_BC[0])
    np.testing.assert_allclose(alone.logp_BC[0], batched.logp_BC[0], atol=1e-5)


@dataclasses.dataclass(frozen=True)
class LeastLikely:
    """A user-defined strategy (not a built-in): always the lowest-scoring token."""

    def select(self, logits_BV, key):
        del key
        tokens_B = jnp.argmin(logits_BV, axis=-1).astype(jnp.int32)
        logp_BV = jax.nn.log_softmax(logits_BV.astype(jnp.float32), axis=-1)
        return tokens_B, jnp.take_along_axis(logp_BV, tokens_B[:, None], axis=-1)[:, 0]


def test_user_defined_strategy_drives_the_sampler(setup):
    model, sampler, params, prompts = setup
    strat = LeastLikely()
    assert isinstance(strat, Strategy) and isinstance(Greedy(), Strategy)
    out = sampler.generate(params, prompts[:1], 3, strat)
    seq = list(prompts[0])
    for t in range(3):  # each drawn token is the argmin of the full forward's last logits
        logits = np.asarray(_forward(model, np.asarray(seq)))[0, -1]
        assert out.tokens_BC[0, t] == int(np.argmin(logits))
        assert out.logp_BC[0, t] == pytest.approx(scipy.special.log_softmax(logits)[out.tokens_BC[0, t]], abs=1e-4)
        seq.append(int(out.tokens_BC[0, t]))


def test_per_row_caps_truncate_the_uniform_run(setup):
    """Each prompt's rows stop at its own cap; the tokens are the uniform-cap run's, truncated,
    and a stop id before the cap still ends the row (stopped) while a capped row is not."""
    _, sampler, params, prompts = setup
    full = sampler.generate(params, prompts, 10, Greedy(), n=2)
    caps = [4, 10, 1]
    out = sampler.generate(params, prompts, caps, Greedy(), n=2)
    np.testing.assert_array_equal(out.lengths_B, np.repeat(caps, 2))
    assert not out.stopped_B.any()
    for b, c in enumerate(np.repeat(caps, 2)):
        np.testing.assert_array_equal(out.tokens_BC[b, :c], full.tokens_BC[b, :c])
        np.testing.assert_allclose(out.logp_BC[b, :c], full.logp_BC[b, :c], atol=1e-6)
        assert (out.tokens_BC[b, c:] == sampler.pad_id).all() and (out.logp_BC[b, c:] == 0).all()
    stop = int(full.tokens_BC[2, 2])  # prompt 1 (cap 10) stops at or before its token 3
    first = [list(full.tokens_BC[b]).index(stop) + 1 if stop in full.tokens_BC[b].tolist() else 99
             for b in range(6)]
    got = sampler.generate(params, prompts, caps, Greedy(), stop_ids=(stop,), n=2)
    want = np.minimum(first, np.repeat(caps, 2))
    np.testing.assert_array_equal(got.lengths_B, want)
    np.testing.assert_array_equal(got.stopped_B, np.asarray(first) <= np.repeat(caps, 2))
    assert got.stopped_B.any()
    with pytest.raises(ValueError, match="2 caps for 3 prompts"):
        sampler.generate(params, prompts, [4, 4], Greedy())
    with pytest.raises(ValueError, match="for prompt 1"):
        sampler.generate(params, prompts, [4, 0, 4], Greedy())


def test_bad_inputs_are_clear_errors(setup):
    _, sampler, params, prompts = setup
    with pytest.raises(ValueError, match="empty"):
        sampler.generate(params, [[]], 4)
    with pytest.raises(ValueError, match="outside the vocab"):
        sampler.generate(params, [[1, 9999]], 4)
    with pytest.raises(ValueError, match="largest bucket"):
        sampler.generate(params, [[1] * 40], 4)
    with pytest.raises(ValueError, match="top-p"):
        TopP(0.0)
    with pytest.raises(ValueError, match="temperature"):
        Temperature(0.0)


def test_helpers():
    assert bucket_for(9, (8, 16)) == 16 and bucket_for(8, (16, 8)) == 8
    toks, lens = left_pad([[1, 2], [3, 4, 5]], 4, 0)
    np.testing.assert_array_equal(toks, [[0, 0, 1, 2], [0, 3, 4, 5]])
    np.testing.assert_array_equal(lens, [2, 3])
    assert make_strategy(temperature=0) == Greedy()
    assert make_strategy(temperature=0.5, top_p=0.9) == TopP(0.9, 0.5)
    assert make_strategy(temperature=0.5, top_k=4) == TopK(4, 0.5)


def test_argmax_first_equals_jnp_argmax_with_ties():
    from execverify_jax.model.strategies import argmax_first

    rng = np.random.RandomState(0)
    z = rng.randint(0, 5, (64, 300)).astype(np.float32)  # many ties: the first index must win
    z[3] = -np.inf
    z[4, 7] = np.inf
    np.testing.assert_array_equal(np.asarray(argmax_first(jnp.asarray(z))), np.argmax(z, axis=-1))
    nan_row = np.full((1, 10), np.nan, np.float32)
    assert 0 <= int(argmax_first(jnp.asarray(nan_row))[0]) < 10  # a valid id, never V


def test_inference_numerics_names():
    from execverify_jax.model.config import inference_numerics

    assert inference_numerics("auto", "cpu")["dtype"] == "float32"
    assert inference_numerics("auto", "gpu") == {"param_dtype": "bfloat16", "dtype": "bfloat16", "matmul_dtype": None}
    assert inference_numerics("bf16-matmul", "cpu") == {"param_dtype": "bfloat16", "dtype": "float32",
                                                        "matmul_dtype": "bfloat16"}
    with pytest.raises(ValueError, match="fp8"):
        inference_numerics("fp8", "cpu")
