"""Prompt-style-agnostic answer extraction: `<answer>` tags, `[ANSWER]` tags, bare completions.

A response may come from our prompts (`<reasoning>`/`<answer>`, the paper's format) or from the
official benchmark prompts (`[ANSWER] ... [/ANSWER]`, often as a bare continuation of a prompt
that already ends in `[ANSWER]`). Every grader first calls `answer_span`, so either style parses
under either prompt. Nothing here executes text: assertions and literals go through `ast` and the
bounded literal evaluator of `execverify_jax.rewards.parse`.
"""

from __future__ import annotations

import ast
import re

from execverify_jax.rewards import parse
from execverify_jax.rewards.config import RewardConfig

BRACKET_OPEN = "[ANSWER]"
BRACKET_CLOSE = "[/ANSWER]"
_ASSERT_START = re.compile(r"^\s*assert\b")
_MAX_STMT_LINES = 40  # a multi-line assertion (pretty-printed literal) may span this many lines
_MAX_ASSERT_LINES = 20  # assert-looking lines tried before giving up


def answer_span(response: str | bytes | None, cfg: RewardConfig) -> tuple[str | None, str]:
    """(answer text, source) where source is `answer_tag`, `bracket_tag`, `raw` or `none`.

    Order: the last complete `<answer>...</answer>` span (our format); the last
    `[ANSWER]...[/ANSWER]` span, or the text before a lone `[/ANSWER]` (a continuation of a
    prompt that ends in `[ANSWER]`), or after a lone `[ANSWER]`/`<answer>`; else the whole
    response (both original harnesses fall back to the raw text). Only the last
    `cfg.max_response_chars` characters are looked at.
    """
    text = parse.to_text(response)
    if len(text) > cfg.max_response_chars:
        text = text[-cfg.max_response_chars:]
    tagged = parse.extract_answer(text, cfg)
    if tagged is not None:
        return tagged, "answer_tag"
    close = text.rfind(BRACKET_CLOSE)
    if close >= 0:
        open_ = text.rfind(BRACKET_OPEN, 0, close)
        if open_ >= 0:
            return text[open_ + len(BRACKET_OPEN):close].strip(), "bracket_tag"
        return text[:text.find(BRACKET_CLOSE)].strip(), "bracket_tag"
    open_ = text.rfind(BRACKET_OPEN)
    if open_ >= 0:
        return text[open_ + len(BRACKET_OPEN):].strip(), "bracket_tag"
    open_ = text.rfind(parse.ANSWER_OPEN)
    if open_ >= 0:
        return text[open_ + len(parse.ANSWER_OPEN):].strip(), "answer_tag"
    stripped = text.strip()
    return (stripped, "raw") if stripped else (None, "none")


def code_body(span: str) -> str:
    """The last ```python block of an answer span when there is one, else the span without
    fence lines (models often fence a one-line answer)."""
    block = parse.last_code_block(span)
    if block is not None:
        return block.strip("\n")
    return "\n".join(parse.answer_lines(span))


def _parse_stmt(src: str) -> ast.stmt | None:
    try:
        tree = ast.parse(src.strip())
    except parse.PARSE_ERRORS:
        return None
    return tree.body[0] if len(tree.body) == 1 else None


def find_assert(text: str, cfg: RewardConfig) -> ast.Assert | None:
    """The first parseable `assert` statement of `text` (it may span several lines), else None.

    A line holding `f(x) == y` without the keyword (a completion of `assert f(??) == y`) counts.
    """
    if len(text) > cfg.max_answer_chars:
        return None
    lines = text.split("\n")
    tried = 0
    for i, line in enumerate(lines):
        if not _ASSERT_START.match(line):
            continue
        tried += 1
        if tried > _MAX_ASSERT_LINES:  # bounded work on hostile responses
            return None
        for j in range(i + 1, min(len(lines), i + _MAX_STMT_LINES) + 1):
            node = _parse_stmt("\n".join(lines[i:j]))
            if isinstance(node, ast.Assert):
                return node
        # Not a statement (e.g. prose starting with "assert"): try the next assert line.
    for line in lines:  # `f(1) == 2` with the `assert` keyword left in the prompt
        if "==" in line:
            node = _parse_stmt("assert " + line.strip())
            if isinstance(node, ast.Assert):
                return node
    return None


def _is_call_of(node: ast.expr, entry: str) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == entry


def _eq_sides(node: ast.Assert) -> tuple[ast.expr, ast.expr] | None:
    test = node.test
    if node.msg is not None or not isinstance(test, ast.Compare) or len(test.ops) != 1 \
            or not isinstance(test.ops[0], ast.Eq):
        return None
    return test.left, test.comparators[0]


def _output_node(span: str, entry: str, cfg: RewardConfig) -> tuple[ast.expr | None, str]:
    """(the asserted value node, reason): the side of the first `assert entry(...) == X` that is
    not the call (either order), or the whole answer parsed as one expression."""
    body = code_body(span)
    node = find_assert(body, cfg)
    if node is None:
        try:
            return parse.parse_expr(body, cfg), ""
        except parse.LiteralError:
            return None, "no_assert"
    sides = _eq_sides(node)
    if sides is None:
        return None, "bad_assert"
    left, right = sides
    value = right if _is_call_of(left, entry) else left if _is_call_of(right, entry) else None
    return (value, "") if value is not None else (None, "wrong_call")


def _call_node(span: str, entry: str, cfg: RewardConfig) -> tuple[ast.Call | None, str]:
    """(the answer's call of `entry`, reason): from the first assertion (either side; the other
    side is ignored) or the whole answer parsed as one call."""
    body = code_body(span)
    node = find_assert(body, cfg)
    if node is not None:
        sides = _eq_sides(node)
        if sides is None:
            return None, "bad_assert"
        call = sides[0] if _is_call_of(sides[0], entry) else sides[1] if _is_call_of(sides[1], entry) else None
    else:
        try:
            expr = parse.parse_expr(body, cfg)
        except parse.LiteralError:
            return None, parse.placeholder_or(body, "no_assert")
        call = expr if _is_call_of(expr, entry) else None
    return (call, "") if call is not None else (None, "wrong_function")  # type: ignore[return-value]


def predicted_output(span: str, entry: str, cfg: RewardConfig) -> tuple[str | None, str]:
    """(canonical literal source of the predicted return value, reason) for output prediction.

    Accepts `assert entry(...) == <literal>` (either side), or a bare literal answer (the
    official CRUXEval harness scores the text after `==`, or the whole answer). The call's
    arguments are not checked (both original harnesses substitute the ground-truth input); the
    value must be a literal: no names, no calls except whitelisted constructors.
    """
    value, reason = _output_node(span, entry, cfg)
    if value is None:
        return None, reason
    try:
        parse.literal_from_node(value, cfg)
    except parse.LiteralError:
        return None, "rhs_not_literal"
    return ast.unparse(value), ""


def predicted_call_args(span: str, entry: str, cfg: RewardConfig) -> tuple[str | None, str]:
    """(canonical literal argument list `a, b, k=c`, reason) for input prediction.

    Accepts `assert entry(<args>) == ...` (either side; the other side is ignored, as in the
    paper's harness: the ground-truth output is what the run is compared with), or a bare call
    `entry(<args>)`. Every argument must be a literal.
    """
    call, reason = _call_node(span, entry, cfg)
    if call is None:
        return None, reason
    try:
        pos, kws = parse.call_literal_args(call, cfg)
    except parse.LiteralError:
        return None, "args_not_literal"
    return ", ".join(pos + [f"{k}={v}" for k, v in kws]), ""


def official_output_expr(span: str, entry: str, args: str, cfg: RewardConfig) -> tuple[str | None, str]:
    """(source of the predicted output *expression*, reason) for `--scoring official`.

    The same answer as `predicted_output`, but X may be any expression: the official harness
    runs `assert <output> == X` after the program. Rejected as the harness rejects it: X
    containing the ground-truth call `entry(<input>)` (compared on whitespace-normalised text,
    so `f( 17 )` is caught too).
    """
    value, reason = _output_node(span, entry, cfg)
    if value is None:
        return None, reason
    src = ast.unparse(value)
    try:
        gt_call = ast.unparse(ast.parse(f"{entry}({args})", mode="eval").body)
    except parse.PARSE_ERRORS:
        gt_call = f"{entry}({args})"
    if gt_call in src:
        return None, "calls_ground_truth_input"
    return src, ""


def official_call(span: str, entry: str, cfg: RewardConfig) -> tuple[str | None, str]:
    """(source of the model's call `entry(<any argument expressions>)`, reason) for
    `--scoring official`: the official harness runs `assert <output> == entry(...)` with the
    model's argument text, so arguments may be expressions (`''.join(['A'] * 20)`, lambdas)."""
    call, reason = _call_node(span, entry, cfg)
    return (ast.unparse(call), "") if call is not None else (None, reason)


def canonical_response(assertion: str) -> str:
    """A response in our answer format holding one assertion (fed to the rewards' scorer)."""
    return f"<answer>\n```python\n{assertion}\n```\n</answer>"
