"""`execverify run`: run one call of a program in the sandbox and print the outcome.

Exit status 0 when the call returned a value, 1 for any other outcome, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys

from execverify_jax.commands import read_code

NAME = "run"
HELP = "run one call of a program in the sandbox and print the outcome"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the options (cheap: no sandbox import here)."""
    parser.add_argument("--code", required=True, metavar="FILE", help="Python file defining the function ('-' reads stdin)")
    parser.add_argument("--call", required=True, help="call expression to evaluate, e.g. \"f(1, 'a')\"")
    parser.add_argument("--timeout", type=float, default=5.0, metavar="S", help="wall-clock limit in seconds (default 5)")
    parser.add_argument("--memory-mb", type=int, default=1024, metavar="M", help="address-space limit in MiB (default 1024)")
    parser.add_argument("--json", action="store_true", help="print the full outcome as JSON")
    parser.add_argument("--capabilities", action="store_true", help="also print which isolation layers are active")


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

    code = read_code(args.code, "run")
    if code is None:
        return 2
    try:
        limits = Limits(timeout_s=args.timeout, memory_mb=args.memory_mb)
    except ValueError as exc:
        print(f"execverify run: {exc}", file=sys.stderr)
        return 2
    with SandboxPool(1, limits=limits) as pool:
        outcome = pool.run(RUN_CALL, {"code": code, "call": args.call})
        caps = pool.capabilities if args.capabilities else None
    data = outcome.to_dict()
    if args.json:
        if caps is not None:
            data["capabilities"] = caps
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print(_human(data, caps))
    return 0 if outcome.ok else 1
