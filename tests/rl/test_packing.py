"""Sequence packing (rl/infra/packing.py): the packer's round trip, attention that never crosses a
segment, and packed GRPO / SFT updates whose loss and gradients equal the padded ones (fp32,
<= 1e-5), under micro-batch accumulation, for every loss aggregation mode."""

import dataclasses

import jax
import numpy as np
import optax
import pytest

from execverify_jax.model import sharding as shd
from execverify_jax.model.config import ModelConfig
from execverify_jax.rl.grpo.update import logprob_pass, run_updates
from execverify_jax.rl.infra.packing import (balanced_placement, choose_pack_len, completion_capacity,
                                             first_fit_decreasing, pack, pack_grpo, pack_sft, prediction_positions,
                                             unpack, unpack_completion)
from execverify_jax.rl.infra.train_state import create_train_state, state_shardings
from execverify_jax.rl.infra.train_steps import make_grpo_update, make_logprob_fn, make_sft_update, put_batch
from execverify_jax.rl.objective.config import AGG_MODES, GRPOConfig
from execverify_jax.rl.run_config import TrainConfig

from testing import tiny_state  # noqa: E402

CFG = ModelConfig.tiny(vocab_size=64)


def test_pack_round_trip_and_no_segment_crosses_a_buffer():
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 9, 23)
    rows = {"tokens": [rng.integers(1, 64, n).astype(np.int32) for n in lengths],
            "w": [rng.normal(size=n).astype(np.float32) for n in lengths]}
    out, layout = pack(rows, 10, multiple=4)
    assert out["tokens_BT"].shape[0] % 4 == 0 and out["tokens_BT"].shape[1] == 10
    for name in ("tokens", "w"):
        for a, b in zip(unpack(out[f"{name}_BT"], layout), rows[name]):
            np.testing.assert_array_equal(a, b)
    seg, pos = out["segment_ids_BT"], out["positions_BT"]
    assert (seg > 0).sum() == lengths.sum()
    for b, s, n in zip(*layout):
        if n:
            # One segment id, unique in the buffer, positions restarting at 0, inside the buffer.
            assert s + n <= 10 and len(set(seg[b, s:s + n])) == 1
            assert (seg[b] == seg[b, s]).sum() == n
            np.testing.assert_array_equal(pos[b, s:s + n], np.arange(n))
    with pytest.raises(ValueError, match="pack_len=4"):
        first_fit_decreasing(np.array([3, 5]), 4)


def test_attention_never_crosses_segments():
    """Perturbing one segment's tokens leaves every other segment's logits unchanged, and a
    packed segment's logits equal the same sequence's alone (xla and chunked attention)."""
    rng = np.random.default_rng(1)
    lengths = [5, 7, 4]
    seqs = [rng.integers(1, 64, n).astype(np.int32) for n in lengths]
    out, layout = pack({"tokens": seqs}, 16)
    for impl in ("xla", "chunked"):
        from testing import tiny_model
        model = tiny_model(0, vocab_size=64, attention=impl, attention_chunk=4)
        fwd = jax.jit(lambda t, p, s: model(t, p, s))
        base = np.asarray(fwd(out["tokens_BT"], out["positions_BT"], out["segment_ids_BT"]))
        tok = out["tokens_BT"].copy()
        b, s, n = (x[1] for x in layout)
        tok[b, s:s + n] = (tok[b, s:s + n] + 7) % 64
        pert = np.asarray(fwd(tok, out["positions_BT"], out["segment_ids_BT"]))
        others = out["segment_ids_BT"] != out["segment_ids_BT"][b, s]
        np.testing.assert_array_equal(pert[others], base[others])
        assert np.abs(pert[b, s:s + n] - base[b, s:s + n]).max() > 1e-3
        for r, seq in enumerate(seqs):
            alone = np.asarray(model(seq[None]))[0]
            b, s, n = (x[r] for x in layout)
            np.testing.assert_allclose(base[b, s:s + n], alone, atol=1e-5)


def _grpo_host(agg_stepwise: bool):
    rng = np.random.default_rng(2)
    B, P, C = 8, 6, 5
    tokens = rng.integers(1, 64, (B, P + C)).astype(np.int32)
    plen = rng.integers(1, P + 1, B)
    clen = rng.integers(1, C + 1, B)
    clen[3] = C
    attn = (np.arange(P)[None] >= (P - plen)[:, None])
    mask = (np.arange(C)[None] < clen[:, None]).astype(np.float32)
    mask[5] = 0  # an overlong-filtered row: no loss token, not counted as a sequence
    host = dict(tokens_BT=tokens, attn_BT=np.concatenate([attn, mask > 0], 1), mask_BC=mask,
                adv_B=rng.normal(size=B).astype(np.float32),
                old_logp_BC=(rng.normal(size=(B, C)) * 0.1 - 3.0).astype(np.float32),
                ref_logp_BC=(rng.normal(size=(B, C)) * 0.1 - 3.0).astype(np.float32))
    if agg_stepwise:
        host["adv_BC"] = rng.normal(size=(B, C)).astype(np.float32)
    return host


def test_completion_slab_holds_exactly_the_completion_tokens():
    """pack_grpo's slab: column c of buffer b is the c-th completion token of the buffer, its
    fields are that token's, unused columns are 0, and segment ids are renumbered per buffer."""
    host = _grpo_host(True)
    pk, layout = pack_grpo(host, 16, multiple=2, granule=4)
    B, T = host["tokens_BT"].shape
    C = host["mask_BC"].shape[1]
    n_comp = (host["attn_BT"][:, T - C:]).sum()
    pos, seg = pk["target_pos_BC"], pk["segment_ids_BC"]
    assert pos.shape[1] % 4 == 0 and pos.shape[1] - 4 < (pos > 0).sum(1).max() <= pos.shape[1]
    assert (pos > 0).sum() == n_comp
    for name in ("mask", "adv", "old_logp", "ref_logp"):  # every field round-trips through the slab
        got = unpack_completion(pk[f"{name}_BC"], pos, layout, host["attn_BT"], C)
        want = host["adv_BC"] if name == "adv" else host[f"{name}_BC"]
        real = host["attn_BT"][:, T - C:]
        np.testing.assert_array_equal(got[real], want[real])
        assert (pk[f"{name}_BC"][pos == 0] == 0).all()
    for b in range(pos.shape[0]):
        used = pos[b] > 0
        # In buffer order, from the buffer's own segments, renumbered 1, 2, ... without gaps.
        assert (np.diff(pos[b][used]) > 0).all()
        np.testing.assert_array_equal(np.unique(seg[b][used]), np.arange(1, len(set(seg[b][used])) + 1))
        same = pk["segment_ids_BT"][b][pos[b][used]]
        np.testing.assert_array_equal(np.diff(same) != 0, np.diff(seg[b][used]) != 0)
        assert (seg[b][~used] == 0).all()
    assert completion_capacity(0, 16) == 1 and completion_capacity(5, 8192) == 512
    assert completion_capacity(8000, 8192) == 8192 and completion_capacity(7, 16, granule=4) == 8


def test_balanced_placement_keeps_the_buffers_and_shrinks_the_slab():
    """Completion tokens spread over the plain packing's buffers: same buffer count, every row
    placed once within L, each buffer's completion tokens <= the returned capacity, which is
    below plain first-fit-decreasing's when one buffer would otherwise hoard completions."""
    rng = np.random.default_rng(4)
    prompt = rng.integers(5, 60, 200)
    comp = np.where(rng.random(200) < 0.5, rng.integers(1, 10, 200), rng.integers(60, 200, 200))
    lengths = prompt + comp
    L, multiple, g = 256, 4, 16
    b_plain, _, n_plain = first_fit_decreasing(lengths, L)
    cap_plain = completion_capacity(np.bincount(b_plain, weights=comp).max(), L, g)
    b, s, n, cap = balanced_placement(lengths, comp, L, multiple, g)
    assert n == max(-(-n_plain // multiple) * multiple, multiple) and b.max() < n
    assert cap < cap_plain and cap % g == 0
    assert np.bincount(b, weights=comp, minlength=n).max() <= cap
    for k in range(n):  # rows of a buffer tile it from 0 without overlap
        mine = np.argsort(s[b == k])
        ends = (s[b == k] + lengths[b == k])[mine]
        np.testing.assert_array_equal(s[b == k][mine], np.concatenate([[0], ends[:-1]]))
        assert ends[-1] <= L if len(ends) else True


def test_auto_pack_len_computes_the_fewest_tokens_of_its_candidates():
    """choose_pack_len: the granule multiple in [longest row, L] with the fewest buffers x length
    (buffer count rounded up to the micro-batch), shorter on ties; pack_grpo(auto=True) packs
    into it. Few tokens per mini-batch: 2 x 1,024 for ~1,500 tokens becomes 2 x <= 896."""
    rng = np.random.default_rng(5)
    for rows, hi, L, multiple in ((32, 160, 1024, 2), (200, 300, 1024, 4), (5, 16, 16, 2)):
        lengths = rng.integers(4, hi, rows)
        g = max(L // 16, 1)
        cost = {c: max(-(-first_fit_decreasing(lengths, c)[2] // multiple) * multiple, multiple) * c
                for c in range(g, L + 1, g) if c >= lengths.max()}
        best = min(cost.values())
        got = choose_pack_len(lengths, L, multiple)
        assert cost[got] == best and got == min(c for c, v in cost.items() if v == best)
        if rows == 32:
            assert cost[got] < cost[L] and got < L
    # Nothing shorter fits: the longest row decides.
    assert choose_pack_len(np.array([1000, 10]), 1024, 2) == 1024
    with pytest.raises(ValueError, match="pack_len=16"):
        choose_pack_len(np.array([17]), 16)
    host = _grpo_host(False)
    fixed, _ = pack_grpo(host, 64, multiple=2)
    auto, layout = pack_grpo(host, 64, multiple=2, auto=True)
    Lc = choose_pack_len(np.asarray(host["attn_BT"]).sum(1), 64, 2)
    assert auto["tokens_BT"].shape[1] == Lc < 64 and auto["tokens_BT"].size < fixed["tokens_BT"].size
    assert (auto["segment_ids_BT"] > 0).sum() == np.asarray(host["attn_BT"]).sum()


def _sgd_step(make, cfg_model=CFG):
    """(loss, grads) of one update: with SGD at lr 1 the parameter change is minus the gradient."""
    mesh = shd.single_device_mesh()
    tx = optax.sgd(1.0)
    gd, st = create_train_state(cfg_model, tx, seed=0, mesh=mesh)
    before = jax.device_get(st.params)
    upd = make(gd, tx, mesh, state_shardings(cfg_model, tx, mesh))
    return upd, before, st


def _grads(upd, before, st, batch, mesh, grpo=None):
    if grpo is None:
        new, met = upd(st, put_batch(batch, mesh))
    else:  # the GRPO trainer's path: run_updates packs the mini-batch when grpo.packing is on
        new, (met,) = run_updates(upd, st, batch, mesh, TrainConfig(grpo=grpo))
    grads = jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b), before, jax.device_get(new.params))
    return float(met["loss"]), grads


# ~35 s per mode on the shared CPU: the segment-aware mode runs by default, the others are slow.
@pytest.mark.parametrize("mode", [m if m == "seq-mean-token-mean" else pytest.param(m, marks=pytest.mark.slow)
                                  for m in AGG_MODES])
def test_packed_grpo_loss_and_grads_equal_padded(mode):
    mesh = shd.single_device_mesh()
    stepwise = mode == "seq-mean-token-mean"  # per-token advantages ride along on one mode
    host = _grpo_host(stepwise)
    g = GRPOConfig(group_size=2, prompts_per_step=4, num_minibatches=1, micro_batch_size=2,
                   loss_agg_mode=mode, max_response_len=5, kl_coef=0.1)
    padded = lambda gd, tx, m, sh: make_grpo_update(gd, tx, g, m, sh)  # noqa: E731
    packed = lambda gd, tx, m, sh: make_grpo_update(gd, tx, g, m, sh, packed=True)  # noqa: E731
    loss_pad, g_pad = _grads(*_sgd_step(padded), host, mesh, grpo=g)
    pk, _ = pack_grpo(host, 16, multiple=2)
    assert pk["tokens_BT"].shape[0] > 2  # several micro-batches: accumulation is exercised
    loss_pk, g_pk = _grads(*_sgd_step(packed), host, mesh, grpo=dataclasses.replace(g, packing=True, pack_len=16))
    assert abs(loss_pk - loss_pad) <= 1e-5
    assert abs(loss_pad) > 1e-4
    for a, b in zip(jax.tree.leaves(g_pad), jax.tree.leaves(g_pk)):
        np.testing.assert_allclose(b, a, atol=1e-5, rtol=0)


def test_prediction_positions_pick_the_learned_positions():
    lm = np.array([[0, 0, 1, 1, 0], [0, 1, 1, 1, 1], [0, 0, 0, 0, 1]], bool)
    pos = prediction_positions(lm, C=4)
    # position t predicts t + 1; unused columns point at T - 1 (never a target)
    np.testing.assert_array_equal(pos, [[1, 2, 4, 4], [0, 1, 2, 3], [3, 4, 4, 4]])
    assert prediction_positions(lm, granule=2).shape == (3, 4)  # 4 at most, bucketed by 2
    with pytest.raises(ValueError, match="C=3"):
        prediction_positions(lm, C=3)


@pytest.mark.parametrize("mode", ["token-mean", pytest.param("seq-mean-token-mean", marks=pytest.mark.slow)])
def test_packed_sft_and_learned_position_logits_equal_padded(mode):
    """Packed buffers, and pred_pos_BC (logits only where a target is learned; padded and
    packed), give the loss and gradients of the padded all-positions step, under micro-batch
    accumulation."""
    mesh = shd.single_device_mesh()
    rng = np.random.default_rng(5)
    B, T = 8, 16
    ids = rng.integers(1, 64, (B, T)).astype(np.int32)
    n = rng.integers(6, T + 1, B)
    attn = np.arange(T)[None] < n[:, None]
    loss_mask = attn & (np.arange(T)[None] >= rng.integers(2, 6, B)[:, None])  # ragged prompts
    batch = dict(ids_BT=ids, attn_BT=attn, loss_mask_BT=loss_mask)
    padded = lambda gd, tx, m, sh: make_sft_update(gd, tx, m, sh, micro_batch_size=2, mode=mode)  # noqa: E731
    packed = lambda gd, tx, m, sh: make_sft_update(gd, tx, m, sh, micro_batch_size=2, mode=mode,  # noqa: E731
                                                   packed=True)
    loss_all, g_all = _grads(*_sgd_step(padded), batch, mesh)
    sel = dict(batch, pred_pos_BC=prediction_positions(loss_mask))
    assert sel["pred_pos_BC"].shape[1] < T
    loss_sel, g_sel = _grads(*_sgd_step(padded), sel, mesh)
    pk, _ = pack_sft(batch, 24, multiple=2)
    assert pk["ids_BT"].shape[0] > 2  # several micro-batches: accumulation is exercised
    loss_pk, g_pk = _grads(*_sgd_step(packed), pk, mesh)
    pk["pred_pos_BC"] = prediction_positions(pk["loss_mask_BT"])
    loss_pk_sel, g_pk_sel = _grads(*_sgd_step(packed), pk, mesh)
    for loss, g in ((loss_sel, g_sel), (loss_pk, g_pk), (loss_pk_sel, g_pk_sel)):
        assert abs(loss - loss_all) <= 1e-5
        for a, b in zip(jax.tree.leaves(g_all), jax.tree.leaves(g)):
            np.testing.assert_allclose(b, a, atol=1e-5, rtol=0)


def test_packing_config_is_validated():
    assert GRPOConfig().packing is False  # the padded path stays the default
    with pytest.raises(ValueError, match="packing"):
        GRPOConfig(packing=True, entropy_coef=0.01)
    with pytest.raises(ValueError, match="pack_len"):
        GRPOConfig(packing=True, pack_len=0)


def test_packed_logprob_pass_equals_padded():
    """make_logprob_fn(packed=True) + unpack_completion gives the padded pass's logp_BC."""
    mesh = shd.single_device_mesh()
    host = _grpo_host(False)
    _, gd, params = tiny_state(mesh)
    pad = make_logprob_fn(gd, mesh, micro_batch_size=2, temperature=0.7)
    pkd = make_logprob_fn(gd, mesh, micro_batch_size=2, temperature=0.7, packed=True)
    want = np.asarray(pad(params, put_batch(host, mesh)))
    pk, layout = pack_grpo({k: host[k] for k in ("tokens_BT", "attn_BT", "mask_BC")}, 16, multiple=2)
    got = unpack_completion(np.asarray(pkd(params, put_batch(pk, mesh))), pk["target_pos_BC"], layout,
                            host["attn_BT"], 5)
    m = host["mask_BC"] > 0
    np.testing.assert_allclose(got[m], want[m], atol=1e-5, rtol=0)
    # The trainer's path (update.logprob_pass) packs and unpacks the same way.
    g = GRPOConfig(group_size=2, prompts_per_step=4, num_minibatches=1, micro_batch_size=2,
                   packing=True, pack_len=16)
    via_pass, none = logprob_pass(pkd, (params, None), host, mesh, TrainConfig(grpo=g))
    assert none is None
    np.testing.assert_allclose(via_pass[m], want[m], atol=1e-5, rtol=0)


def test_toy_grpo_loop_packed_matches_padded(tmp_path):
    """`grpo.packing: true` through the real loop (toy task): the first step's rollout is the
    same, and its loss and update statistics equal the padded run's."""
    from pathlib import Path

    from execverify_jax.config_loader import load
    from execverify_jax.rl.grpo.trainer import train
    from execverify_jax.rl.infra.metrics import read_metrics

    repo = Path(__file__).resolve().parents[2]
    rows = {}
    # One buffer per micro-batch, so buffer counts are not rounded up to a multiple of 16 rows.
    for name, extra in (("padded", []), ("packed", ["grpo.packing=true", "grpo.pack_len=124"])):
        cfg = load(TrainConfig, repo / "configs" / "toy_cpu.yaml",
                   ["max_steps=1", "tensorboard=false", "save_every=100", "grpo.micro_batch_size=1",
                    "mesh={data: 1, fsdp: 1, tensor: 1}"] + extra)
        train(cfg, tmp_path / name)
        rows[name] = read_metrics(tmp_path / name)[-1]
    assert rows["packed"]["reward/mean"] == rows["padded"]["reward/mean"]
    assert 1.0 <= rows["packed"]["train/padding_ratio"] < rows["padded"]["train/padding_ratio"]
    for key in ("train/loss", "train/pg_loss", "train/grad_norm", "train/ratio_mean", "policy/entropy_mc"):
        assert abs(rows["packed"][key] - rows["padded"][key]) <= 1e-5, key
