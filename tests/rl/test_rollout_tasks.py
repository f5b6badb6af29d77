"""Tasks and SFT data: the built-in traced rationales earn the maximum reward; code-generation
records (Eurus-style rows and problems made from synthesized programs) are scored by their tests;
the SFT loss mask covers exactly the assistant turn."""

import gzip
import json
from pathlib import Path

import pytest

from execverify_jax.data import pipeline, records
from execverify_jax.data.sandbox import SandboxPool
from execverify_jax.rewards.scorer import PRELOAD, Scorer
from execverify_jax.rl.builders import all_questions, codegen_from_synth
from execverify_jax.rl.sft.rationales import build_examples
from execverify_jax.rl.sft.trainer import read_conversations, tokenize_conversation
from execverify_jax.rl.grpo.tasks import eurus_to_record, program_to_codegen


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    cfg = pipeline.load_config(Path(__file__).resolve().parents[2] / "configs" / "data" / "small.yaml",
                               ["total_programs=24", "decontam.enabled=false", "workers=2",
                                "split.heldout_fraction=0.2"])
    pipeline.run_synth(cfg, out, progress=False)
    return out


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(num_workers=2, preload=PRELOAD) as p:
        yield p


def test_all_questions_reads_a_jsonl_only_synth_dir(synth_dir, tmp_path):
    """`execverify synth --format jsonl` writes one questions.jsonl with each record's split."""
    splits = {sp: all_questions(str(synth_dir), sp) for sp in ("train", "heldout")}
    assert splits["train"] and splits["heldout"]
    (tmp_path / "questions.jsonl").write_text("".join(json.dumps(dict(q, split=sp)) + "\n"
                                                      for sp, qs in splits.items() for q in qs))
    (tmp_path / "manifest.json").write_text(json.dumps({"status": "complete",
                                                        "files": {"jsonl": {"questions": "questions.jsonl"}}}))
    for sp, qs in splits.items():
        assert [q["id"] for q in all_questions(str(tmp_path), sp)] == [q["id"] for q in qs]


def test_traced_rationales_score_the_maximum(synth_dir, pool):
    qs = all_questions(str(synth_dir), "train")
    assert {q["kind"] for q in qs} == {"io_mixed", "oi"}
    convs, counts = build_examples(qs, pool, max_steps=5)
    assert counts["examples"] == len(convs) > 0
    scorer = Scorer(pool)
    # every trace of synthesized programs is usable, so examples align with questions
    assert counts["skipped_trace"] == 0 and len(convs) == len(qs)
    results = [scorer.submit(q, c[-1]["content"]).result() for q, c in zip(qs, convs)]
    assert all(r.reward == 2.0 for r in results), [(r.kind, r.reason) for r in results if r.reward != 2.0]
    text = convs[0][-1]["content"]
    assert text.startswith("<reasoning>\nCall ") and "Step 1, line" in text and "</answer>" in text


def test_codegen_problems_from_programs_and_eurus_rows(synth_dir, pool):
    problems = codegen_from_synth(str(synth_dir))
    assert problems
    scorer = Scorer(pool)
    progs = {p["id"]: p for f in synth_dir.glob("programs-train*.arrayrecord")
             for p in records.read_arrayrecord(f, "program")}
    p = problems[0]
    code = progs[p["program_id"]]["code"]
    good = scorer.submit(p, f"<answer>\n```python\n{code}\n```\n</answer>").result()
    bad = scorer.submit(p, f"<answer>\n```python\ndef {p['answer']['fn_name']}(*a):\n    return None\n```\n</answer>").result()
    assert good.details["pass_rate"] == 1.0 and good.reward > 1.0
    assert bad.details["pass_rate"] < 1.0
    row = {"prompt": [{"role": "user", "content": "Add two numbers read from stdin."}],
           "reward_model": {"ground_truth": json.dumps({"inputs": ["1 2\n", "3 4\n"], "outputs": ["3\n", "7\n"]})}}
    rec = eurus_to_record(row, 0)
    assert rec["messages"][0]["content"] == "\nYou are a programming expert.\n"
    assert "Try to generate code to solve the problem: \nAdd two numbers" in rec["messages"][1]["content"]
    sol = "a, b = map(int, input().split())\nprint(a + b)"
    assert scorer.submit(rec, f"<answer>\n```python\n{sol}\n```\n</answer>").result().details["pass_rate"] == 1.0
    assert eurus_to_record({"prompt": "x", "reward_model": {"ground_truth": "{}"}}, 1) is None
    assert program_to_codegen({"id": "p", "entry": "f", "inputs": ["{1}"], "outputs": [{"t": "int", "v": 1}]}) is None


def test_sft_mask_covers_the_assistant_turn(tmp_path):
    from execverify_jax.data.tokenizer import Tokenizer
    from execverify_jax.data.tokenizer_train import train_bpe

    corpus = tmp_path / "c.txt"
    corpus.write_text("hello world assert f(1) == 2 reasoning answer\n" * 50)
    tok = Tokenizer(train_bpe([corpus], tmp_path / "tok", 300))
    f = tmp_path / "sg.jsonl"
    f.write_text(json.dumps({"conversations": [{"from": "human", "value": "hello"},
                                               {"from": "gpt", "value": "assert f(1) == 2"}]}) + "\nnot json\n"
                 + json.dumps({"conversations": [{"from": "human", "value": "no answer"}]}) + "\n")
    convs, bad = read_conversations(f)
    assert len(convs) == 1 and bad == 2
    gz = tmp_path / "sg.jsonl.gz"  # warmstart_prepare.py writes its conversations gzipped
    gz.write_bytes(gzip.compress(f.read_bytes()))
    assert read_conversations(gz) == (convs, bad)
    ids, mask = tokenize_conversation(tok, convs[0], 4096)
    learned = [int(i) for i, m in zip(ids, mask) if m]
    assert tok.decode(learned, skip_special_tokens=False) == "assert f(1) == 2<|im_end|>\n"
    assert not mask[: len(tok.apply_chat(convs[0][:1]))].any()


def test_difficulty_probe_uses_the_reward_parser(synth_dir, pool):
    from execverify_jax.data import safe_codec
    from execverify_jax.rl.apps.difficulty import DifficultyConfig, keep, probe, solved

    q = next(q for q in all_questions(str(synth_dir), "train")
             if q["kind"] == "oi" and safe_codec.from_jsonable(q["answer"]["output"]) is not None)
    prog = q["answer"]["program"]
    messages, graded = probe(q, "cruxeval")
    assert "Fill in the missing assertion" in messages[-1]["content"]
    assert f"assert {prog['entry']}({prog['args']}) == ????" in messages[-1]["content"]
    out = repr(safe_codec.from_jsonable(q["answer"]["output"]))
    scorer = Scorer(pool)
    right = f"<answer>\n```python\nassert {prog['entry']}({prog['args']}) == {out}\n```\n</answer>"
    mention = f"The value {out} appears somewhere.<answer>\nassert {prog['entry']}({prog['args']}) == None\n</answer>"
    assert solved(scorer.submit(graded, right).result())
    # the paper's substring test would pass this one; the parser does not
    assert out in mention and not solved(scorer.submit(graded, mention).result())
    cfg = DifficultyConfig()
    assert keep(0.0, cfg) and keep(0.3, cfg) and not keep(0.4, cfg) and not keep(1.0, cfg)
    with pytest.raises(ValueError):
        DifficultyConfig(min_pass_rate=0.5, max_pass_rate=0.3)


def test_codegen_problems_need_json_round_trippable_values():
    """Nested tuples (or sets, non-str keys) do not survive the JSON tests: no problem is made."""
    enc = lambda v: __import__("execverify_jax.data.safe_codec", fromlist=["x"]).to_jsonable(v)  # noqa: E731
    prog = {"id": "p", "entry": "f", "inputs": ["[1, 2]"], "outputs": [enc([(1, 2)])]}
    assert program_to_codegen(prog) is None
    assert program_to_codegen(dict(prog, inputs=["[(1, 2)]"], outputs=[enc([1])])) is None
    assert program_to_codegen(dict(prog, outputs=[enc([[1, 2]])]))["answer"]["tests"]["outputs"] == [[[1, 2]]]
