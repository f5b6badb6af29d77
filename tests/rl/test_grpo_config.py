"""GRPOConfig / OptimConfig: paper defaults, presets, and validation errors naming field and value."""

import dataclasses

import pytest

from execverify_jax.config_loader import ConfigError, from_dict, load
from execverify_jax.rl.objective.config import GRPOConfig, OptimConfig


def test_defaults_are_the_papers_verl_run():
    c = GRPOConfig()
    assert (c.group_size, c.prompts_per_step, c.num_minibatches, c.ppo_epochs) == (8, 128, 2, 1)
    assert (c.clip_eps_low, c.clip_eps_high, c.dual_clip_c) == (0.2, 0.2, 3.0)
    assert c.norm_adv_by_std and c.adv_eps == 1e-6
    assert c.kl_coef == 0 and c.entropy_coef == 0 and c.kl_in_reward_coef == 0 and not c.uses_reference
    assert c.loss_agg_mode == "seq-mean-token-mean"
    assert c.credit == "outcome"  # the paper: one scalar per sequence
    assert c.format_shaping == "tiebreak"  # inert without a format reward (the paper has none)
    assert c.sequences_per_step == 1024 and c.sequences_per_minibatch == 512
    o = OptimConfig()
    assert (o.lr, o.schedule, o.weight_decay, o.grad_clip, o.b1, o.b2) == (1e-6, "constant", 0.01, 1.0, 0.9, 0.999)
    s = OptimConfig.sft()
    assert (s.lr, s.schedule, s.warmup_ratio, s.weight_decay) == (1e-5, "cosine", 0.1, 0.0)


def test_presets():
    d = GRPOConfig.dr_grpo()
    assert not d.norm_adv_by_std and d.loss_agg_mode == "seq-mean-token-sum-norm"
    a = GRPOConfig.dapo(group_size=16)
    assert a.clip_eps_high == 0.28 and a.loss_agg_mode == "token-mean" and a.dynamic_sampling
    assert a.overlong_filter and a.group_size == 16


@pytest.mark.parametrize("field,value", [
    ("group_size", 0), ("group_size", 1), ("group_size", 2.5), ("prompts_per_step", -1),
    ("num_minibatches", 3), ("ppo_epochs", 0), ("micro_batch_size", 0), ("max_response_len", 0),
    ("adv_eps", 0.0), ("adv_eps", float("nan")), ("clip_eps_low", 0.0), ("clip_eps_low", 1.0),
    ("clip_eps_high", -0.1), ("dual_clip_c", 1.0), ("dual_clip_c", True), ("max_log_ratio", 0.0),
    ("loss_agg_mode", "token_mean"), ("kl_coef", -0.01), ("kl_estimator", "k4"),
    ("kl_in_reward_estimator", "low_var_kl"), ("kl_clamp", 0.0), ("entropy_coef", -1.0),
    ("dynamic_sampling", "yes"), ("dynamic_signal", "format"), ("norm_adv_by_std", 1), ("credit", "token"), ("format_shaping", "none"),
])
def test_grpo_validation_names_field_and_value(field, value):
    with pytest.raises(ValueError) as err:
        GRPOConfig(**{field: value})
    assert f"{field}={value!r}" in str(err.value)


def test_group_size_one_is_fine_without_std_normalisation():
    assert GRPOConfig(group_size=1, norm_adv_by_std=False).group_size == 1


@pytest.mark.parametrize("field,value", [
    ("lr", 0.0), ("lr", "1e-6"), ("schedule", "cosine_with_restarts"), ("warmup_ratio", 1.0),
    ("warmup_steps", -1), ("min_lr_ratio", 1.5), ("b1", 1.0), ("b2", -0.1), ("eps", 0.0),
    ("weight_decay", -0.1), ("grad_clip", 0.0),
])
def test_optim_validation_names_field_and_value(field, value):
    with pytest.raises(ValueError) as err:
        OptimConfig(**{field: value})
    assert f"{field}={value!r}" in str(err.value)


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        GRPOConfig().kl_coef = 1.0


def test_yaml_and_overrides_through_project_loader(tmp_path):
    p = tmp_path / "grpo.yaml"
    p.write_text("group_size: 16\nloss_agg_mode: token-mean\ndual_clip_c: null\n")
    c = load(GRPOConfig, p, ["clip_eps_high=0.28", "kl_coef=0.001"])
    assert (c.group_size, c.loss_agg_mode, c.dual_clip_c, c.clip_eps_high, c.kl_coef) == (
        16, "token-mean", None, 0.28, 0.001)
    with pytest.raises(ConfigError, match="loss_agg_mode"):
        from_dict(GRPOConfig, {"loss_agg_mode": "mean"})
    with pytest.raises(ConfigError, match="clip_eps"):
        from_dict(GRPOConfig, {"clip_eps": 0.2})  # unknown key
    with pytest.raises(ConfigError, match="num_minibatches=3"):
        from_dict(GRPOConfig, {"num_minibatches": 3})


def test_warmup_steps():
    assert OptimConfig.sft().warmup_for(470) == 47
    assert OptimConfig.sft().warmup_for(471) == 48  # HF Trainer rounds up
    assert OptimConfig(warmup_steps=5, warmup_ratio=0.5).warmup_for(100) == 5
    assert OptimConfig().warmup_for(1000) == 0
