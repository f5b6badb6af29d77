"""The loop's recomputed old log-probs equal the sampler's: ragged prompts, temperature 0.7.

The GRPO update reads completion log-probs from the last C positions of the update batch built
by `update_batch` (prompt re-padded to a data bucket, completion cut to a completion bucket). A
one-position shift in that slice still lets the toy GRPO test learn, so this test pins it: the
log-prob pass must reproduce, token for token, what the sampler computed while drawing them.
"""

from __future__ import annotations

import jax
import numpy as np

from execverify_jax.config_loader import load
from execverify_jax.model import sharding as shd
from execverify_jax.model.config import ModelConfig
from execverify_jax.model.sampler import Sampler
from execverify_jax.model.strategies import Temperature
from execverify_jax.rl.grpo.rollout import Rollout
from execverify_jax.rl.grpo.update import update_batch
from execverify_jax.rl.infra.optim import build_optimizer
from execverify_jax.rl.infra.train_state import create_train_state
from execverify_jax.rl.infra.train_steps import make_logprob_fn, put_batch
from execverify_jax.rl.run_config import TrainConfig
from tests.rl.test_train_toy import REPO


def test_recomputed_old_logprobs_equal_the_samplers():
    T, G, new = 0.7, 2, 10
    cfg = load(TrainConfig, REPO / "configs" / "toy_cpu.yaml",
               ["mesh={data: 1, fsdp: 1, tensor: 1}", f"rollout.temperature={T}", f"grpo.group_size={G}",
                "grpo.prompts_per_step=4", "grpo.micro_batch_size=4", f"rollout.max_new_tokens={new}",
                "rollout.completion_buckets=[4, 16]", "data.buckets=[8, 16]"])
    model_cfg = ModelConfig.tiny(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2,
                                 num_heads=2, num_kv_heads=1, head_dim=16, max_position_embeddings=64)
    mesh = shd.make_mesh(cfg.mesh)
    graphdef, state = create_train_state(model_cfg, build_optimizer(cfg.optim, 1), seed=3, mesh=mesh)
    rng = np.random.default_rng(0)
    prompts = [rng.integers(2, 64, n).tolist() for n in (3, 11, 6, 14)]  # ragged, two buckets
    # Sampler buckets differ from the update batch's, so the two paddings differ too.
    sampler = Sampler(model_cfg, graphdef, mesh=mesh, buckets=(16,), pad_id=0)
    out = sampler.generate(state.params, prompts, new, Temperature(T), stop_ids=(1,), n=G, seed=7)
    assert out.lengths_B.min() < out.lengths_B.max() or out.lengths_B.max() == new
    roll = Rollout(prompts=prompts, records=[{}] * len(prompts), tokens_BC=out.tokens_BC, len_B=out.lengths_B,
                   stopped_B=out.stopped_B, futures=[], t_gen=0.0)
    host = update_batch(roll, loader_P=8, cfg=cfg, pad_id=0)
    assert host["tokens_BT"].shape[1] == 16 + new  # prompts re-padded to the data bucket 16
    logprob_fn = make_logprob_fn(graphdef, mesh, micro_batch_size=4, temperature=T)
    old_logp_BC = np.asarray(jax.device_get(logprob_fn(state.params, put_batch(host, mesh))))
    mask_BC = host["mask_BC"] > 0
    want_BC = np.zeros_like(old_logp_BC)
    want_BC[:, :new] = out.logp_BC
    assert mask_BC.sum() == out.lengths_B.sum()
    np.testing.assert_allclose(np.where(mask_BC, old_logp_BC, 0.0), np.where(mask_BC, want_BC, 0.0), atol=1e-5)
    # The check can fail: a one-position shift of the slice is far off.
    shifted_BC = np.roll(old_logp_BC, 1, axis=1)
    assert np.abs(np.where(mask_BC, shifted_BC - want_BC, 0.0)).max() > 1e-2
