"""`execverify trace`: trace one call of a program (in the sandbox) and print its steps.

Human output: one line per step, `line  func#frame  k  changed vars` (k = the per-frame
occurrence count of the line; see docs/TRACE.md), then the return value or exception.
`--json` prints the full trace dict. Exit status 0 when the call returned normally, 1 for any
other outcome (exception, truncated, sandbox failure), 2 for usage errors.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys

from execverify_jax.commands import read_code

NAME = "trace"
HELP = "trace one call of a program and print its steps"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the options (cheap: no sandbox import here)."""
    parser.add_argument("--code", required=True, metavar="FILE", help="Python file defining the function ('-' reads stdin)")
    parser.add_argument("--call", required=True, help="the call to trace, e.g. \"f(1, 'a')\" (the entry is the called name)")
    parser.add_argument("--json", action="store_true", help="print the full trace (docs/TRACE.md) as JSON")
    parser.add_argument("--timeout", type=float, default=5.0, metavar="S", help="sandbox wall-clock limit in seconds (default 5)")
    parser.add_argument("--max-steps", type=int, default=10_000, metavar="N", help="step limit (default 10000)")
    parser.add_argument("--max-value-chars", type=int, default=10_000, metavar="N",
                        help="largest value (approximate repr length) before the trace counts as truncated")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="trace in this process (debugging only: runs the code unconfined)")


def parse_call(call: str) -> tuple[str, str]:
    """`"f(1, 'a')"` -> `("f", "1, 'a'")`; raises ValueError for anything but `name(args)`."""
    text = call.strip()
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError as exc:
        raise ValueError(f"--call is not a Python expression: {exc.msg}") from None
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ValueError("--call must be a call of a function by name, e.g. f(1, 2)")
    if "\n" in text:
        raise ValueError("--call must be on one line")
    rest = text[node.func.end_col_offset:].strip()
    return node.func.id, rest[1:-1].strip()


def _show(rec: dict) -> str:
    from execverify_jax.data import safe_codec

    value = safe_codec.from_jsonable(rec["value"])
    if isinstance(value, safe_codec.Opaque):
        return f"<{value.type_name}>"
    return safe_codec.short_repr(value, 80)


def render_steps(trace: dict) -> str:
    """The human-readable step listing."""
    frames = trace["frames"]
    out = [f"status: {trace['status']}" + (f" ({trace['truncated_reason']})" if trace.get("truncated") else "")
           + f"   steps: {len(trace['steps'])}   frames: {len(frames)}",
           f"{'line':>4}  {'func#frame':<16} {'k':>3}  changed"]
    for s in trace["steps"]:
        fr = frames[s["frame"]]
        changed = ", ".join(f"{k}={_show(v)}" for k, v in s["changed"].items())
        extra = []
        if "returned" in s:
            extra.append(f"-> return {_show(s['returned'])}")
        if "exception" in s:
            extra.append(f"!! {s['exception']['type']}: {s['exception']['message']}")
        if s.get("deleted"):
            extra.append("del " + ", ".join(s["deleted"]))
        text = "  ".join([changed] + extra).strip()
        out.append(f"{s['line']:>4}  {fr['func'] + '#' + str(fr['id']):<16} {s['k']:>3}  {text}".rstrip())
    if trace["status"] == "ok":
        out.append(f"return: {_show(trace['return'])}   ({trace['return']['type']})")
    elif trace.get("exception"):
        out.append(f"exception: {trace['exception']['type']}: {trace['exception']['message']}")
    elif trace.get("error"):
        out.append(f"error: {trace['error']['type']}: {trace['error']['message']}")
    if trace.get("stdout"):
        out.append("stdout: " + trace["stdout"].rstrip("\n").replace("\n", "\n        "))
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    """Traces the call and prints the steps (or the JSON trace)."""
    code = read_code(args.code, "trace")
    if code is None:
        return 2
    try:
        entry, args_src = parse_call(args.call)
    except ValueError as exc:
        print(f"execverify trace: {exc}", file=sys.stderr)
        return 2
    opts = {"max_steps": args.max_steps, "max_value_chars": args.max_value_chars}
    if args.no_sandbox:
        from execverify_jax.data.trace.tracer import trace_program

        trace = trace_program(code, entry, args_src, max_seconds=args.timeout, **opts)
    else:
        from execverify_jax.data.sandbox import Limits, SandboxPool
        from execverify_jax.data.trace.tracer import TARGET, trace_in_sandbox

        try:
            limits = Limits(timeout_s=args.timeout)
        except ValueError as exc:
            print(f"execverify trace: {exc}", file=sys.stderr)
            return 2
        with SandboxPool(1, limits=limits, preload=(TARGET,)) as pool:
            trace = trace_in_sandbox(pool, code, entry, args_src, limits=limits, **opts)
    if args.json:
        print(json.dumps(trace, ensure_ascii=False, indent=1))
    else:
        print(render_steps(trace))
    return 0 if trace["status"] == "ok" else 1
