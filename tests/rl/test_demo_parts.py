"""Pieces of the demo and its report that need no training: per-kind accuracies (Nil included),
the disjoint SFT / GRPO program split."""

from __future__ import annotations

import pytest

from execverify_jax.rewards.result import RewardResult
from execverify_jax.rl.apps.demo import split_programs
from execverify_jax.rl.infra.metrics import reward_metrics


def test_per_kind_accuracies_with_nil_separately():
    kinds = ["next_statement", "value_type", "value_type", "coverage"]
    res = [RewardResult(2.0, "io_mixed", True, "", {"io": True, "correct": [True, True, False, True],
                                                   "question_kinds": kinds, "question_nil": [False, False, True, False]}),
           RewardResult(0.0, "io_mixed", True, "", {"io": False, "correct": [False, False, True],
                                                   "question_kinds": kinds, "question_nil": [False, True, False, False]}),
           RewardResult(2.0, "oi", True, "", {"io": True})]
    m = reward_metrics(res, [10, 10, 10], [False] * 3)
    assert m["acc/io"] == 0.5 and m["acc/oi"] == 1.0
    assert m["acc/path"] == 0.5 and m["acc/state"] == 0.5 and m["acc/coverage"] == 0.5  # unanswered = wrong
    assert m["acc/nil"] == 0.0  # the two Nil questions (one per result) are both wrong
    res[1].details["correct"][1] = True
    assert reward_metrics(res, [10, 10, 10], [False] * 3)["acc/nil"] == 0.5


def test_sft_and_grpo_programs_are_disjoint():
    qs = [{"program_id": f"p{i // 2}", "kind": k} for i, k in enumerate(["oi", "io_mixed"] * 100)]
    sft, rl = split_programs(qs, 0.4, seed=3)
    assert not {q["program_id"] for q in sft} & {q["program_id"] for q in rl}
    assert len(sft) + len(rl) == len(qs) and 0.25 < len(rl) / len(qs) < 0.55
    assert split_programs(qs, 0.4, seed=3) == (sft, rl) and split_programs(qs, 0.4, seed=4) != (sft, rl)
    assert split_programs(qs, 0.0, seed=3) == (qs, qs)
    with pytest.raises(ValueError, match="rl_program_fraction"):
        split_programs(qs, 1.0, seed=3)


def test_warm_start_programs_leave_every_split(tmp_path):
    from execverify_jax.rl.apps.demo import WARM_PROGRAMS, drop_seen_programs, program_hash, warm_start_programs

    code_a, code_b = "def f(x):\n    return x + 1", "def f(x):\n    return x + 2"
    assert program_hash(code_a) == program_hash(code_a + "\n\n") != program_hash(code_b)
    with pytest.raises(FileNotFoundError, match="train.model.init=.*programs.txt"):
        warm_start_programs(tmp_path)
    (tmp_path / WARM_PROGRAMS).write_text(program_hash(code_a) + "\n\n")
    seen = warm_start_programs(tmp_path)
    assert seen == {program_hash(code_a)}
    qs = [{"answer": {"program": {"code": c}}, "id": i} for i, c in enumerate([code_a, code_b, code_a + "\n"])]
    assert [q["id"] for q in drop_seen_programs(qs, seen)] == [1]


def test_shipped_warm_start_matches_the_demo_model():
    """configs/demo_cpu_warm.yaml's policy: the demo's model shape, its tokenizer, the programs it
    saw, and the record of how it was trained (benchmarks/device/warmstart.py)."""
    import json
    from pathlib import Path

    from execverify_jax import config_loader as config_lib
    from execverify_jax.data.tokenizer import Tokenizer
    from execverify_jax.model.config import ModelConfig, load_hf_config
    from execverify_jax.rl.apps.demo import DemoConfig, warm_start_programs

    repo = Path(__file__).resolve().parents[2]
    warm = config_lib.load(DemoConfig, repo / "configs/demo_cpu_warm.yaml")
    cold = config_lib.load(DemoConfig, repo / "configs/demo_cpu.yaml")
    init = repo / warm.train.model.init
    mcfg = load_hf_config(init)
    fresh = ModelConfig.preset(cold.train.model.preset, vocab_size=cold.tokenizer_vocab, **cold.train.model.overrides)
    for k in ("hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads", "head_dim", "vocab_size"):
        assert getattr(mcfg, k) == getattr(fresh, k), k
    assert Tokenizer(init).vocab_size == cold.tokenizer_vocab
    info = json.loads((init / "warmstart.json").read_text())
    assert len(warm_start_programs(init)) == info["prepare"]["programs"] > 1000
    assert info["model"]["num_params"] == fresh.num_params()
    assert warm.synth == cold.synth and warm.max_args_chars == cold.max_args_chars == info["prepare"]["max_args_chars"]


def test_long_demo_config_is_the_default_continued():
    """configs/demo_cpu_warm_long.yaml = the default demo with 120 GRPO steps, whose first 90 are
    the default's: same everything else and the same warm-up length in optimizer steps (12, as
    when the default had 60 steps, so the measured 60-step runs continue into both)."""
    import dataclasses
    from pathlib import Path

    from execverify_jax import config_loader as config_lib
    from execverify_jax.rl.apps.demo import DemoConfig

    repo = Path(__file__).resolve().parents[2]
    short = config_lib.load(DemoConfig, repo / "configs/demo_cpu_warm.yaml")
    long = config_lib.load(DemoConfig, repo / "configs/demo_cpu_warm_long.yaml")
    assert (short.train.max_steps, long.train.max_steps) == (90, 120)
    updates = lambda c: c.train.max_steps * c.train.grpo.num_minibatches * c.train.grpo.ppo_epochs  # noqa: E731
    assert long.train.optim.warmup_for(updates(long)) == short.train.optim.warmup_for(updates(short)) == 12
    same = dataclasses.replace(long.train, max_steps=90, optim=short.train.optim)
    assert dataclasses.replace(long, train=same) == short
