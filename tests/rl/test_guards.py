"""Non-finite loss / gradient norm stop training with FloatingPointError naming the step, before
the step is logged or checkpointed."""

import math
from pathlib import Path

import pytest

from execverify_jax.config_loader import load
from execverify_jax.rl.grpo.trainer import GRPOTrainer
from execverify_jax.rl.infra.guards import check_finite
from execverify_jax.rl.infra.metrics import read_metrics
from execverify_jax.rl.run_config import TrainConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_check_finite_names_step_and_values(bad):
    with pytest.raises(FloatingPointError, match=r"step 7: .*train/grad_norm="):
        check_finite(7, {"train/loss": 1.0, "train/grad_norm": bad}, ("train/loss", "train/grad_norm"))


def test_check_finite_passes_finite_and_ignores_absent_keys():
    check_finite(1, {"train/loss": 0.5, "other": math.nan}, ("train/loss", "train/grad_norm"))


def test_grpo_loop_stops_at_first_nan_step(tmp_path):
    cfg = load(TrainConfig, REPO / "configs" / "toy_cpu.yaml",
               ["max_steps=5", "tensorboard=false", "save_every=1", "mesh={data: 1, fsdp: 1, tensor: 1}"])
    trainer = GRPOTrainer(cfg, tmp_path / "run")
    losses = iter([0.5, math.nan])
    trainer.step = lambda batch: {"train/loss": next(losses), "train/grad_norm": 1.0}  # no compile needed
    try:
        with pytest.raises(FloatingPointError, match="step 2: train/loss=nan, train/grad_norm=1.0"):
            trainer.train()
    finally:
        trainer.close()
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [1]
    assert trainer.ckpt.latest_step() == 1
