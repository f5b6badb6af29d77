"""Execution filter: keep candidate programs whose call runs, returns a literal, and is stable.

Replaces the original `filter_by_execution.py` (reference §2.5) with these differences:
- every run goes through the sandbox pool (no `python -c` per program, real limits);
- module-level imports are KEPT (reference §9 item 10: the original dropped them and silently
  lost most `math.*` programs), and so are class definitions and call-free constant assignments;
- the result is checked as a value, in the parent: `ast.literal_eval(repr(v))` must rebuild a
  strictly equal value (same types all the way down), instead of running `assert f(x) == <repr>`
  inside the program;
- determinism is checked with two (`runs`) separate sandbox runs on different workers (different
  hash seeds, so set/dict-order dependence of `str` hashing is caught), compared in the parent;
- every rejection has a typed, countable reason, and the output keeps the input order.

Rejection reasons: `syntax_error`, `no_entry`, `bad_args`, `timeout`, `memory`, `killed`,
`output_overflow`, `error:<ExceptionType>`, `not_literal`, `too_large`, `repr_roundtrip`,
`nondeterministic`. Floats `inf`/`nan` are rejected as `repr_roundtrip` (their repr is not a
Python literal, so a model cannot write the answer as one); `range(...)` and `frozenset(...)`
likewise. Sets are kept (`{1, 2}` and `set()` round-trip) and compared as sets, so their
hash-dependent display order does not count as non-determinism.
"""

from __future__ import annotations

import ast
import collections
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from execverify_jax.data import safe_codec
from execverify_jax.data.sandbox import RUN_CALL, Limits, Outcome, SandboxPool, Status

REPR_CAP = 100_000  # the sandbox child caps reprs at this length; a capped repr cannot round-trip
DEFAULT_LIMITS = Limits(timeout_s=2.0, memory_mb=512, output_bytes=16 * 1024)


@dataclass(frozen=True)
class Candidate:
    """A program and one call of it: `code` defines `entry`; `args` is the argument-list text."""

    code: str
    entry: str
    args: str


@dataclass(frozen=True)
class FilterResult:
    """The verdict for one candidate. `value`/`value_repr` are set when kept."""

    candidate: Candidate
    kept: bool
    reason: str | None = None
    value: Any = None
    value_repr: str | None = None
    detail: str | None = None  # e.g. the error message, for reports

    @property
    def output(self) -> Any:
        """The kept value encoded with safe_codec (the record format for `outputs`)."""
        return safe_codec.to_jsonable(self.value)


def strict_equal(a: Any, b: Any) -> bool:
    """Equality that also requires identical types everywhere (1 != 1.0 != True) and dict order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            strict_equal(ka, kb) and strict_equal(va, vb) for (ka, va), (kb, vb) in zip(a.items(), b.items())
        )
    if isinstance(a, (set, frozenset)):
        # Sets of exact-typed literals: equality plus a type census (so {1} != {True}).
        return a == b and sorted(type(x).__name__ for x in a) == sorted(type(x).__name__ for x in b)
    if isinstance(a, float) and a != a:
        return b != b  # nan
    return a == b


def repr_round_trips(value: Any, value_repr: str) -> bool:
    """True when `ast.literal_eval(value_repr)` rebuilds a value strictly equal to `value`."""
    try:
        rebuilt = ast.literal_eval(value_repr)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False
    return strict_equal(rebuilt, value)


def static_reason(c: Candidate) -> str | None:
    """The rejection reason found without running anything (syntax, entry, argument list), or None."""
    try:
        tree = ast.parse(c.code)
    except (SyntaxError, ValueError):
        return "syntax_error"
    entries = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == c.entry]
    if not entries or not c.entry.isidentifier():
        return "no_entry"
    try:
        call = ast.parse(f"_({c.args})", mode="eval").body
    except (SyntaxError, ValueError):
        return "bad_args"
    # The text must be exactly one argument list: "1), g(2" parses too, as a tuple of calls.
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "_"):
        return "bad_args"
    return None


_static_reason = static_reason  # older name, used by data/trace/batch.py


def _run_reason(out: Outcome) -> str | None:
    if out.status is Status.OK:
        return None
    if out.status is Status.ERROR:
        return f"error:{out.error_type}"
    return out.status.value


def _judge(c: Candidate, first: Outcome, *others: Outcome) -> FilterResult:
    reason = _run_reason(first)
    if reason:
        return FilterResult(c, False, reason, detail=first.error)
    value, value_repr = first.value, first.value_repr or ""
    if not safe_codec.is_literal(value):
        return FilterResult(c, False, "not_literal", detail=value_repr[:200])
    if len(value_repr) >= REPR_CAP:
        return FilterResult(c, False, "too_large", detail=f"repr of {len(value_repr)}+ chars")
    if not repr_round_trips(value, value_repr):
        return FilterResult(c, False, "repr_roundtrip", detail=value_repr[:200])
    for k, other in enumerate(others, start=2):
        if other.status is not Status.OK or not strict_equal(other.value, value):
            detail = f"run {k}: {other.status.value} {other.value_repr or other.error or ''}"[:300]
            return FilterResult(c, False, "nondeterministic", detail=detail)
    return FilterResult(c, True, None, value=value, value_repr=value_repr)


def filter_programs(
    pool: SandboxPool,
    candidates: Sequence[Candidate],
    *,
    limits: Limits | None = None,
    progress: bool = False,
    runs: int = 2,
) -> list[FilterResult]:
    """Judges every candidate with `runs` sandbox runs each (>= 2 checks determinism; 1 skips
    that check); results are in input order."""
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs!r}")
    lim = limits or DEFAULT_LIMITS
    static = [static_reason(c) for c in candidates]
    futures: dict[int, list[Any]] = {}
    for i, (c, reason) in enumerate(zip(candidates, static)):
        if reason is None:
            payload = {"code": c.code, "call": f"{c.entry}({c.args})"}
            # Consecutive workers -> different hash seeds (when the pool has >= 2 workers).
            futures[i] = [pool.submit(RUN_CALL, payload, lim, worker=runs * i + r) for r in range(runs)]
    results: list[FilterResult] = []
    it: Iterable[int] = range(len(candidates))
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="exec filter", unit="prog")
    for i in it:
        c = candidates[i]
        if static[i] is not None:
            results.append(FilterResult(c, False, static[i]))
            continue
        results.append(_judge(c, *(f.result() for f in futures[i])))
    return results


def rejection_counts(results: Iterable[FilterResult]) -> collections.Counter:
    """Counts rejection reasons (kept programs are counted under "kept")."""
    return collections.Counter("kept" if r.kept else r.reason for r in results)


_KEPT_STATEMENTS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def extract_candidate(source: str) -> Candidate | str:
    """Splits a generated script (`def`s + one `print(f(args))`) into a Candidate, as §2.5 does.

    Returns a rejection reason (`syntax_error`, `no_function`, `no_print_call`,
    `multiple_print_calls`) instead when the script does not have that shape. Kept module-level
    statements: imports, function and class definitions, and assignments without calls.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return "syntax_error"
    if not any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in tree.body):
        return "no_function"
    prints = [
        n
        for n in tree.body
        if isinstance(n, ast.Expr)
        and isinstance(n.value, ast.Call)
        and isinstance(n.value.func, ast.Name)
        and n.value.func.id == "print"
        and len(n.value.args) == 1
        and not n.value.keywords
        and isinstance(n.value.args[0], ast.Call)
        and isinstance(n.value.args[0].func, ast.Name)
    ]
    if not prints:
        return "no_print_call"
    if len(prints) > 1:
        return "multiple_print_calls"
    call = prints[0].value.args[0]
    parts = call.args + [kw for kw in call.keywords]
    args = ", ".join(ast.get_source_segment(source, p) or "" for p in parts)
    lines = source.splitlines()
    kept = []
    for node in tree.body:
        keep = isinstance(node, _KEPT_STATEMENTS) or (
            isinstance(node, (ast.Assign, ast.AnnAssign)) and not any(isinstance(x, ast.Call) for x in ast.walk(node))
        )
        if keep:
            # Whole lines, from the first decorator (not part of node.lineno) to the end.
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            kept.append("\n".join(lines[start - 1 : node.end_lineno]))
    code = "\n\n".join(kept) + "\n"
    return Candidate(code=code, entry=call.func.id, args=args)
