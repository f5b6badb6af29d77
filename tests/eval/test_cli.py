"""`execverify eval` end to end on saved responses: outputs, counting of bad input, no jax."""

from __future__ import annotations

import json
import subprocess
import sys

from execverify_jax.cli import main


def test_write_prompts_then_score_responses(cruxeval_path, tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    assert main(["eval", "--benchmark", "cruxeval-o", "--data", str(cruxeval_path), "--limit", "5",
                 "--write-prompts", str(prompts)]) == 0
    recs = [json.loads(line) for line in prompts.read_text().splitlines()]
    assert [r["id"] for r in recs] == [f"sample_{i}" for i in range(5)]
    assert recs[0]["messages"][0]["role"] == "system"
    data = [json.loads(line) for line in cruxeval_path.read_text().splitlines()[:5]]
    lines = [json.dumps({"id": "sample_0", "response": f"<answer>assert f({data[0]['input']}) == {data[0]['output']}</answer>"}),
             json.dumps({"id": "sample_1", "response": f"[ANSWER]assert f({data[1]['input']}) == {data[1]['output']}[/ANSWER]"}),
             json.dumps({"id": "sample_2", "response": "<answer>assert f(1) == nonsense(</answer>"}),
             json.dumps({"id": "sample_3", "response": "no answer at all"}),
             json.dumps({"id": "not_an_item", "response": "x"}),
             "{broken json", json.dumps({"id": "sample_3", "response": 5})]
    resp = tmp_path / "responses.jsonl"
    resp.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert main(["eval", "--benchmark", "cruxeval-o", "--data", str(cruxeval_path), "--limit", "5",
                 "--responses", str(resp), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| cruxeval-o | 5 | 5 | 40.00 |" in printed
    res = json.loads((out / "results.json").read_text())
    assert res["responses"] == {"bad_lines": 2, "unknown_ids": 1, "missing_items": 1}
    assert res["tasks"]["cruxeval-o"]["accuracy"] == 0.4 and res["tasks"]["cruxeval-o"]["unparsable"] == 3
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 5 and samples[0]["correct"] and samples[0]["parsed"] == data[0]["output"]
    assert {"prompt", "response", "parsed", "correct", "reason"} <= set(samples[2])


def test_results_report_both_scorings(cruxeval_path, tmp_path):
    out = tmp_path / "out"
    assert main(["eval", "--benchmark", "cruxeval-i", "--data", str(cruxeval_path), "--limit", "400",
                 "--oracle", "--out", str(out), "--workers", "2"]) == 0
    res = json.loads((out / "results.json").read_text())
    # sample_344 and sample_364 take a lambda; the official harness runs the dataset's argument text.
    assert res["scoring"]["used"] == "official" and res["tasks"]["cruxeval-i"]["accuracy"] == 1.0
    assert res["scoring"]["accuracy"]["official"] == {"cruxeval-i": 1.0}
    assert res["scoring"]["accuracy"]["strict"]["cruxeval-i"] < 1.0
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    lam = next(s for s in samples if s["id"] == "sample_344")
    assert lam["correct_by_scoring"] == {"official": True, "strict": False}


def test_scoring_responses_does_not_import_jax(cruxeval_path, tmp_path):
    resp = tmp_path / "r.jsonl"
    resp.write_text(json.dumps({"id": "sample_0", "response": "<answer>assert f(1) == 2</answer>"}) + "\n")
    code = ("import sys\nfrom execverify_jax.cli import main\n"
            f"rc = main(['eval', '--benchmark', 'cruxeval-i', '--data', {str(cruxeval_path)!r}, '--limit', '2', "
            f"'--responses', {str(resp)!r}, '--workers', '1'])\n"
            "print('RC', rc, 'JAX', 'jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "RC 0 JAX False" in out.stdout, out.stderr[-2000:]


def test_bad_flags(cruxeval_path, capsys):
    assert main(["eval", "--benchmark", "cruxeval-o", "--responses", "x.jsonl"]) == 2  # no --data
    assert main(["eval", "--benchmark", "cruxeval-o", "--data", str(cruxeval_path), "--limit", "0",
                 "--oracle"]) == 2
    assert main(["eval", "--benchmark", "reval-path", "--data", "/nonexistent/folder", "--oracle"]) == 2
    assert main(["eval", "--benchmark", "reval-path", "--data", str(cruxeval_path), "--oracle",
                 "--scoring", "strict"]) == 2  # a single grading rule: --scoring is an error
    assert "error:" in capsys.readouterr().err


def test_oracle_reval_ic_cli(shared_data, tmp_path, capsys):
    out = tmp_path / "reval"
    assert main(["eval", "--benchmark", "reval-ic", "--data", str(shared_data / "benchmarks"), "--limit", "6",
                 "--oracle", "--out", str(out), "--workers", "2"]) == 0
    res = json.loads((out / "results.json").read_text())
    bm = res["benchmark_metrics"]
    assert bm["reval-ic"]["ic_score"] == 100.0 and bm["reval-coverage"]["f1"] == 1.0
    assert "reval-ic.ic_score | 100.00" in capsys.readouterr().out
