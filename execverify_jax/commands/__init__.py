"""execverify_jax.commands: one module per CLI subcommand (see execverify_jax/cli.py)."""

from __future__ import annotations

import sys
from pathlib import Path


def read_code(path: str, command: str) -> str | None:
    """The program text of `--code PATH` (`-` = stdin); None after printing why it is unreadable."""
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"execverify {command}: cannot read --code {path!r}: {exc}", file=sys.stderr)
        return None
