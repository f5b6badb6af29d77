"""`execverify demo` end to end: a very small configuration by default (every phase runs:
synth, tokenizer, SFT, eval, GRPO, eval, HF export + transformers reload, report), the real
default configuration (configs/demo_cpu_warm.yaml) run marked slow."""

import json
from pathlib import Path

import pytest

from execverify_jax.cli import main
from execverify_jax.rl.infra.metrics import read_metrics

REPO = Path(__file__).resolve().parents[2]
SMOKE = ["programs=24", "max_args_chars=null", "tokenizer_vocab=512", "eval.oi=4", "eval.max_new_tokens=16", "eval.batch_size=4",
         "train.model.overrides={hidden_size: 32, intermediate_size: 64, num_layers: 1, num_heads: 2, "
         "num_kv_heads: 1, head_dim: 16, max_position_embeddings: 1024}",
         "train.sft.epochs=1", "train.sft.max_samples=16", "train.sft.batch_size=16", "train.sft.micro_batch_size=16",
         "train.rollout.max_new_tokens=16", "train.rollout.completion_buckets=[16]", "train.rollout.prompts_per_call=2",
         "train.grpo.group_size=2", "train.grpo.prompts_per_step=2", "train.grpo.num_minibatches=1",
         "train.grpo.micro_batch_size=4", "train.grpo.max_response_len=16", "train.max_steps=2",
         "train.progress=false", "train.tensorboard=false", "train.mesh={data: 1, fsdp: 1, tensor: 1}"]


def _check(out: Path, steps: int) -> dict:
    report = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    assert "Held-out evaluation" in md and "reward.png" in md
    assert (out / "plots" / "reward.png").stat().st_size > 1000
    assert report["grpo"]["rl_steps"] == steps
    for name in ("eval_sft", "eval_grpo"):
        assert report[name]["n"] > 0 and "reward/mean" in report[name]
    assert report["hf_export"]["max_abs_logit_diff"] < 1e-3
    assert report["hf_export"]["architecture"] == ["Qwen2ForCausalLM"]
    assert [json.loads(l)["step"] for l in (out / "grpo" / "metrics.jsonl").read_text().splitlines()] == list(range(1, steps + 1))
    return report


def test_demo_smoke(tmp_path, capsys):
    args = ["demo", "--out", str(tmp_path / "demo"), "--config", str(REPO / "configs" / "demo_cpu.yaml")]
    for s in SMOKE:
        args += ["--set", s]
    assert main(args) == 0
    first = _check(tmp_path / "demo", 2)
    # A re-run continues: the finished SFT policy is loaded (not retrained) and GRPO, already at
    # its last step, resumes from its checkpoint; the held-out numbers are the same.
    capsys.readouterr()
    assert main(args) == 0
    assert "SFT already finished" in capsys.readouterr().out
    again = _check(tmp_path / "demo", 2)
    assert again["eval_sft"] == first["eval_sft"] and again["eval_grpo"] == first["eval_grpo"]


def test_demo_warm_start_smoke(tmp_path):
    """The default config starts from assets/demo_warmstart: its tokenizer and model, none of its
    programs (every phase at a very small size; the model is the shipped 0.92M one)."""
    sets = [s for s in SMOKE if not s.startswith(("train.model.overrides", "tokenizer_vocab"))]
    sets += ["eval.io_mixed=2", "max_prompt_tokens=640"]
    args = ["demo", "--out", str(tmp_path / "demo")]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    report = _check(tmp_path / "demo", 2)
    assert report["warm_start"]["init"] == str(REPO / "assets" / "demo_warmstart")
    assert report["warm_start"]["programs_seen"] > 1000
    assert report["model"]["num_params"] == 918_656 and report["model"]["vocab_size"] == 2048
    assert not (tmp_path / "demo" / "tokenizer").exists()  # the warm start's tokenizer, none trained
    # the default refills groups that carry no correctness signal (grpo.dynamic_signal: correctness)
    assert report["config"]["train"]["grpo"]["dynamic_signal"] == "correctness"
    assert "Dynamic sampling" in (tmp_path / "demo" / "report.md").read_text()
    assert all(r["dynamic/rounds"] >= 1 for r in read_metrics(tmp_path / "demo" / "grpo"))


@pytest.mark.slow
def test_demo_full(tmp_path):
    """The README's main job: the default config (configs/demo_cpu_warm.yaml, 90 GRPO steps)."""
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    report = _check(tmp_path / "demo", 90)
    assert report["warm_start"]["programs_seen"] > 1000
    # Its wall time (<= 15 minutes on 2 cores) is measured in docs/BENCHMARKS.md §5c, not asserted.
