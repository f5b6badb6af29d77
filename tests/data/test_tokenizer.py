"""Tokenizer interface and training: round trips, chat ids, special ids, pickling, errors."""

from __future__ import annotations

import json
import pickle

import pytest

from execverify_jax.data.tokenizer import (IM_END, IM_START, Tokenizer, TokenizerError,
                                           render_chatml)
from execverify_jax.data.tokenizer_train import train_sentencepiece

TEXT = "def f(x):\n\treturn [x ** 2 for x in range(10)]  # é ü 中文 🙂\n"
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "f(3)?"}]


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory, text_files):
    return train_sentencepiece(text_files, tmp_path_factory.mktemp("sp"), 400) / "tokenizer.model"


@pytest.mark.parametrize("which", ["bpe", "sp"])
def test_round_trip_chat_and_special_ids(which, request, bpe_dir, sp_model):
    tok = Tokenizer(bpe_dir if which == "bpe" else sp_model)
    ids = tok.encode(TEXT)
    assert tok.decode(ids) == TEXT  # lossless, unicode and tabs included
    assert 256 < tok.vocab_size <= 400
    assert tok.eos_id == tok.token_to_id(IM_END)
    assert tok.token_to_id("<|endoftext|>") == tok.pad_id
    assert set(tok.stop_ids) >= {tok.eos_id, tok.pad_id}
    chat = tok.apply_chat(MESSAGES, add_generation_prompt=True)
    assert all(isinstance(i, int) for i in chat)
    assert tok.decode(chat, skip_special_tokens=False) == render_chatml(MESSAGES, True)
    assert chat.count(tok.token_to_id(IM_START)) == 3  # atomic special tokens
    no_gen = tok.apply_chat(MESSAGES, add_generation_prompt=False)
    assert chat[: len(no_gen)] == no_gen and len(chat) > len(no_gen)
    assert IM_START not in tok.decode(chat)  # skipped by default
    wrapped = [tok.token_to_id(IM_START)] + ids + [tok.eos_id]
    assert tok.decode(wrapped, skip_special_tokens=False) == IM_START + TEXT + IM_END


def test_pickle_carries_only_the_path(bpe_dir):
    tok = Tokenizer(bpe_dir)
    ids = tok.encode(TEXT)  # loads the backend
    blob = pickle.dumps(tok)
    assert len(blob) < 1000
    clone = pickle.loads(blob)
    assert clone._impl is None and clone.encode(TEXT) == ids


def test_hf_chat_template_is_used(bpe_dir, tmp_path):
    """transformers 5 returns a BatchEncoding from apply_chat_template(tokenize=True)."""
    import shutil
    d = tmp_path / "tok"
    shutil.copytree(bpe_dir, d)
    (d / "chat_template.jinja").write_text(
        "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}[assistant]{% endif %}")
    tok = Tokenizer(d)
    assert tok.render_chat(MESSAGES) == "[system]be brief[user]f(3)?[assistant]"
    assert tok.apply_chat(MESSAGES) == tok.encode("[system]be brief[user]f(3)?[assistant]")


def test_generation_config_eos_ids_are_stop_ids(bpe_dir, tmp_path):
    import shutil
    d = tmp_path / "tok"
    shutil.copytree(bpe_dir, d)
    (d / "generation_config.json").write_text(json.dumps({"eos_token_id": [7, 9]}))
    assert {7, 9} <= set(Tokenizer(d).stop_ids)


def test_errors_name_the_path_and_field(tmp_path, bpe_dir):
    with pytest.raises(TokenizerError, match="not a tokenizer"):
        Tokenizer(tmp_path)
    tok = Tokenizer(bpe_dir)
    with pytest.raises(TokenizerError, match=r"tokenizer .*bpe.* has 400 tokens .*config\.json.*'vocab_size' is 256"):
        tok.check_model_vocab(256, "model/config.json")
    tok.check_model_vocab(512)  # a larger (padded) model vocab is fine
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(TokenizerError, match="bad.model"):
        Tokenizer(bad).encode("x")


def test_train_errors(tmp_path, text_files):
    from execverify_jax.data.tokenizer_train import train_bpe
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        train_bpe([tmp_path / "missing.txt"], tmp_path / "o", 400)
    with pytest.raises(ValueError, match="vocab_size"):
        train_bpe(text_files, tmp_path / "o", 100)
