"""Train a small tokenizer on local text files and save it in Hugging Face format.

Two kinds:
  bpe            byte-level BPE (tokenizers library), lossless on any text;
  sentencepiece  sentencepiece BPE with byte fallback, saved as `tokenizer.model` (the file name HF
                 Llama-family directories use; `Tokenizer` loads it with the ChatML format).
Both get the special tokens <|endoftext|> <|im_start|> <|im_end|> (ids 0, 1, 2 for bpe), a
Qwen-style ChatML chat template, eos = <|im_end|> and pad = <|endoftext|>, like Qwen2.5-Instruct.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterator, Sequence

from execverify_jax.data.tokenizer import ENDOFTEXT, IM_END, QWEN_CHAT_TEMPLATE, SPECIAL_TOKENS


def iter_text(paths: Sequence[str | Path], chunk_chars: int = 1 << 16) -> Iterator[str]:
    """Streams the files as text chunks of about `chunk_chars` (whole lines)."""
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer training input {path} does not exist")
        buf: list[str] = []
        size = 0
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                buf.append(line)
                size += len(line)
                if size >= chunk_chars:
                    yield "".join(buf)
                    buf, size = [], 0
        if buf:
            yield "".join(buf)


def _wrap_and_save(hf_tok, out: Path) -> Path:
    hf_tok.chat_template = QWEN_CHAT_TEMPLATE
    out.mkdir(parents=True, exist_ok=True)
    hf_tok.save_pretrained(str(out))
    return out


def train_bpe(paths: Sequence[str | Path], out_dir: str | Path, vocab_size: int) -> Path:
    """Byte-level BPE (lossless round trip) saved as an HF tokenizer directory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must be >= {256 + len(SPECIAL_TOKENS)} for byte-level BPE, got {vocab_size!r}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(iter_text(paths), trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=IM_END, pad_token=ENDOFTEXT,
                                 additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in (IM_END, ENDOFTEXT)])
    return _wrap_and_save(hf, Path(out_dir))


def train_sentencepiece(paths: Sequence[str | Path], out_dir: str | Path, vocab_size: int) -> Path:
    """Sentencepiece BPE with byte fallback, written as `<out_dir>/tokenizer.model`."""
    import sentencepiece as spm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    # identity normalisation + no whitespace folding: code must round-trip exactly.
    spm.SentencePieceTrainer.train(
        sentence_iterator=(line for chunk in iter_text(paths) for line in chunk.splitlines()),
        model_writer=model, vocab_size=vocab_size, model_type="bpe", byte_fallback=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        split_digits=True, add_dummy_prefix=False, user_defined_symbols=list(SPECIAL_TOKENS), hard_vocab_limit=False,
        unk_id=3, bos_id=-1, eos_id=-1, pad_id=-1, minloglevel=2)
    (out / "tokenizer.model").write_bytes(model.getvalue())
    return out
