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
from dataclasses import dataclass

from execverify_jax.commands import add_config_args, load_options, read_code

NAME = "trace"
HELP = "trace one call of a program and print its steps"


@dataclass(frozen=True)
class TraceOptions:
    """`execverify trace` options (YAML keys; the flags are shorthands)."""

    code: str  # Python file defining the function ('-' = stdin)
    call: str  # the call to trace; the entry is the called name
    json: bool = False  # print the full trace (docs/TRACE.md) as JSON
    timeout_s: float = 5.0  # sandbox wall-clock limit
    max_steps: int = 10_000
    max_value_chars: int = 10_000  # largest value (approximate repr length) before the trace is truncated
    sandbox: bool = True  # false: trace in this process (debugging only: runs the code unconfined)


FLAGS = {"code": "code", "call": "call", "json": "json", "timeout": "timeout_s", "max_steps": "max_steps",
         "max_value_chars": "max_value_chars", "sandbox": "sandbox"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the options (cheap: no sandbox import here)."""
    add_config_args(parser, example="max_steps=500")
    parser.add_argument("--code", metavar="FILE", help="Python file defining the function ('-' reads stdin); required")
    parser.add_argument("--call", help="the call to trace, e.g. \"f(1, 'a')\" (the entry is the called name); required")
    parser.add_argument("--json", action="store_true", default=None, help="print the full trace (docs/TRACE.md) as JSON")
    parser.add_argument("--timeout", type=float, metavar="S", help="sandbox wall-clock limit in seconds (default 5)")
    parser.add_argument("--max-steps", type=int, metavar="N", help="step limit (default 10000)")
    parser.add_argument("--max-value-chars", type=int, metavar="N",
                        help="largest value (approximate repr length) before the trace counts as truncated "
                             "(default 10000)")
    parser.add_argument("--no-sandbox", dest="sandbox", action="store_const", const=False, default=None,
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
    cfg = load_options(TraceOptions, args, "trace", FLAGS)
    if cfg is None:
        return 2
    code = read_code(cfg.code, "trace")
    if code is None:
        return 2
    try:
        entry, args_src = parse_call(cfg.call)
    except ValueError as exc:
        print(f"execverify trace: {exc}", file=sys.stderr)
        return 2
    opts = {"max_steps": cfg.max_steps, "max_value_chars": cfg.max_value_chars}
    if not cfg.sandbox:
        from execverify_jax.data.trace.tracer import trace_program

        trace = trace_program(code, entry, args_src, max_seconds=cfg.timeout_s, **opts)
    else:
        from execverify_jax.data.sandbox import Limits, SandboxPool
        from execverify_jax.data.trace.tracer import TARGET, trace_in_sandbox

        try:
            limits = Limits(timeout_s=cfg.timeout_s)
        except ValueError as exc:
            print(f"execverify trace: {exc}", file=sys.stderr)
            return 2
        with SandboxPool(1, limits=limits, preload=(TARGET,)) as pool:
            trace = trace_in_sandbox(pool, code, entry, args_src, limits=limits, **opts)
    if cfg.json:
        print(json.dumps(trace, ensure_ascii=False, indent=1))
    else:
        print(render_steps(trace))
    return 0 if trace["status"] == "ok" else 1
