"""GRPO on the continuous rollout engine (rollout.engine: continuous): a fixed-seed toy run
reproduces itself exactly, and the engine knobs are validated."""

from pathlib import Path

import pytest

from execverify_jax.config_loader import load
from execverify_jax.rl.grpo.trainer import train
from execverify_jax.rl.infra.metrics import read_metrics
from execverify_jax.rl.run_config import TrainConfig

REPO = Path(__file__).resolve().parents[2]
OVERRIDES = ["max_steps=3", "tensorboard=false", "save_every=100", "mesh={data: 1, fsdp: 1, tensor: 1}",
             "rollout.engine=continuous", "rollout.slots=24", "rollout.steps_per_call=4", "rollout.block=8"]


def _run(path):
    cfg = load(TrainConfig, REPO / "configs" / "toy_cpu.yaml", OVERRIDES)
    train(cfg, path)
    return read_metrics(path)


@pytest.mark.slow
def test_continuous_engine_grpo_run_reproduces_itself(tmp_path):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b")
    assert [r["step"] for r in a] == [1, 2, 3]
    for ra, rb in zip(a, b):
        for key in ("reward/mean", "response_len/mean", "train/grad_norm", "train/clip_frac"):
            assert ra[key] == rb[key], (key, ra[key], rb[key])
        assert 0 < ra["rollout/useful_row_step_fraction"] <= 1
        assert ra["rollout/decode_steps"] == rb["rollout/decode_steps"]


def test_engine_knobs_are_validated():
    with pytest.raises(Exception, match="engine"):
        load(TrainConfig, REPO / "configs" / "toy_cpu.yaml", ["rollout.engine=paged"])
    with pytest.raises(Exception, match="slots"):
        load(TrainConfig, REPO / "configs" / "toy_cpu.yaml", ["rollout.slots=0"])
