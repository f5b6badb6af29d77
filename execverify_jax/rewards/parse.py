"""Bounded, execution-free parsing of model answers: `<answer>` spans, assertions and literals.

Nothing here runs model text. Assertions are parsed with `ast`; literal values are built by
`literal_value`, a small evaluator over the AST that accepts only literal node types (plus a
few whitelisted constructors it evaluates itself, such as `frozenset({1})` and `range(3)`), and
every step is bounded (characters, nodes, nesting) so a hostile megabyte response costs
microseconds, not seconds.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from execverify_jax.rewards.config import RewardConfig

ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"

# Any exception ast.parse / our evaluator can raise on hostile input (lone surrogates raise
# UnicodeEncodeError inside compile; pathological nesting raises RecursionError/MemoryError).
PARSE_ERRORS = (SyntaxError, ValueError, TypeError, UnicodeError, RecursionError, MemoryError,
                OverflowError, AttributeError, KeyError, IndexError)

_FENCE_RE = re.compile(r"^\s*```\s*(?:python3?|py)?\s*$", re.IGNORECASE)
_CODE_OPEN_RE = re.compile(r"```[ \t]*(?:python3?|py)[ \t]*\r?\n", re.IGNORECASE)
_ASSERT_LINE_RE = re.compile(r"^\s*assert\b")


class LiteralError(ValueError):
    """The text is not an accepted literal (or exceeds a bound)."""


def to_text(response: str | bytes | None) -> str:
    """Model output as `str`: bytes are decoded as UTF-8 with replacement (never raises)."""
    if response is None:
        return ""
    if isinstance(response, (bytes, bytearray)):
        return bytes(response).decode("utf-8", errors="replace")
    if not isinstance(response, str):
        return ""
    return response


def _tail_text(response: str | bytes | None, max_chars: int) -> str:
    # Bytes: only the part from the last b"<answer>" on is decoded, so a megabyte of garbage
    # costs no more than a well-formed response (a UTF-8 character is at most 4 bytes).
    if isinstance(response, (bytes, bytearray)):
        start = bytes(response).rfind(ANSWER_OPEN.encode(), max(0, len(response) - 4 * max_chars))
        response = b"" if start < 0 else bytes(response[start:])
    text = to_text(response)
    return text[-max_chars:] if len(text) > max_chars else text



def extract_answer(response: str | bytes | None, cfg: RewardConfig) -> str | None:
    """The stripped text of the last `<answer>...</answer>` span, or None when there is none.

    Only the last `cfg.max_response_chars` characters are searched (the span is at the end of a
    well-formed response). A span longer than `cfg.max_answer_chars` is treated as absent.
    """
    text = _tail_text(response, cfg.max_response_chars)
    start = text.rfind(ANSWER_OPEN)
    if start < 0:
        return None
    start += len(ANSWER_OPEN)
    end = text.find(ANSWER_CLOSE, start)
    if end < 0 or end - start > cfg.max_answer_chars:
        return None
    return text[start:end].strip()


def has_answer_tags(response: str | bytes | None, cfg: RewardConfig) -> bool:
    """True when the response contains a (bounded) `<answer>...</answer>` span."""
    return extract_answer(response, cfg) is not None


def answer_lines(answer: str) -> list[str]:
    """Non-blank lines of an answer, with code-fence lines (```python, ```) removed.

    Leading indentation is kept (strict next-statement grading needs it); trailing `\\r` and
    spaces are dropped.
    """
    out = []
    for line in answer.split("\n"):
        line = line.rstrip()
        if not line.strip() or _FENCE_RE.match(line):
            continue
        out.append(line)
    return out


def answer_line_spans(response: str | bytes | None, cfg: RewardConfig) -> list[tuple[int, int]] | None:
    """[start, end) character offsets in `response` of each line `answer_lines(extract_answer(...))`
    returns, in the same order (leading indentation included), or None when there is no answer
    span or `response` is bytes (its offsets would be into a decoded tail). Stepwise credit maps
    these spans to the tokens that wrote each answer line."""
    if not isinstance(response, str) or extract_answer(response, cfg) is None:
        return None
    tail = _tail_text(response, cfg.max_response_chars)
    shift = len(response) - len(tail)
    start = tail.rfind(ANSWER_OPEN) + len(ANSWER_OPEN)
    end = tail.find(ANSWER_CLOSE, start)
    spans = []
    pos = start
    for line in tail[start:end].split("\n"):
        body = line.rstrip()
        if body.strip() and not _FENCE_RE.match(body):
            spans.append((shift + pos, shift + pos + len(body)))
        pos += len(line) + 1
    return spans


def last_code_block(text: str) -> str | None:
    """Contents of the last ```python (or ```py) block in `text` up to the next ``` (or the end,
    as the PRIME harness's split did), else None. Linear time: one regex scan plus one find."""
    last = None
    for m in _CODE_OPEN_RE.finditer(text):
        last = m
    if last is None:
        return None
    end = text.find("```", last.end())
    return text[last.end():] if end < 0 else text[last.end():end]


def first_assert_line(text: str) -> str | None:
    """The first line of `text` that is an `assert` statement (by its keyword), else None."""
    for line in text.split("\n"):
        if _ASSERT_LINE_RE.match(line):
            return line
    return None


# --------------------------------------------------------------------------------------------
# Literals


_CONSTRUCTORS = frozenset({"set", "frozenset", "range", "float", "tuple", "list", "dict"})
_FLOAT_WORDS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "+inf": math.inf,
                "infinity": math.inf, "-infinity": -math.inf}


def parse_expr(src: str, cfg: RewardConfig) -> ast.expr:
    """Parses one expression with size bounds; raises LiteralError."""
    if len(src) > cfg.max_literal_chars:
        raise LiteralError(f"literal longer than {cfg.max_literal_chars} characters")
    try:
        tree = ast.parse(src.strip(), mode="eval")
    except PARSE_ERRORS as exc:
        raise LiteralError(f"not an expression: {type(exc).__name__}") from None
    return tree.body


def _check_size(node: ast.AST, cfg: RewardConfig) -> None:
    # Iterative walk: depth and node count are bounded before the recursive evaluator runs.
    stack = [(node, 0)]
    count = 0
    while stack:
        n, depth = stack.pop()
        count += 1
        if count > cfg.max_literal_nodes:
            raise LiteralError("literal has too many nodes")
        if depth > cfg.max_literal_nesting:
            raise LiteralError("literal nested too deeply")
        for child in ast.iter_child_nodes(n):
            stack.append((child, depth + 1))


def literal_from_node(node: ast.expr, cfg: RewardConfig) -> Any:
    """Evaluates a literal AST (no names, no calls except whitelisted constructors); raises LiteralError."""
    _check_size(node, cfg)
    try:
        return _eval(node)
    except LiteralError:
        raise
    except PARSE_ERRORS as exc:  # unhashable set/dict members, int too large to convert, ...
        raise LiteralError(f"bad literal: {type(exc).__name__}") from None


def literal_value(src: str, cfg: RewardConfig) -> Any:
    """Parses and evaluates a literal from source text; raises LiteralError."""
    return literal_from_node(parse_expr(src, cfg), cfg)


def _eval(node: ast.expr) -> Any:
    if isinstance(node, ast.Constant):
        if node.value is Ellipsis:
            raise LiteralError("Ellipsis is not an answer")
        return node.value
    if isinstance(node, ast.Tuple):
        return tuple(_eval(e) for e in node.elts)
    if isinstance(node, ast.List):
        return [_eval(e) for e in node.elts]
    if isinstance(node, ast.Set):
        return {_eval(e) for e in node.elts}
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):  # {**x}
            raise LiteralError("dict unpacking is not a literal")
        return {_eval(k): _eval(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _eval(node.operand)
        if type(operand) not in (int, float, complex):
            raise LiteralError("unary sign on a non-number")
        return -operand if isinstance(node.op, ast.USub) else +operand
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        # Only complex literals such as 1+2j (as ast.literal_eval allows).
        left, right = _eval(node.left), _eval(node.right)
        if type(left) not in (int, float) or type(right) is not complex:
            raise LiteralError("only real +/- imaginary is allowed")
        return left + right if isinstance(node.op, ast.Add) else left - right
    if isinstance(node, ast.Name) and node.id.lower() in _FLOAT_WORDS:
        # `nan`/`inf` are how Python prints those floats; accepted as values, never evaluated.
        return _FLOAT_WORDS[node.id.lower()]
    if isinstance(node, ast.Call):
        return _eval_constructor(node)
    raise LiteralError(f"{type(node).__name__} is not a literal")


def _eval_constructor(node: ast.Call) -> Any:
    # A few builtin constructors, evaluated here on literal arguments (never executed).
    if not isinstance(node.func, ast.Name) or node.func.id not in _CONSTRUCTORS:
        raise LiteralError("calls are not literals")
    name = node.func.id
    if node.keywords:
        # dict(a=1, b=2): keyword literals only (CRUXEval inputs use this form).
        if name != "dict" or node.args or any(k.arg is None for k in node.keywords):
            raise LiteralError("keywords only in dict(key=literal, ...)")
        return {k.arg: _eval(k.value) for k in node.keywords}
    args = [_eval(a) for a in node.args]
    if name == "range":
        if not 1 <= len(args) <= 3 or any(type(a) is not int for a in args):
            raise LiteralError("range() takes 1-3 int literals")
        return range(*args)
    if name == "float":
        if len(args) != 1 or type(args[0]) is not str or args[0].strip().lower() not in _FLOAT_WORDS:
            raise LiteralError("float() only for 'nan'/'inf'")
        return _FLOAT_WORDS[args[0].strip().lower()]
    if len(args) > 1:
        raise LiteralError(f"{name}() takes at most one argument")
    if not args:
        return {"set": set, "frozenset": frozenset, "tuple": tuple, "list": list, "dict": dict}[name]()
    if type(args[0]) not in (list, tuple, set, frozenset):
        raise LiteralError(f"{name}() only of a container literal")
    if name == "dict":
        raise LiteralError("dict() of a container is not accepted")
    return {"set": set, "frozenset": frozenset, "tuple": tuple, "list": list}[name](args[0])


# --------------------------------------------------------------------------------------------
# Assertions


class AssertError(ValueError):
    """An answer line is not `assert <name>(<args>) == <rhs>`; the message says why."""


@dataclass(frozen=True)
class ParsedAssert:
    """`assert <func>(<args>) == <rhs>` split into its parts (AST nodes, never executed)."""

    func: str
    call: ast.Call
    rhs: ast.expr


def placeholder_or(text: str, reason: str) -> str:
    """`placeholder_left` when `text` failed to parse and holds the prompt's `????`, else `reason`.

    A bare `????` is not Python, so an answer that parses never left the placeholder: `????`
    inside a string literal (an expected output or input of '????') is a legitimate value.
    """
    return "placeholder_left" if "????" in text else reason


def parse_assert(line: str, cfg: RewardConfig) -> ParsedAssert:
    """Parses one assertion line; raises AssertError for any other shape.

    Accepted: `assert f(a, b) == rhs`, `assert(f(a, b)) == rhs` and `assert (f(a) == rhs)`.
    Rejected: messages (`, "msg"`), chained or non-`==` comparisons, `or`/`and`, a left side
    that is not a plain call of a name.
    """
    if len(line) > cfg.max_literal_chars + 1000:
        raise AssertError("assertion too long")
    try:
        tree = ast.parse(line.strip())
    except PARSE_ERRORS as exc:
        raise AssertError(f"not valid Python: {type(exc).__name__}") from None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        raise AssertError("not a single assert statement")
    stmt = tree.body[0]
    if stmt.msg is not None:
        raise AssertError("assert with a message")
    test = stmt.test
    if not isinstance(test, ast.Compare) or len(test.ops) != 1 or not isinstance(test.ops[0], ast.Eq):
        raise AssertError("not a single == comparison")
    call = test.left
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        raise AssertError("left side is not a call of a function name")
    return ParsedAssert(func=call.func.id, call=call, rhs=test.comparators[0])


@lru_cache(maxsize=4096)
def _reference_call(entry: str, args_src: str) -> ast.expr | None:
    try:
        return ast.parse(f"{entry}({args_src})", mode="eval").body
    except PARSE_ERRORS:
        return None


def same_ast(a: object, b: object) -> bool:
    """Structural equality of AST nodes, ignoring positions and the `u''` string prefix.

    Constants must have identical types and equal values, so `1`, `1.0` and `True` differ.
    """
    if type(a) is not type(b):
        return False
    if isinstance(a, ast.AST):
        return all(f == "kind" or same_ast(getattr(a, f, None), getattr(b, f, None)) for f in a._fields)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_ast(x, y) for x, y in zip(a, b))
    return a == b


def call_matches(call: ast.Call, entry: str, args_src: str) -> bool:
    """True when the model's call is the question's call `entry(args_src)`, compared as ASTs.

    Positions, spacing, quote style and redundant parentheses are normalised away, while the
    values (1 vs 1.0 vs True) are kept distinct.
    """
    ref = _reference_call(entry, args_src)
    try:
        return ref is not None and same_ast(call, ref)
    except RecursionError:
        return False


def call_literal_args(call: ast.Call, cfg: RewardConfig) -> tuple[list[str], list[tuple[str, str]]]:
    """The call's arguments as canonical literal source (positional, keyword); raises LiteralError.

    Every argument must be a literal: no names, calls (except whitelisted constructors),
    `*args`/`**kwargs`, lambdas, f-strings or walrus. The canonical text (`ast.unparse`) is what
    the sandbox child re-parses, and is also the cache key of the run.
    """
    pos = []
    for a in call.args:
        if isinstance(a, ast.Starred):
            raise LiteralError("*args is not a literal")
        literal_from_node(a, cfg)
        pos.append(ast.unparse(a))
    kws = []
    for k in call.keywords:
        if k.arg is None:
            raise LiteralError("**kwargs is not a literal")
        literal_from_node(k.value, cfg)
        kws.append((k.arg, ast.unparse(k.value)))
    return pos, kws
