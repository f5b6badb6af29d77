"""The GPU device scripts (benchmarks/device/) run their real code paths on CPU at tiny shapes.

They run on a lent accelerator only a few minutes per session, so a script that breaks on the CPU
side would waste that time: check.sh's smoke section (engine_decode.py --tiny) and rl_step.py
(the real trainer on synthesized questions, tiny model) are exercised here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict:
    env = dict(os.environ, ALLOW_CPU="1", PYTHON=sys.executable, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def test_check_sh_smoke_measures_engine_and_static_decode(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run(["bash", "benchmarks/device/check.sh", "smoke"], cwd=REPO, env=dict(_env(), OUT=str(out)),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr + (out / "device_check.log").read_text()
    res = json.loads((out / "smoke.json").read_text())["shapes"]["tiny"]
    eng, rows, n_long = res["engine"], res["rows"], res["new_tokens"][0]
    # every row generated its cap in one admission; decode made rows x (N - 1) tokens, all kept
    assert eng["engine_stats"]["useful_row_steps"] == eng["engine_stats"]["row_steps"] == rows * (n_long - 1)
    assert eng["engine_stats"]["admit_calls"] == 1
    assert eng["decode_tokens_per_s"] > 0 and 0 < eng["decode_s"] <= eng["generate_s"]
    assert res["static"]["t_long_s"] > 0
    assert eng["fraction_of_bound"] is None  # no HBM bandwidth known for a CPU


def test_check_sh_rejects_unknown_section(tmp_path):
    r = subprocess.run(["bash", "benchmarks/device/check.sh", "nonsense"], cwd=REPO,
                       env=dict(_env(), OUT=str(tmp_path)), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "unknown section nonsense" in r.stdout


@pytest.mark.slow
def test_rl_step_reports_the_trainers_time_split(tmp_path):
    data = tmp_path / "data"
    subprocess.run([sys.executable, "-m", "execverify_jax", "synth", "--set", "total_programs=24",
                    "--set", "decontam.enabled=false", "--set", "workers=2", "--out", str(data),
                    "--format", "both", "--no-progress"], cwd=REPO, env=_env(), check=True, capture_output=True,
                   timeout=600)
    from execverify_jax.data.tokenizer_train import train_bpe
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(m["content"] + "\n" for line in open(data / "questions.jsonl")
                              for m in json.loads(line)["messages"]))
    train_bpe([corpus], tmp_path / "tok", 512)
    sets = ["model.preset=tiny", "model.overrides={max_position_embeddings: 4096}", "model.dtype=float32",
            f"data.path={data}", f"data.tokenizer={tmp_path / 'tok'}", "data.buckets=[2048]",
            "rollout.max_new_tokens=16", "rollout.completion_buckets=[16]", "grpo.max_response_len=16",
            "grpo.prompts_per_step=2", "rollout.slots=8", "rollout.block=16", "grpo.micro_batch_size=8",
            "sandbox_workers=2", "max_steps=3"]
    out = tmp_path / "rl_step.json"
    cmd = [sys.executable, "benchmarks/device/rl_step.py", "--out", str(out), "--run-dir", str(tmp_path / "run")]
    for s in sets:
        cmd += ["--set", s]
    r = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["rl_steps"] == 3 and [s["step"] for s in res["steps"]] == [1, 2, 3]
    for s in res["steps"]:
        parts = sum(s[k] for k in ("time/generate", "time/logprob", "time/score_wait", "time/update"))
        assert 0 < parts <= s["time/step"] + 1e-6
        assert s["compile_s"] <= s["time/step"] + 1e-6
    assert res["steps"][0]["compiles"] > 0  # the first step compiles the engine and the update
    assert 0 < sum(res["share_of_step"].values()) <= 1.0 + 1e-6
    assert not list((tmp_path / "run").glob("checkpoints*/*"))  # the benchmark writes no checkpoint


def test_warmstart_calibration_counts_the_host_time(tmp_path):
    from benchmarks.device.warmstart import wall_per_step_s
    rows = [{"step": i + 1, "time/step": t} for i, t in enumerate([5.0, 4.0, 0.01, 0.01, 0.01, 0.01])]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    # 10 s of wall time: 9 s in the two compiling steps, 1 s over the other four (not 4 x 0.01)
    assert wall_per_step_s(tmp_path, 10.0, skip=2) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="calib-batches"):
        wall_per_step_s(tmp_path, 10.0, skip=6)


@pytest.mark.slow
def test_warm_start_trains_and_the_demo_starts_from_it(tmp_path):
    """warmstart_prepare.py -> warmstart.py (a 2-step budget on CPU) -> the demo from that policy:
    its tokenizer, none of its programs in the demo's GRPO or held-out questions."""
    data = tmp_path / "synth"
    subprocess.run([sys.executable, "-m", "execverify_jax", "synth", "--set", "total_programs=40",
                    "--set", "decontam.enabled=false", "--set", "workers=2", "--set", "seed=0", "--out", str(data),
                    "--format", "jsonl", "--no-progress"], cwd=REPO, env=_env(), check=True, capture_output=True,
                   timeout=600)
    warm, ws = tmp_path / "warm", tmp_path / "ws"
    for cmd in (["benchmarks/device/warmstart_prepare.py", "--synth", str(data), "--out", str(warm), "--vocab", "512"],
                ["benchmarks/device/warmstart.py", "--warm", str(warm), "--out", str(ws), "--budget-s", "0",
                 "--calib-batches", "3", "--set", "train.sft.max_len=1024", "--set", "train.sft.buckets=[1024]"]):
        r = subprocess.run([sys.executable, *cmd], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    info = json.loads((ws / "warmstart.json").read_text())
    assert info["epochs"] == 1 and info["steps"] >= 1 and info["prepare"]["programs"] > 0
    assert (ws / "model.safetensors").is_file() and (ws / "tokenizer.json").is_file()
    seen = set((ws / "programs.txt").read_text().split())
    assert len(seen) == info["prepare"]["programs"]

    out = tmp_path / "demo"  # the same synthesis seed: every program the warm start saw must leave
    r = subprocess.run([sys.executable, "-m", "execverify_jax", "demo", "--out", str(out), "--set", "programs=60",
                        "--set", f"train.model.init={ws}", "--set", "train.sft.epochs=1", "--set", "train.max_steps=1",
                        "--set", "eval.oi=4", "--set", "eval.io_mixed=4", "--set", "eval.sampled_n=0",
                        "--set", "max_prompt_tokens=1024", "--set", "train.tensorboard=false"],
                       cwd=REPO, env=_env(), capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rep = json.loads((out / "report.json").read_text())
    assert rep["warm_start"]["programs_seen"] == len(seen) and rep["warm_start"]["train_questions_dropped"] > 0
    assert rep["model"]["num_params"] == info["model"]["num_params"]
    assert rep["hf_export"]["max_abs_logit_diff"] < 1e-4
    from execverify_jax.rl.apps.demo import program_hash
    from execverify_jax.rl.builders import all_questions
    code = {q["program_id"]: q["answer"]["program"]["code"] for q in all_questions(str(out / "data"), "heldout")}
    evaluated = [json.loads(line)["question_id"].split(":")[0] for line in (out / "eval_sft.jsonl").read_text().splitlines()]
    assert evaluated and all(program_hash(code[pid]) not in seen for pid in evaluated)
    assert rep["grpo"]["prompts"] > 0

    # benchmarks/demo_common_heldout.py re-scores the run's two policies on its held-out questions:
    # the same greedy numbers as the demo's own evaluation (one run: the union is its own set)
    common = tmp_path / "common.json"
    r = subprocess.run([sys.executable, "benchmarks/demo_common_heldout.py", str(out), "--out", str(common)],
                       cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(common.read_text())
    assert sum(res["questions"].values()) == len(evaluated) and res["dropped"] == 0
    for name, key in (("sft", "eval_sft"), ("grpo", "eval_grpo")):
        ours = res["policies"][f"demo/{name}"]
        assert all(ours[k] == rep[key][k] for k in ("acc/oi", "acc/io", "format_rate", "reward/mean")), (ours, rep[key])
    assert res["sft_spread"]["acc/oi"] == 0.0  # one run

    # --fresh-programs: newly synthesized questions under the demo's filters, none of whose programs
    # the run trained on or the warm start saw (seed 0 again: the demo's programs come back)
    from benchmarks.demo_common_heldout import fresh_questions, trained_programs
    from execverify_jax import config_loader as config_lib
    from execverify_jax.data.tokenizer import Tokenizer
    from execverify_jax.rl.apps.demo import DemoConfig
    cfg = config_lib.from_dict(DemoConfig, rep["config"])
    trained = trained_programs(out)
    fresh = fresh_questions(cfg, Tokenizer(ws), tmp_path / "fresh", 80, 0, seen=trained)
    assert fresh and {q["kind"] for q in fresh} <= {"oi", "io_mixed"}
    assert sum(q["kind"] == "oi" for q in fresh) <= sum(q["kind"] == "io_mixed" for q in fresh)
    hashes = {program_hash(q["answer"]["program"]["code"]) for q in fresh}
    assert not hashes & (trained | seen)
    every = {program_hash(q["answer"]["program"]["code"]) for split in ("train", "heldout")
             for q in all_questions(str(tmp_path / "fresh"), split)}
    assert every & (trained | seen)  # the same seed did synthesize programs that had to leave
