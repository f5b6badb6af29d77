"""execverify_jax.commands: one module per CLI subcommand (see execverify_jax/cli.py).

Every command takes its options one way: `--config FILE` (YAML, optional unless the command says
otherwise; `base:` includes allowed) plus `--set key=value` overrides, filled into the command's
frozen dataclass by `execverify_jax.config_loader`. A command's other flags are shorthands for
config keys (`--timeout 3` = `--set timeout_s=3`): the file is read first, then the flags given
on the command line, then `--set`, so `--set` wins.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Mapping, TypeVar

T = TypeVar("T")


def add_config_args(parser: argparse.ArgumentParser, *, default: str | None = None, required: bool = False,
                    what: str = "the command's options", example: str = "KEY=VALUE") -> None:
    """Adds `--config FILE` and the repeatable `--set KEY=VALUE` (into `args.overrides`)."""
    shown = f" (default: {default})" if default else ""
    parser.add_argument("--config", default=default, required=required, metavar="YAML",
                        help=f"YAML file with {what}{shown}; `base: other.yaml` includes another file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override one config value, e.g. --set {example} (repeatable; applied last)")


def load_options(cls: type[T], args: argparse.Namespace, command: str,
                 flags: Mapping[str, str] | None = None) -> T | None:
    """`cls` from `--config`, the flags given (`flags`: argparse dest -> dotted config key; a flag
    left at its default None is not applied) and `--set`; on a config error prints it and
    returns None (the command then exits with status 2)."""
    from execverify_jax.config_loader import ConfigError, load

    values: dict[str, Any] = {}
    for dest, key in (flags or {}).items():
        value = getattr(args, dest, None)
        if value is not None:
            values[key] = value
    try:
        return load(cls, args.config, args.overrides, values)
    except ConfigError as exc:
        print(f"execverify {command}: config error: {exc}", file=sys.stderr)
        return None


def read_code(path: str, command: str) -> str | None:
    """The program text of `--code PATH` (`-` = stdin); None after printing why it is unreadable."""
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"execverify {command}: cannot read --code {path!r}: {exc}", file=sys.stderr)
        return None
