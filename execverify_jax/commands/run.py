"""`execverify run`: run one call of a program in the sandbox and print the outcome.

Exit status 0 when the call returned a value, 1 for any other outcome, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

from execverify_jax.commands import add_config_args, load_options, read_code

NAME = "run"
HELP = "run one call of a program in the sandbox and print the outcome"


@dataclass(frozen=True)
class RunOptions:
    """`execverify run` options (YAML keys; the flags are shorthands)."""

    code: str  # Python file defining the function ('-' = stdin)
    call: str  # call expression to evaluate
    timeout_s: float = 5.0  # wall-clock limit
    memory_mb: int = 1024  # address-space limit
    json: bool = False  # print the full outcome as JSON
    capabilities: bool = False  # also print which isolation layers are active


FLAGS = {"code": "code", "call": "call", "timeout": "timeout_s", "memory_mb": "memory_mb", "json": "json",
         "capabilities": "capabilities"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the options (cheap: no sandbox import here)."""
    add_config_args(parser, example="memory_mb=512")
    parser.add_argument("--code", metavar="FILE", help="Python file defining the function ('-' reads stdin); required")
    parser.add_argument("--call", help="call expression to evaluate, e.g. \"f(1, 'a')\"; required")
    parser.add_argument("--timeout", type=float, metavar="S", help="wall-clock limit in seconds (default 5)")
    parser.add_argument("--memory-mb", type=int, metavar="M", help="address-space limit in MiB (default 1024)")
    parser.add_argument("--json", action="store_true", default=None, help="print the full outcome as JSON")
    parser.add_argument("--capabilities", action="store_true", default=None,
                        help="also print which isolation layers are active")


def _human(out: dict, caps: dict | None) -> str:
    lines = [f"status:   {out['status']}  ({out['duration_s'] * 1000:.1f} ms)"]
    if out["status"] == "ok":
        lines.append(f"value:    {out['value_repr']}")
    else:
        lines.append(f"error:    {out['error_type']}: {out['error']}")
    for stream in ("stdout", "stderr"):
        if out[stream]:
            text = out[stream].rstrip("\n").replace("\n", "\n          ")
            lines.append(f"{stream}:   {text}")
    if caps is not None:
        active = sorted(k for k, v in caps.items() if v is True)
        lines.append(f"isolation: {', '.join(active)}")
        lines.extend(f"note:     {n}" for n in caps.get("notes", []))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Runs the call and prints the outcome."""
    from execverify_jax.data.sandbox import RUN_CALL, Limits, SandboxPool

    opts = load_options(RunOptions, args, "run", FLAGS)
    if opts is None:
        return 2
    code = read_code(opts.code, "run")
    if code is None:
        return 2
    try:
        limits = Limits(timeout_s=opts.timeout_s, memory_mb=opts.memory_mb)
    except ValueError as exc:
        print(f"execverify run: {exc}", file=sys.stderr)
        return 2
    with SandboxPool(1, limits=limits) as pool:
        outcome = pool.run(RUN_CALL, {"code": code, "call": opts.call})
        caps = pool.capabilities if opts.capabilities else None
    data = outcome.to_dict()
    if opts.json:
        if caps is not None:
            data["capabilities"] = caps
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print(_human(data, caps))
    return 0 if outcome.ok else 1
