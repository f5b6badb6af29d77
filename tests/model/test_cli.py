"""The model-side CLI commands end to end, in process: train-tokenizer, import/export-hf, generate."""

from __future__ import annotations

import json

import pytest

from execverify_jax import cli


def test_commands_have_help(capsys):
    for name in ("train-tokenizer", "import-hf", "export-hf", "generate"):
        with pytest.raises(SystemExit) as exc:
            cli.main([name, "--help"])
        assert exc.value.code == 0
        assert "usage" in capsys.readouterr().out


def test_tokenizer_import_export_generate(tmp_path, qwen_dir, text_files, capsys):
    tok = tmp_path / "tok"
    assert cli.main(["train-tokenizer", "--input", *map(str, text_files[:5]), "--out", str(tok),
                     "--vocab-size", "300"]) == 0
    assert (tok / "tokenizer.json").is_file()
    ckpt = tmp_path / "ckpt"
    assert cli.main(["import-hf", "--hf", str(qwen_dir), "--out", str(ckpt)]) == 0
    assert cli.main(["import-hf", "--hf", str(qwen_dir), "--out", str(ckpt)]) == 2  # no overwrite
    out = tmp_path / "hf"
    assert cli.main(["export-hf", "--ckpt", str(ckpt), "--out", str(out), "--dtype", "fp32",
                     "--tokenizer", str(tok)]) == 0
    assert json.loads((out / "config.json").read_text())["architectures"] == ["Qwen2ForCausalLM"]
    capsys.readouterr()
    assert cli.main(["generate", "--model", str(out), "--prompt", "def f(x):", "--max-new-tokens", "5",
                     "--greedy"]) == 0
    greedy_hf = capsys.readouterr().out
    assert cli.main(["generate", "--model", str(ckpt), "--tokenizer", str(tok), "--prompt", "def f(x):",
                     "--max-new-tokens", "5", "--greedy"]) == 0
    assert capsys.readouterr().out == greedy_hf  # same weights, same text
    # The default generator is the continuous engine; the static sampler gives the same greedy text.
    assert cli.main(["generate", "--model", str(ckpt), "--tokenizer", str(tok), "--prompt", "def f(x):",
                     "--max-new-tokens", "5", "--greedy", "--engine", "static"]) == 0
    assert capsys.readouterr().out == greedy_hf
    assert cli.main(["generate", "--model", str(ckpt), "--tokenizer", str(tok), "--prompt", "def f(x):",
                     "--max-new-tokens", "5", "--greedy", "--dtype", "bf16-matmul"]) == 0
    assert capsys.readouterr().out.strip()  # the bf16-matmul mode runs end to end


def test_generate_rejects_mismatched_tokenizer(tmp_path, qwen_dir, text_files):
    from execverify_jax.data.tokenizer import TokenizerError
    from execverify_jax.data.tokenizer_train import train_bpe
    big = train_bpe(text_files, tmp_path / "big", 600)  # the model has 512 embeddings
    with pytest.raises(TokenizerError, match=r"600 tokens.*config\.json.*'vocab_size' is 512"):
        cli.main(["generate", "--model", str(qwen_dir), "--tokenizer", str(big), "--prompt", "x"])


def test_import_gguf_bad_input_is_a_clean_error(tmp_path, capsys):
    # The real-model path is tested in test_real_smollm2.py (slow, needs the test extra).
    assert cli.main(["import-hf", "--gguf", str(tmp_path / "missing.gguf"), "--out", str(tmp_path / "c")]) == 2
    assert "missing.gguf" in capsys.readouterr().out
    assert cli.main(["import-hf", "--gguf", str(tmp_path / "m.gguf"), "--out", str(tmp_path / "c"),
                     "--param-dtype", "float16"]) == 2
    assert "--param-dtype" in capsys.readouterr().out
