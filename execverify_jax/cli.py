"""The `execverify` command line: one subcommand per module in `execverify_jax/commands/`.

Each command module defines `NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`.
Modules are imported only when their command runs, so `execverify run` never loads jax.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from execverify_jax import compile_cache

# (command name, module under execverify_jax.commands, one-line help). Order = `--help` order.
COMMANDS: list[tuple[str, str, str]] = [
    ("demo", "demo", "the embedded end-to-end CPU demo (the main job)"),
    ("run", "run", "run one call of a program in the sandbox and print the outcome"),
    ("trace", "trace", "trace one call of a program and print its steps"),
    ("synth", "synth", "synthesize programs and questions into dataset shards"),
    ("score", "score", "score model responses against question records"),
    ("train-tokenizer", "train_tokenizer", "train a small tokenizer on local text (HF format)"),
    ("import-hf", "import_hf", "import a Hugging Face checkpoint directory into an Orbax checkpoint"),
    ("export-hf", "export_hf", "export an Orbax checkpoint to a Hugging Face directory"),
    ("generate", "generate", "generate text with a checkpoint or HF directory"),
    ("sft", "sft", "supervised warm-up"),
    ("train", "train", "GRPO training (stage I or II) from a config"),
    ("filter-difficulty", "filter_difficulty", "keep questions by the policy's own pass rate"),
    ("eval", "eval", "evaluate on CRUXEval, REval, HumanEval and more"),
    ("plot", "plot", "plot a run's metrics to PNG"),
]


def _available() -> list[tuple[str, str, str]]:
    found = []
    for name, module, help_text in COMMANDS:
        spec = importlib.util.find_spec(f"execverify_jax.commands.{module}")
        if spec is not None:
            found.append((name, module, help_text))
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="execverify", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module, help_text in _available():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        p.add_argument("--compile-cache", default=None, metavar="DIR|off",
                       help="JAX persistent compilation cache directory, or 'off' (default: "
                            "$EXECVERIFY_COMPILE_CACHE, else ~/.cache/execverify/jax-compile)")
        # add_arguments is cheap: command modules keep heavy imports inside run().
        importlib.import_module(f"execverify_jax.commands.{module}").add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help()
        return 2
    # Before the command imports jax: every command reuses compiled executables across runs.
    compile_cache.enable(args.compile_cache)
    mod = importlib.import_module(f"execverify_jax.commands.{args._module}")
    return int(mod.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
