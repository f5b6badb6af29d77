"""Non-finite loss / gradient norm stop training (GRPO and SFT) with FloatingPointError naming the
step, before the step is logged or checkpointed. The loops run with a stubbed step (no compile)."""

import math
from pathlib import Path

import pytest

from execverify_jax.config_loader import load
from execverify_jax.rl.grpo.trainer import GRPOTrainer
from execverify_jax.rl.infra import train_steps
from execverify_jax.rl.infra.guards import check_finite
from execverify_jax.rl.infra.metrics import read_metrics
from execverify_jax.rl.run_config import TrainConfig
from execverify_jax.rl.sft.trainer import run_sft

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


class _ChatIds:
    """Messages of space-separated ids rendered by concatenation (an incremental template)."""

    vocab_size = 64
    pad_id = 0

    def apply_chat(self, messages, add_generation_prompt=True):
        return [int(t) for m in messages for t in m["content"].split()]


def test_sft_loop_stops_at_first_nan_step(tmp_path, monkeypatch):
    cfg = load(TrainConfig, REPO / "configs" / "toy_cpu.yaml",
               ["tensorboard=false", "mesh={data: 1, fsdp: 1, tensor: 1}", "sft.batch_size=2",
                "sft.micro_batch_size=2", "sft.max_len=16", "sft.buckets=[16]", "sft.epochs=1"])
    losses = iter([0.5, math.inf])

    def fake_update(*args, **kwargs):
        return lambda state, batch: (state, {"loss": next(losses), "grad_norm": 1.0, "ce": 0.5, "accuracy": 0.0})

    monkeypatch.setattr(train_steps, "make_sft_update", fake_update)
    convs = [[{"role": "user", "content": "3 4"}, {"role": "assistant", "content": "5 6 7"}]] * 6
    with pytest.raises(FloatingPointError, match="step 2: sft/loss=inf, sft/grad_norm=1.0"):
        run_sft(cfg, tmp_path / "sft", convs, _ChatIds())
    assert [r["step"] for r in read_metrics(tmp_path / "sft")] == [1]
