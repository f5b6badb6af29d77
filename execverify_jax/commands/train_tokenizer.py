"""`execverify train-tokenizer`: train a small BPE / sentencepiece tokenizer on local text files."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Literal

from execverify_jax.commands import add_config_args, load_options
from execverify_jax.config_loader import check_int

NAME = "train-tokenizer"
HELP = "train a small tokenizer on local text (HF format)"


@dataclass(frozen=True)
class TokenizerOptions:
    """`execverify train-tokenizer` options (YAML keys; the flags are shorthands)."""

    input: tuple[str, ...]  # training text files
    out: str  # output directory
    vocab_size: int  # target vocabulary size
    kind: Literal["bpe", "sentencepiece"] = "bpe"  # byte-level BPE (tokenizer.json) or sentencepiece

    def __post_init__(self) -> None:
        check_int("vocab_size", self.vocab_size, 1)


FLAGS = {"input": "input", "out": "out", "vocab_size": "vocab_size", "kind": "kind"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the flags (no heavy imports)."""
    add_config_args(parser, example="vocab_size=4096")
    parser.add_argument("--input", nargs="+", metavar="TEXTFILE", help="training text files; required")
    parser.add_argument("--out", help="output directory; required")
    parser.add_argument("--vocab-size", type=int, help="target vocabulary size; required")
    parser.add_argument("--kind", choices=["bpe", "sentencepiece"],
                        help="byte-level BPE (HF tokenizer.json, default) or sentencepiece (tokenizer.model)")


def run(args: argparse.Namespace) -> int:
    """Trains and saves; prints the resulting vocabulary size and special ids."""
    from execverify_jax.data.tokenizer import Tokenizer
    from execverify_jax.data.tokenizer_train import train_bpe, train_sentencepiece

    opts = load_options(TokenizerOptions, args, "train-tokenizer", FLAGS)
    if opts is None:
        return 2
    train = train_bpe if opts.kind == "bpe" else train_sentencepiece
    out = train(list(opts.input), opts.out, opts.vocab_size)
    tok = Tokenizer(out)
    print(f"trained {opts.kind} tokenizer -> {out}: vocab {tok.vocab_size}, eos {tok.eos_id}, "
          f"pad {tok.pad_id}, stop {list(tok.stop_ids)}")
    return 0
