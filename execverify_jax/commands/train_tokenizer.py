"""`execverify train-tokenizer`: train a small BPE / sentencepiece tokenizer on local text files."""

from __future__ import annotations

import argparse

NAME = "train-tokenizer"
HELP = "train a small tokenizer on local text (HF format)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the flags (no heavy imports)."""
    parser.add_argument("--input", nargs="+", required=True, metavar="TEXTFILE", help="training text files")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--vocab-size", type=int, required=True, help="target vocabulary size")
    parser.add_argument("--kind", choices=["bpe", "sentencepiece"], default="bpe",
                        help="byte-level BPE (HF tokenizer.json, default) or sentencepiece (tokenizer.model)")


def run(args: argparse.Namespace) -> int:
    """Trains and saves; prints the resulting vocabulary size and special ids."""
    from execverify_jax.data.tokenizer import Tokenizer
    from execverify_jax.data.tokenizer_train import train_bpe, train_sentencepiece

    train = train_bpe if args.kind == "bpe" else train_sentencepiece
    out = train(args.input, args.out, args.vocab_size)
    tok = Tokenizer(out)
    print(f"trained {args.kind} tokenizer -> {out}: vocab {tok.vocab_size}, eos {tok.eos_id}, "
          f"pad {tok.pad_id}, stop {list(tok.stop_ids)}")
    return 0
