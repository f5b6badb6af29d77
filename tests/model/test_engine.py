"""Rollout engine (continuous batching) against the static sampler: same greedy tokens and
log-probs, stop ids and max length per slot (one cap, or one per prompt), sampled rows
independent of the slot count."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

from execverify_jax.model.engine import Engine
from execverify_jax.model.sampler import Sampler
from execverify_jax.model.strategies import Greedy, Temperature


@pytest.fixture(scope="module")
def setup(tiny_jax):
    graphdef, params = nnx.split(tiny_jax)
    sampler = Sampler(tiny_jax.cfg, graphdef, buckets=(8, 16))
    rng = np.random.RandomState(3)
    prompts = [list(rng.randint(1, 512, n)) for n in (3, 7, 12, 5, 9)]
    return tiny_jax.cfg, graphdef, params, sampler, prompts


def _engine(cfg, graphdef, slots, **kw):
    return Engine(cfg, graphdef, slots=slots, steps_per_call=4, block=8, buckets=(8, 16), **kw)


@pytest.mark.slow
def test_greedy_matches_static_sampler_with_stops_and_max_len(setup):
    cfg, graphdef, params, sampler, prompts = setup
    free = sampler.generate(params, prompts, 12, Greedy())
    # Stop ids taken from the free-running output so rows stop at different lengths (some never).
    stops = (int(free.tokens_BC[1, 1]), int(free.tokens_BC[0, 4]))
    ref = sampler.generate(params, prompts, 12, Greedy(), stop_ids=stops, n=2)
    assert ref.stopped_B.any() and not ref.stopped_B.all()
    assert len(set(ref.lengths_B.tolist())) > 2
    eng = _engine(cfg, graphdef, slots=3)
    finished = {}
    out = eng.generate(params, prompts, 12, Greedy(), stop_ids=stops, n=2,
                       on_finish=lambda row, toks, stopped: finished.__setitem__(row, (toks, stopped)))
    np.testing.assert_array_equal(out.tokens_BC, ref.tokens_BC)
    np.testing.assert_array_equal(out.lengths_B, ref.lengths_B)
    np.testing.assert_array_equal(out.stopped_B, ref.stopped_B)
    np.testing.assert_array_equal(out.prompt_index_B, ref.prompt_index_B)
    np.testing.assert_allclose(out.logp_BC, ref.logp_BC, atol=1e-5)
    # Every row was handed over exactly once, as it finished, with its tokens.
    assert sorted(finished) == list(range(len(prompts) * 2))
    for row, (toks, stopped) in finished.items():
        np.testing.assert_array_equal(toks, ref.tokens_BC[row, :ref.lengths_B[row]])
        assert stopped == ref.stopped_B[row]
    # Short rows freed their slots for queued ones: fewer decode row-steps than a static batch.
    assert eng.stats.useful_row_steps == int((ref.lengths_B - 1).sum())
    assert eng.stats.row_steps >= eng.stats.useful_row_steps


@pytest.mark.slow
def test_sampled_rows_do_not_depend_on_slot_count(setup):
    cfg, graphdef, params, _, prompts = setup
    outs = [_engine(cfg, graphdef, slots=s).generate(params, prompts, 10, Temperature(1.0),
                                                     stop_ids=(7,), n=3, seed=5)
            for s in (1, 4, 16)]
    for o in outs[1:]:
        np.testing.assert_array_equal(o.tokens_BC, outs[0].tokens_BC)
        np.testing.assert_allclose(o.logp_BC, outs[0].logp_BC, atol=1e-5)
    again = _engine(cfg, graphdef, slots=4).generate(params, prompts, 10, Temperature(1.0),
                                                     stop_ids=(7,), n=3, seed=5)
    np.testing.assert_array_equal(again.tokens_BC, outs[1].tokens_BC)
    other = _engine(cfg, graphdef, slots=4).generate(params, prompts, 10, Temperature(1.0),
                                                     stop_ids=(7,), n=3, seed=6)
    assert not np.array_equal(other.tokens_BC, outs[1].tokens_BC)
    # The G samples of a prompt differ (each row has its own key).
    assert not np.array_equal(outs[0].tokens_BC[0], outs[0].tokens_BC[1])


def test_greedy_small_matches_static_sampler_and_reports_each_row(setup):
    """The fast default-run check: one compile of each jit (block covers the whole cache)."""
    cfg, graphdef, params, sampler, prompts = setup
    ref = sampler.generate(params, prompts[:3], 6, Greedy(), n=2)
    eng = Engine(cfg, graphdef, slots=2, steps_per_call=3, block=32, buckets=(16,), shrink=False)
    seen = []
    out = eng.generate(params, prompts[:3], 6, Greedy(), n=2, on_finish=lambda row, t, s: seen.append(row))
    np.testing.assert_array_equal(out.tokens_BC, ref.tokens_BC)
    np.testing.assert_allclose(out.logp_BC, ref.logp_BC, atol=1e-5)
    assert sorted(seen) == list(range(6))
    assert eng.stats.useful_row_steps == 6 * 5 and eng.stats.row_steps == 6 * 5  # no idle slot


def test_per_row_caps_equal_the_sampler_and_the_truncated_uniform_run(setup):
    """Each prompt's rows stop at its own cap (a stop id before it still stops them), with the
    static sampler's tokens and log-probs under the same caps; one compile of each jit."""
    cfg, graphdef, params, sampler, prompts = setup
    caps = [3, 9, 1, 12, 6]
    free = sampler.generate(params, prompts, 12, Greedy(), n=2)
    stops = (int(free.tokens_BC[6, 4]),)  # prompt 3 (cap 12) stops at or before its token 5
    ref = sampler.generate(params, prompts, caps, Greedy(), stop_ids=stops, n=2)
    eng = Engine(cfg, graphdef, slots=3, steps_per_call=4, block=32, buckets=(16,), shrink=False)
    out = eng.generate(params, prompts, caps, Greedy(), stop_ids=stops, n=2)
    np.testing.assert_array_equal(out.tokens_BC, ref.tokens_BC)
    np.testing.assert_array_equal(out.lengths_B, ref.lengths_B)
    np.testing.assert_array_equal(out.stopped_B, ref.stopped_B)
    np.testing.assert_allclose(out.logp_BC, ref.logp_BC, atol=1e-5)
    cap_B = np.repeat(caps, 2)
    assert (out.lengths_B <= cap_B).all() and out.stopped_B[6] and not out.stopped_B.all()
    assert (out.lengths_B[~out.stopped_B] == cap_B[~out.stopped_B]).all()
    for b in range(len(cap_B)):  # the uniform-cap run, truncated at each row's own end
        n_b = out.lengths_B[b]
        np.testing.assert_array_equal(out.tokens_BC[b, :n_b], free.tokens_BC[b, :n_b])
        assert (out.tokens_BC[b, n_b:] == eng.pad_id).all()
    assert eng.stats.useful_row_steps == int((out.lengths_B - 1).sum())


def test_bad_input_is_rejected(setup):
    cfg, graphdef, params, _, _ = setup
    eng = _engine(cfg, graphdef, slots=2)
    with pytest.raises(ValueError, match="outside the vocab"):
        eng.generate(params, [[1, 600]], 4)
    with pytest.raises(ValueError, match="empty"):
        eng.generate(params, [[1], []], 4)
    with pytest.raises(ValueError, match="1 caps for 2 prompts"):
        eng.generate(params, [[1], [2]], [4])
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        eng.generate(params, [[1]], 0)
    with pytest.raises(ValueError, match="slots"):
        Engine(cfg, graphdef, slots=0)


def test_freed_slots_refill_without_idling_and_tokens_stay_the_samplers(setup):
    """With a long `steps_per_call`, a decode call still ends as soon as a slot frees while rows
    wait (`admit_min`), so no slot idles here (rows of 3, 9, 1, 12, 6 tokens in 2 slots: a call
    running its k steps would idle row 0's slot for 6 steps); short admissions are prefilled at
    `prefill_granule` lengths. Greedy tokens equal the static sampler's either way."""
    cfg, graphdef, params, sampler, prompts = setup
    caps = [3, 9, 1, 12, 6]
    ref = sampler.generate(params, prompts, caps, Greedy())
    for admit_min, granule in ((1, 4), (2, None)):
        eng = Engine(cfg, graphdef, slots=2, steps_per_call=64, block=32, buckets=(16,), shrink=False,
                     admit_min=admit_min, prefill_granule=granule)
        out = eng.generate(params, prompts, caps, Greedy())
        np.testing.assert_array_equal(out.tokens_BC, ref.tokens_BC)
        np.testing.assert_allclose(out.logp_BC, ref.logp_BC, atol=1e-5)
        assert eng.stats.useful_row_steps == sum(caps) - len(caps)
        if admit_min == 1:
            assert eng.stats.row_steps == eng.stats.useful_row_steps
            # Prompts of 3 and 7 tokens (one admission of 2 rows), then 12, 5, 9: 2 x 8, 12, 8
            # and 12 positions instead of bucket 16 each.
            assert eng.stats.prefill_tokens == 2 * 8 + 12 + 8 + 12
    with pytest.raises(ValueError, match="admit_min"):
        Engine(cfg, graphdef, slots=2, admit_min=0)
    with pytest.raises(ValueError, match="prefill_granule"):
        Engine(cfg, graphdef, slots=2, prefill_granule=0)


def test_shared_prompts_prefill_once_and_equal_per_row_prefills(setup):
    """With n samples per prompt each prompt is prefilled once (into a store of prefill_batch
    prompts, refilled as the queue moves on) and copied into its rows' slots: the same tokens
    and log-probs as prefilling every row, greedy and sampled, with a fraction of the prefill."""
    cfg, graphdef, params, sampler, prompts = setup
    n = 3
    kw = dict(slots=4, steps_per_call=4, block=32, buckets=(16,), prefill_batch=2)
    ref = sampler.generate(params, prompts, 6, Greedy(), n=n)
    for strategy, seed in ((Greedy(), 0), (Temperature(1.0), 4)):
        runs = {}
        for share in (True, False):
            eng = Engine(cfg, graphdef, share_prompts=share, **kw)
            runs[share] = (eng.generate(params, prompts, 6, strategy, stop_ids=(7,), n=n, seed=seed), eng.stats)
        (shared, st), (per_row, st_rows) = runs[True], runs[False]
        np.testing.assert_array_equal(shared.tokens_BC, per_row.tokens_BC)
        np.testing.assert_array_equal(shared.lengths_B, per_row.lengths_B)
        np.testing.assert_allclose(shared.logp_BC, per_row.logp_BC, atol=1e-5)
        # 5 prompts through a store of 2: three fills of 2, 2 and 1 prompts at 16 positions.
        assert st.prefill_calls == 3 and st.prefill_tokens == (2 + 2 + 1) * 16
        assert st_rows.prefill_tokens >= len(prompts) * n * 16 and st.admit_calls >= len(prompts) * n / 2
        assert st.useful_row_steps == st_rows.useful_row_steps
    greedy = Engine(cfg, graphdef, **kw).generate(params, prompts, 6, Greedy(), n=n)
    np.testing.assert_array_equal(greedy.tokens_BC, ref.tokens_BC)
    np.testing.assert_allclose(greedy.logp_BC, ref.logp_BC, atol=1e-5)


def test_equal_prompts_given_twice_are_prefilled_once(setup):
    """Equal prompts passed as separate prompts (n = 1) share one prefill like the n samples of
    one prompt; a prompt that comes back after the store moved on is prefilled again."""
    cfg, graphdef, params, sampler, prompts = setup
    a, b, c = prompts[:3]
    batch = [a, a, b, a, c, c]
    kw = dict(slots=2, steps_per_call=4, block=32, buckets=(16,), prefill_batch=2)
    ref = sampler.generate(params, batch, 5, Greedy())
    eng = Engine(cfg, graphdef, **kw)
    out = eng.generate(params, batch, 5, Temperature(1.0), seed=2)
    per_row = Engine(cfg, graphdef, share_prompts=False, **kw).generate(params, batch, 5, Temperature(1.0), seed=2)
    np.testing.assert_array_equal(out.tokens_BC, per_row.tokens_BC)
    np.testing.assert_allclose(out.logp_BC, per_row.logp_BC, atol=1e-5)
    # Fills: {a, b} serves rows 0-3, then {c} rows 4-5.
    assert eng.stats.prefill_calls == 2 and eng.stats.prefill_tokens == (2 + 1) * 16
    greedy = Engine(cfg, graphdef, **kw).generate(params, batch, 5, Greedy())
    np.testing.assert_array_equal(greedy.tokens_BC, ref.tokens_BC)
