"""A tiny random Qwen2 (saved with save_pretrained) + a locally trained BPE tokenizer generate
through `execverify eval --model` end to end: prompts -> our generator (engine) -> grading -> results."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from execverify_jax.eval.runner import EvalConfig, run  # noqa: E402
from execverify_jax.shared_config import GenerationConfig  # noqa: E402

QWEN_KW = dict(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
               num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=8192)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> tuple[Path, Path]:
    """(HF model dir, tokenizer dir): random weights, BPE trained on this package's sources."""
    from execverify_jax.data.tokenizer_train import train_bpe

    torch.manual_seed(0)
    model_dir = tmp_path_factory.mktemp("tiny_qwen")
    transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**QWEN_KW)).eval().save_pretrained(model_dir)
    files = sorted((Path(__file__).resolve().parents[2] / "execverify_jax").rglob("*.py"))
    tok_dir = train_bpe(files, tmp_path_factory.mktemp("tiny_bpe"), 400)
    return model_dir, tok_dir


def _run(benchmark, data, model, tmp_path, limit=2, **gen):
    model_dir, tok_dir = model
    cfg = EvalConfig(benchmark=benchmark, data=str(data), limit=limit, out=str(tmp_path / benchmark),
                     model=str(model_dir), tokenizer=str(tok_dir), workers=2,
                     generation=GenerationConfig(max_new_tokens=6, batch_size=4, dtype="float32", **gen))
    res = run(cfg, print_fn=lambda *a: None)
    samples = [json.loads(line) for line in (tmp_path / benchmark / "samples.jsonl").read_text().splitlines()]
    return res, samples


def test_cruxeval_greedy_and_sampled(cruxeval_path, tiny_model, tmp_path):
    res, samples = _run("cruxeval-o", cruxeval_path, tiny_model, tmp_path)
    assert res["tasks"]["cruxeval-o"]["items"] == 2 and len(samples) == 2
    assert all(isinstance(s["response"], str) for s in samples)
    assert res["seconds"]["generation"] > 0
    res, samples = _run("cruxeval-i", cruxeval_path, tiny_model, tmp_path / "s", n=3, temperature=1.0, seed=1)
    m = res["tasks"]["cruxeval-i"]
    assert m["samples"] == 6 and "pass@1" in m and len(samples) == 6
    assert {s["sample"] for s in samples} == {0, 1, 2}


def test_greedy_eval_is_the_same_on_both_engines(cruxeval_path, tiny_model, tmp_path):
    """`generation.engine`: the continuous engine (default; all prompts in one call, 2 slots so
    rows are admitted as others finish) and the static sampler (batches of 4) give the same greedy
    responses, hence the same accuracy."""
    # Larger random weights than HF's 0.02 init, so that different prompts get different answers.
    torch.manual_seed(1)
    model_dir = tmp_path / "varied"
    transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**QWEN_KW, initializer_range=0.5)).eval() \
        .save_pretrained(model_dir)
    model = (model_dir, tiny_model[1])
    runs = {eng: _run("cruxeval-o", cruxeval_path, model, tmp_path / eng, limit=5, engine=eng,
                      slots=2, steps_per_call=2, block=16)
            for eng in ("continuous", "static")}
    (res_c, samples_c), (res_s, samples_s) = runs["continuous"], runs["static"]
    assert len(samples_c) == 5
    assert [s["response"] for s in samples_c] == [s["response"] for s in samples_s]
    assert len({s["response"] for s in samples_c}) > 1  # not one trivial output for every prompt
    drop = ("seconds",)
    assert {k: v for k, v in res_c["tasks"]["cruxeval-o"].items() if k not in drop} == \
        {k: v for k, v in res_s["tasks"]["cruxeval-o"].items() if k not in drop}


@pytest.mark.slow
def test_every_benchmark_runs(shared_data, cruxeval_path, tiny_model, tmp_path, lcb_file, codegen_file):
    spec = importlib.util.spec_from_file_location("eval_conftest", Path(__file__).with_name("conftest.py"))
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    programs, questions = conf.synthetic_records()
    synth = tmp_path / "synth"
    synth.mkdir()
    (synth / "programs.jsonl").write_text("\n".join(json.dumps(p) for p in programs))
    (synth / "questions.jsonl").write_text("\n".join(json.dumps(q) for q in questions))
    cases = [("lcb-exec", lcb_file, 2), ("reval-ic", shared_data / "benchmarks", 1), ("humaneval", "", 2),
             ("codegen", codegen_file, 2), ("synthetic", synth, 2)]
    for name, data, limit in cases:
        res, samples = _run(name, data, tiny_model, tmp_path, limit=limit)
        assert samples and all(isinstance(s["response"], str) for s in samples), name
        assert sum(m["items"] + m["excluded_no_ground_truth"] for m in res["tasks"].values()) == len(samples), name
    # Official completion-style prompts fed as raw text (no chat template).
    model_dir, tok_dir = tiny_model
    cfg = EvalConfig(benchmark="cruxeval-i", data=str(cruxeval_path), limit=2, style="official",
                     model=str(model_dir), tokenizer=str(tok_dir), workers=2,
                     generation=GenerationConfig(max_new_tokens=4, batch_size=2, dtype="float32", raw_prompts=True))
    assert run(cfg, print_fn=lambda *a: None)["tasks"]["cruxeval-i"]["samples"] == 2
