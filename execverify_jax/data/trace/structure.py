"""Static structure of a traced program: statements, their line spans and control-flow roles.

The tracer uses `stmt_start` to fold the several `line` events CPython emits for one multi-line
statement into one step; the question generator uses the rest to pick control-flow-relevant
next-statement questions (branch/loop headers, jumps) and to find unexecuted lines that bind a
variable (for `Nil` questions). Pure `ast`, no execution.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

BRANCH_KINDS = frozenset({"if", "for", "while", "match", "case"})
JUMP_KINDS = frozenset({"return", "break", "continue", "raise"})
_KIND_OF = {
    ast.If: "if", ast.For: "for", ast.AsyncFor: "for", ast.While: "while", ast.Try: "try",
    ast.With: "with", ast.AsyncWith: "with", ast.FunctionDef: "def", ast.AsyncFunctionDef: "def",
    ast.ClassDef: "class", ast.Return: "return", ast.Break: "break", ast.Continue: "continue",
    ast.Raise: "raise", ast.Pass: "pass", ast.Assign: "assign", ast.AugAssign: "assign",
    ast.AnnAssign: "assign", ast.Expr: "expr", ast.Import: "import", ast.ImportFrom: "import",
    ast.Global: "global", ast.Nonlocal: "global", ast.Delete: "del", ast.Assert: "assert",
}
if hasattr(ast, "TryStar"):
    _KIND_OF[ast.TryStar] = "try"
if hasattr(ast, "Match"):
    _KIND_OF[ast.Match] = "match"


@dataclass
class ProgramStructure:
    """Per-line facts about a program (all line numbers 1-based, as in the source)."""

    n_lines: int
    stmt_start: dict[int, int] = field(default_factory=dict)  # any line -> its statement's first line
    kind: dict[int, str] = field(default_factory=dict)  # statement start line -> kind (see _KIND_OF)
    seq_next: dict[int, int | None] = field(default_factory=dict)  # start -> sequential successor
    in_function: dict[int, str] = field(default_factory=dict)  # start -> innermost enclosing def name
    binds: dict[int, list[str]] = field(default_factory=dict)  # start -> plain names it assigns
    is_header: set[int] = field(default_factory=set)  # starts of compound statements / handlers


def _header_end(node: ast.AST) -> int:
    body = getattr(node, "body", None)
    if body and isinstance(body, list) and body[0].lineno > node.lineno:
        return body[0].lineno - 1
    return node.lineno


def _target_names(targets: list[ast.expr]) -> list[str]:
    names: list[str] = []
    for t in targets:
        for sub in ast.walk(t):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store) and sub.id not in names:
                names.append(sub.id)
    return names


def _binds(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.Assign):
        return _target_names(node.targets)
    if isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        return _target_names([node.target]) if getattr(node, "value", True) is not None else []
    if isinstance(node, (ast.For, ast.AsyncFor)):
        return _target_names([node.target])
    if isinstance(node, (ast.With, ast.AsyncWith)):
        return _target_names([i.optional_vars for i in node.items if i.optional_vars is not None])
    return []


def analyze(code: str) -> ProgramStructure:
    """Parses `code` and returns its `ProgramStructure` (raises SyntaxError on bad code)."""
    tree = ast.parse(code)
    info = ProgramStructure(n_lines=len(code.split("\n")))

    def visit_block(stmts: list[ast.stmt], after: int | None, loop_header: int | None,
                    func: str | None) -> None:
        # `after` is where control goes when the block falls off its end without jumping;
        # for a loop body that is the loop header (a back edge, which we treat as a jump).
        for i, node in enumerate(stmts):
            nxt = stmts[i + 1].lineno if i + 1 < len(stmts) else after
            visit_stmt(node, nxt, loop_header, func)

    def mark(node: ast.AST, end: int, kind: str, nxt: int | None, func: str | None) -> None:
        for line in range(node.lineno, end + 1):
            info.stmt_start[line] = node.lineno  # inner statements are visited later and win
        info.kind[node.lineno] = kind
        info.seq_next[node.lineno] = nxt
        if func is not None:
            info.in_function[node.lineno] = func

    def visit_stmt(node: ast.stmt, nxt: int | None, loop_header: int | None, func: str | None) -> None:
        kind = _KIND_OF.get(type(node), "simple")
        compound = hasattr(node, "body") and isinstance(getattr(node, "body"), list)
        end = _header_end(node) if compound else (node.end_lineno or node.lineno)
        mark(node, end, kind, nxt, func)
        names = _binds(node)
        if names:
            info.binds[node.lineno] = names
        if not compound:
            return
        info.is_header.add(node.lineno)
        if kind in ("try", "with"):
            info.seq_next[node.lineno] = node.body[0].lineno  # entering the block is sequential
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            visit_block(node.body, None, None, node.name)
            return
        if isinstance(node, ast.ClassDef):
            visit_block(node.body, None, None, func)
            return
        if isinstance(node, (ast.For, ast.AsyncFor, ast.While)):
            visit_block(node.body, None, node.lineno, func)  # falling off the body loops back
            visit_block(node.orelse, nxt, loop_header, func)
            return
        if isinstance(node, ast.If):
            visit_block(node.body, nxt, loop_header, func)
            visit_block(node.orelse, nxt, loop_header, func)
            return
        if hasattr(ast, "Match") and isinstance(node, ast.Match):
            for case in node.cases:
                case_end = case.body[0].lineno - 1 if case.body[0].lineno > case.pattern.lineno \
                    else case.pattern.lineno
                for line in range(case.pattern.lineno, case_end + 1):
                    info.stmt_start[line] = case.pattern.lineno
                info.kind[case.pattern.lineno] = "case"
                info.seq_next[case.pattern.lineno] = case.body[0].lineno
                info.is_header.add(case.pattern.lineno)
                if func is not None:
                    info.in_function[case.pattern.lineno] = func
                visit_block(case.body, nxt, loop_header, func)
            return
        # try / with: the body falls through to else/finally/next; handlers are headers too.
        visit_block(node.body, nxt, loop_header, func)
        for handler in getattr(node, "handlers", []):
            mark(handler, _header_end(handler), "except", handler.body[0].lineno, func)
            info.is_header.add(handler.lineno)
            visit_block(handler.body, nxt, loop_header, func)
        visit_block(getattr(node, "orelse", []), nxt, loop_header, func)
        visit_block(getattr(node, "finalbody", []), nxt, loop_header, func)

    visit_block(tree.body, None, None, None)
    return info
