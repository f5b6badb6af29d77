"""Text <-> token ids: a lazy, picklable wrapper over a local HF tokenizer dir or a sentencepiece model.

Pure Python (transformers tokenizers / sentencepiece; never jax), because grain workers use it:
only the path is pickled, and each process loads the tokenizer on first use.

    tok = Tokenizer("/models/qwen")            # HF dir (tokenizer.json / tokenizer_config.json)
    tok = Tokenizer("/tok/sp.model")           # sentencepiece model (Qwen-style chat format)
    ids = tok.apply_chat([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    text = tok.decode(ids); tok.eos_id; tok.pad_id; tok.stop_ids
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

IM_START, IM_END, ENDOFTEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)
# Qwen-style ChatML; the same format is rendered in Python for sentencepiece tokenizers.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


class TokenizerError(ValueError):
    """A tokenizer problem; the message names the file and field."""


def render_chatml(messages: Sequence[dict], add_generation_prompt: bool) -> str:
    """The Qwen ChatML text of `messages` (what QWEN_CHAT_TEMPLATE renders)."""
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise TokenizerError(f"message {i} must be a dict with 'role' and 'content', got {m!r}")
        out.append(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n")
    if add_generation_prompt:
        out.append(f"{IM_START}assistant\n")
    return "".join(out)


class Tokenizer:
    """Lazily loaded tokenizer; picklable (only the path travels)."""

    def __init__(self, path: str | Path):
        p = Path(path)
        if p.is_file() and p.suffix == ".model":
            self.kind, self.file = "sentencepiece", p
        elif p.is_dir() and ((p / "tokenizer.json").is_file() or (p / "tokenizer_config.json").is_file()):
            self.kind, self.file = "hf", p
        elif p.is_dir() and (p / "tokenizer.model").is_file():
            self.kind, self.file = "sentencepiece", p / "tokenizer.model"
        else:
            raise TokenizerError(f"{p}: not a tokenizer (expected a directory with tokenizer.json / "
                                 "tokenizer_config.json, or a sentencepiece .model file)")
        self.path = p
        self._impl: Any = None

    # ---- pickling: drop the loaded object ----------------------------------------------------
    def __getstate__(self) -> dict:
        d = dict(self.__dict__)
        d["_impl"] = None
        return d

    def __setstate__(self, d: dict) -> None:
        self.__dict__.update(d)

    def __repr__(self) -> str:
        return f"Tokenizer({str(self.path)!r}, kind={self.kind!r})"

    @property
    def impl(self) -> Any:
        """The loaded backend (transformers tokenizer or SentencePieceProcessor)."""
        if self._impl is None:
            if self.kind == "hf":
                from transformers import AutoTokenizer
                try:
                    self._impl = AutoTokenizer.from_pretrained(str(self.path))
                except (OSError, ValueError) as exc:
                    raise TokenizerError(f"{self.path}: cannot load the tokenizer ({exc})") from None
            else:
                import sentencepiece as spm
                sp = spm.SentencePieceProcessor()
                try:
                    sp.Load(str(self.file))
                except (OSError, RuntimeError) as exc:
                    raise TokenizerError(f"{self.file}: cannot load the sentencepiece model ({exc})") from None
                self._impl = sp
        return self._impl

    # ---- vocabulary ------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Number of ids the tokenizer can produce (added/special tokens included)."""
        if self.kind == "hf":
            return len(self.impl)
        return int(self.impl.GetPieceSize())

    def token_to_id(self, token: str) -> int | None:
        """The id of a single (special) token, or None if it is not in the vocabulary."""
        if self.kind == "hf":
            tid = self.impl.convert_tokens_to_ids(token)
            unk = self.impl.unk_token_id
            return None if tid is None or (tid == unk and token != self.impl.unk_token) else int(tid)
        tid = self.impl.PieceToId(token)
        return None if tid == self.impl.unk_id() and token != self.impl.IdToPiece(tid) else int(tid)

    @property
    def eos_id(self) -> int:
        """End-of-sequence id (HF eos_token; sentencepiece eos, else <|im_end|>/<|endoftext|>)."""
        if self.kind == "hf" and self.impl.eos_token_id is not None:
            return int(self.impl.eos_token_id)
        if self.kind == "sentencepiece" and self.impl.eos_id() >= 0:
            return int(self.impl.eos_id())
        for t in (IM_END, ENDOFTEXT):
            tid = self.token_to_id(t)
            if tid is not None:
                return tid
        raise TokenizerError(f"{self.file}: no eos token (field 'eos_token' unset and no {IM_END})")

    @property
    def pad_id(self) -> int:
        """Padding id (pad token if set, else <|endoftext|>, else eos)."""
        if self.kind == "hf" and self.impl.pad_token_id is not None:
            return int(self.impl.pad_token_id)
        if self.kind == "sentencepiece" and self.impl.pad_id() >= 0:
            return int(self.impl.pad_id())
        tid = self.token_to_id(ENDOFTEXT)
        return tid if tid is not None else self.eos_id

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """Ids that end a generation: eos, <|im_end|>, <|endoftext|>, generation_config eos ids."""
        ids = [self.eos_id]
        for t in (IM_END, ENDOFTEXT):
            tid = self.token_to_id(t)
            if tid is not None:
                ids.append(tid)
        gen = self.path / "generation_config.json" if self.path.is_dir() else None
        if gen is not None and gen.is_file():
            eos = json.loads(gen.read_text()).get("eos_token_id")
            ids.extend(eos if isinstance(eos, list) else [] if eos is None else [eos])
        return tuple(dict.fromkeys(int(i) for i in ids))

    # ---- text <-> ids ------------------------------------------------------------------------
    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of `text` (no BOS/EOS unless add_special_tokens)."""
        if self.kind == "hf":
            return list(self.impl.encode(text, add_special_tokens=add_special_tokens))
        ids = list(self.impl.EncodeAsIds(text))
        if add_special_tokens and self.impl.bos_id() >= 0:
            ids = [self.impl.bos_id()] + ids
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text of `ids` (special tokens dropped unless skip_special_tokens=False)."""
        ids = [int(i) for i in ids]
        if self.kind == "hf":
            return self.impl.decode(ids, skip_special_tokens=skip_special_tokens)
        special = {self.token_to_id(t) for t in SPECIAL_TOKENS} - {None}
        # Decode runs of ordinary ids together: byte-fallback pieces of one character must meet.
        parts: list[str] = []
        run: list[int] = []
        for i in ids:
            if i in special or self.impl.IsControl(i):
                parts.append(self.impl.DecodeIds(run))
                run = []
                if not skip_special_tokens:
                    parts.append(self.impl.IdToPiece(i))
            else:
                run.append(i)
        parts.append(self.impl.DecodeIds(run))
        return "".join(parts)

    def render_chat(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
        """The chat-formatted text (HF chat template; ChatML for sentencepiece)."""
        if self.kind == "hf" and getattr(self.impl, "chat_template", None):
            return self.impl.apply_chat_template(list(messages), tokenize=False,
                                                 add_generation_prompt=add_generation_prompt)
        if self.token_to_id(IM_START) is None:
            raise TokenizerError(f"{self.path}: field 'chat_template' is unset and the vocabulary "
                                 f"has no {IM_START} token to fall back to ChatML")
        return render_chatml(messages, add_generation_prompt)

    def apply_chat(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> list[int]:
        """Token ids of the chat-formatted messages."""
        if self.kind == "hf" and getattr(self.impl, "chat_template", None):
            out = self.impl.apply_chat_template(list(messages), tokenize=True,
                                                add_generation_prompt=add_generation_prompt)
            # transformers 5 returns a BatchEncoding here (4.x returned a list).
            if hasattr(out, "keys") and "input_ids" in out:
                out = out["input_ids"]
            return [int(i) for i in out]
        return self.encode(self.render_chat(messages, add_generation_prompt))

    def check_model_vocab(self, model_vocab_size: int, model_source: str = "model") -> None:
        """Raises TokenizerError if the tokenizer can produce ids the model has no embedding for.

        A model vocab larger than the tokenizer's is fine (Qwen pads its embedding to 151936).
        """
        if self.vocab_size > model_vocab_size:
            raise TokenizerError(
                f"tokenizer {self.file} has {self.vocab_size} tokens but {model_source} field "
                f"'vocab_size' is {model_vocab_size}: the tokenizer does not match the model")
