"""DAPO dynamic sampling in the loop: uninformative groups (all rewards equal) are dropped and
further prompt batches are drawn until the step's batch is full of informative groups."""

from pathlib import Path

import numpy as np

from execverify_jax.config_loader import load
from execverify_jax.rl.grpo.trainer import train
from execverify_jax.rl.infra.metrics import read_metrics
from execverify_jax.rl.grpo.tasks import ToyTask, _done
from execverify_jax.rl.run_config import TrainConfig

REPO = Path(__file__).resolve().parents[2]


class HalfConstantTask(ToyTask):
    """The toy task, except that prompts with an even id always score 0 (so their groups carry
    no signal); odd ones score the share of target tokens as usual."""

    def submit(self, records, completions):
        out = []
        for rec, fut in zip(records, super().submit(records, completions)):
            if int(rec["id"].split("-")[1]) % 2 == 0:
                res = fut.result()
                out.append(_done(type(res)(0.0, details={"hits": 0})))
            else:
                out.append(fut)
        return out


def _cfg(*sets):
    return load(TrainConfig, REPO / "configs" / "toy_cpu.yaml",
                ["tensorboard=false", "save_every=100", "mesh={data: 1, fsdp: 1, tensor: 1}",
                 "grpo.dynamic_sampling=true", *sets])


def _task():
    return HalfConstantTask(vocab_size=32, num_prompts=512, prompt_len=6, target_id=5, max_new_tokens=8, seed=0)


def test_dynamic_sampling_keeps_only_informative_groups(tmp_path):
    cfg = _cfg("max_steps=3", "grpo.dynamic_max_rounds=8")
    trainer, _ = train(cfg, tmp_path / "run", task=_task())
    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2, 3]
    for r in rows:
        # about half the groups are constant by construction: one batch is never enough
        assert r["dynamic/rounds"] >= 2
        assert r["dynamic/informative_frac"] < 0.7
        assert r["dynamic/filled_groups"] == 0
        assert r["adv/zero_groups"] == 0.0  # every kept group has a non-zero advantage somewhere
        assert r["dynamic/generated_groups"] == 8 * r["dynamic/rounds"]
    # the loader advanced by every batch drawn: the step count of prompts matches the rounds
    assert trainer.rl_step == 3


def test_dynamic_sampling_fills_with_uninformative_groups_after_max_rounds(tmp_path):
    cfg = _cfg("max_steps=2", "grpo.dynamic_max_rounds=1")
    train(cfg, tmp_path / "run", task=_task())
    rows = read_metrics(tmp_path / "run")
    for r in rows:
        assert r["dynamic/rounds"] == 1
        assert r["dynamic/filled_groups"] >= 1  # even ids alone make ~half the batch constant
        assert np.isclose(r["adv/zero_groups"], r["dynamic/filled_groups"] / 8)


def test_dynamic_sampling_resume_matches_uninterrupted_run(tmp_path):
    train(_cfg("max_steps=4"), tmp_path / "straight", task=_task())
    train(_cfg("max_steps=2", "save_every=1"), tmp_path / "resumed", task=_task())
    train(_cfg("max_steps=4", "save_every=1"), tmp_path / "resumed", task=_task())
    a, b = read_metrics(tmp_path / "straight"), read_metrics(tmp_path / "resumed")
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b):
        for k in ("reward/mean", "reward/mean_global", "dynamic/rounds", "train/loss", "train/grad_norm"):
            assert np.isclose(ra[k], rb[k], rtol=1e-5, atol=1e-6), (ra["step"], k, ra[k], rb[k])


class FormatOnlyTask(ToyTask):
    """Even-id prompts score only a format-like bonus (0.2 when the first completion token is
    even, reported as `details["shaping"]`): their groups differ in reward, never in correctness."""

    def submit(self, records, completions):
        out = []
        for rec, comp, fut in zip(records, completions, super().submit(records, completions)):
            if int(rec["id"].split("-")[1]) % 2 == 0:
                bonus = 0.2 if comp and comp[0] % 2 == 0 else 0.0
                out.append(_done(type(fut.result())(bonus, details={"shaping": bonus})))
            else:
                out.append(fut)
        return out


def _format_task():
    return FormatOnlyTask(vocab_size=32, num_prompts=512, prompt_len=6, target_id=5, max_new_tokens=8, seed=0)


def test_dynamic_signal_correctness_drops_groups_that_differ_only_in_format(tmp_path):
    # "reward" (DAPO) keeps the format-only groups: their rewards differ
    train(_cfg("max_steps=2", "grpo.dynamic_max_rounds=8"), tmp_path / "reward", task=_format_task())
    for r in read_metrics(tmp_path / "reward"):
        assert r["dynamic/rounds"] == 1 and r["dynamic/informative_frac"] > 0.7
    # "correctness" looks at reward - shaping: the even-id groups are constant, so more rounds
    train(_cfg("max_steps=2", "grpo.dynamic_max_rounds=8", "grpo.dynamic_signal=correctness"),
          tmp_path / "correct", task=_format_task())
    for r in read_metrics(tmp_path / "correct"):
        assert r["dynamic/rounds"] >= 2 and r["dynamic/informative_frac"] < 0.7
        assert r["dynamic/filled_groups"] == 0


def test_kept_rollout_carries_its_own_rows_credit(tmp_path, monkeypatch):
    """The refill reorders rows across rounds and reuses each round's gathered credit (no second
    all-gather): row k of the kept rollout must carry the shaping of the completion now at row k."""
    from execverify_jax.rl.grpo import trainer as trainer_mod
    from execverify_jax.rl.grpo.credit import credit_details
    from execverify_jax.rl.grpo.rollout import gathered_credit

    seen = []
    real = trainer_mod.assign_advantages

    def spy(host, roll, reward_B, *args):
        assert roll.credit is not None  # cached by the correctness signal, not gathered again
        seen.append(({k: dict(v) for k, v in roll.credit.items()},
                     {k: credit_details(res) for k, res in roll.results.items()}, np.asarray(reward_B)))
        roll.credit = None  # and a fresh gather agrees
        assert gathered_credit(roll) == seen[-1][1]
        return real(host, roll, reward_B, *args)

    monkeypatch.setattr(trainer_mod, "assign_advantages", spy)
    train(_cfg("max_steps=2", "grpo.dynamic_max_rounds=8", "grpo.dynamic_signal=correctness"),
          tmp_path / "run", task=_format_task())
    assert len(seen) == 2
    for cached, fresh, reward_B in seen:
        assert cached == fresh and len(cached) == len(reward_B)
        # the kept rows are still scored by their own completions: reward_B holds the bonus where shaped
        for k, d in cached.items():
            if d.get("shaping"):
                assert np.isclose(reward_B[k], d["shaping"])
