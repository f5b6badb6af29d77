"""Independent structural check of a synthesized program against its constraint record.

This module never imports the generator (templates/builder): it re-derives every property from
the program's AST and tokens, so a generator bug cannot hide itself. `check(code, entry,
constraint)` returns a list of human-readable violations ([] = ok). Rules:

* syntax: parses; module level holds only function definitions and `import math` /
  `from math import ...`; no comments (tokenize); no `print`, `input`, `open`, `eval`, `exec`,
  `compile`, `__import__`, `globals`, `locals`, `vars`, `breakpoint`, `exit`, `quit`, no
  `global`/`nonlocal`/`class`/`try`/`with`/`async`/`yield`/`del`-of-names-free... (see _FORBIDDEN);
* functions: no default values (incl. lambdas), every function takes >= 1 argument, the named
  entry exists; level 6: exactly two functions and the entry calls the other (the helper);
  levels 1-5: exactly one function;
* tested entry: occurs (matched syntactically, type-agnostic: `+` is any `BinOp(Add)`, a method
  `m` is any call `x.m(...)`, `[index1:index2]` a slice with both bounds, ...), and is nested:
  *depth >= 2* means some occurrence has another occurrence of the same entry inside its
  operands (receiver, arguments, operands, subscript), directly or through a local name bound
  (assignment, augmented assignment, loop/comprehension target) from an expression containing
  an occurrence. For entries whose result cannot feed the same entry (predicates returning bool,
  mutators returning None, augmented assignments, item assignment, views, `encode`,
  `maketrans`, `as_integer_ratio`, `popitem`, `set.pop`) it means "called at least twice";
* other built-in methods: present iff the constraint says so. A *method call* is any call of an
  attribute (`x.m(...)`, `math.ceil(...)`) or of a builtin function, other than the tested
  entry, the program's own functions, and the value constructors list/tuple/set/dict/str/int/
  float/bool/frozenset (kept free because iterators must be materialised to literal outputs;
  a constructor that *is* the tested entry, like `int()`, is of course not free);
* control flow: the statement-level If/For/While nodes form a single nesting path whose kinds
  equal the drawn chain exactly; an If whose `orelse` is exactly one If (with no further
  `elif`/`else`) is the kind "if-elif". Comprehensions and conditional expressions are
  expressions, not control-flow statements. `for`/`while` with `else`, `break`/`continue`
  outside the chain's loops, and any Try/With are rejected.
"""

from __future__ import annotations

import ast
import builtins
import io
import tokenize
from typing import Callable

_ALLOWED_IMPORTS = {"math"}
_FORBIDDEN_CALLS = {"print", "input", "open", "eval", "exec", "compile", "__import__", "globals",
                    "locals", "vars", "breakpoint", "exit", "quit", "help", "setattr", "delattr",
                    "getattr", "id", "hash", "memoryview"}
_CONSTRUCTORS = {"list", "tuple", "set", "dict", "str", "int", "float", "bool", "frozenset"}
_BUILTIN_FUNCS = {n for n in dir(builtins) if callable(getattr(builtins, n)) and not n.startswith("_")}

_BINOPS = {"+": ast.Add, "-": ast.Sub, "*": ast.Mult, "%": ast.Mod, "&": ast.BitAnd, "|": ast.BitOr,
           "^": ast.BitXor}
_AUGOPS = {"*=": ast.Mult, "&=": ast.BitAnd, "|=": ast.BitOr, "-=": ast.Sub, "^=": ast.BitXor}
_CMPOPS = {"==": ast.Eq, "!=": ast.NotEq, "<": ast.Lt, "<=": ast.LtE, ">": ast.Gt, ">=": ast.GtE,
           "in": ast.In, "not in": ast.NotIn}
_FUNC_ENTRIES = {"len": "len", "len()": "len", "format()": "format", "bool()": "bool", "int()": "int",
                 "round": "round", "divmod": "divmod", "reversed": "reversed", "enumerate": "enumerate",
                 "filter": "filter", "range": "range", "zip": "zip"}
_MATH_ENTRIES = {"math.ceil()": "ceil", "math.floor()": "floor"}

# Entries whose result cannot be an operand of the same entry: "nested" = called >= 2 times.
_REPEAT_ONLY = (set(_CMPOPS) | set(_AUGOPS) | {"dict[key] = value", "bool()", "encode", "maketrans",
                "as_integer_ratio", "popitem", "items", "keys", "values", "isdisjoint", "issubset",
                "issuperset", "is_integer", "startswith", "endswith", "append", "extend", "insert",
                "remove", "reverse", "sort", "clear", "add", "discard", "update", "difference_update",
                "intersection_update", "symmetric_difference_update"}
                | {m for m in dir(str) if m.startswith("is")})
_SET_POP_GROUPS = {"set"}


def _matcher(group: str, method: str) -> Callable[[ast.AST], bool]:
    """A predicate recognising one occurrence of the inventory entry in an AST node."""
    if method in _BINOPS:
        op = _BINOPS[method]
        return lambda n: isinstance(n, ast.BinOp) and isinstance(n.op, op)
    if method in _AUGOPS:
        op = _AUGOPS[method]
        return lambda n: isinstance(n, ast.AugAssign) and isinstance(n.op, op)
    if method in _CMPOPS:
        op = _CMPOPS[method]
        return lambda n: isinstance(n, ast.Compare) and any(isinstance(o, op) for o in n.ops)
    if method in _FUNC_ENTRIES:
        name = _FUNC_ENTRIES[method]
        return lambda n: isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name
    if method in _MATH_ENTRIES:
        name = _MATH_ENTRIES[method]
        return lambda n: (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == name
                          and isinstance(n.func.value, ast.Name) and n.func.value.id == "math")
    if method == "str.format":
        return lambda n: (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "format"
                          and isinstance(n.func.value, ast.Name) and n.func.value.id == "str")
    if method in ("[index]", "dict[key]"):
        return lambda n: isinstance(n, ast.Subscript) and not isinstance(n.slice, ast.Slice) and isinstance(n.ctx, ast.Load)
    if method == "dict[key] = value":
        return lambda n: isinstance(n, ast.Assign) and any(isinstance(t, ast.Subscript) for t in n.targets)
    slices = {"[:]": (False, False), "[index1:index2]": (True, True), "[index:]": (True, False),
              "[:index2]": (False, True)}
    if method in slices:
        lo, hi = slices[method]
        return lambda n: (isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Slice) and n.slice.step is None
                          and (n.slice.lower is not None) == lo and (n.slice.upper is not None) == hi)
    if method.isidentifier():
        return lambda n: isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == method
    raise ValueError(f"unknown inventory entry {group}.{method!r}")


def _operands(n: ast.AST) -> list[ast.AST]:
    """The sub-trees whose values flow into node `n` (not `n` itself)."""
    if isinstance(n, ast.Call):
        out = list(n.args) + [k.value for k in n.keywords]
        if isinstance(n.func, ast.Attribute):
            out.append(n.func.value)
        return out
    if isinstance(n, ast.BinOp):
        return [n.left, n.right]
    if isinstance(n, ast.Compare):
        return [n.left, *n.comparators]
    if isinstance(n, ast.Subscript):
        return [n.value, n.slice]
    if isinstance(n, (ast.AugAssign, ast.Assign)):
        return [n.value]
    return []


def _bindings(fn: ast.AST) -> dict[str, list[ast.AST]]:
    """name -> value expressions it is bound from (assignments, loop/comprehension targets)."""
    out: dict[str, list[ast.AST]] = {}

    def bind(target: ast.AST, value: ast.AST) -> None:
        for t in ast.walk(target):
            if isinstance(t, ast.Name):
                out.setdefault(t.id, []).append(value)

    for n in ast.walk(fn):
        if isinstance(n, ast.Assign):
            for t in n.targets:
                bind(t, n.value)
        elif isinstance(n, (ast.AugAssign, ast.AnnAssign)) and n.value is not None:
            bind(n.target, n.value)
        elif isinstance(n, (ast.For, ast.comprehension)):
            bind(n.target, n.iter)
        elif isinstance(n, ast.NamedExpr):
            bind(n.target, n.value)
    return out


def _max_depth(tree: ast.AST, is_occ: Callable[[ast.AST], bool]) -> int:
    """Maximum nesting depth of occurrences (1 = not nested), following local data flow."""
    binds = _bindings(tree)
    memo: dict[int, int] = {}

    def contains(node: ast.AST, seen: frozenset) -> int:
        best = 0
        for sub in ast.walk(node):
            if is_occ(sub):
                best = max(best, depth(sub, seen))
            elif isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load) and sub.id not in seen:
                for v in binds.get(sub.id, []):
                    best = max(best, contains(v, seen | {sub.id}))
        return best

    def depth(n: ast.AST, seen: frozenset) -> int:
        key = id(n)
        if key in memo:
            return memo[key]
        memo[key] = 1  # cycle guard
        d = 1 + max([contains(o, seen) for o in _operands(n)] or [0])
        memo[key] = d
        return d

    return max([depth(n, frozenset()) for n in ast.walk(tree) if is_occ(n)] or [0])


def _cf_kind(n: ast.AST) -> str | None:
    if isinstance(n, ast.For):
        return "for"
    if isinstance(n, ast.While):
        return "while"
    if isinstance(n, ast.If):
        if len(n.orelse) == 1 and isinstance(n.orelse[0], ast.If):
            return "if-elif"
        return "if"
    return None


def _branches(n: ast.AST) -> list[list[ast.stmt]]:
    if _cf_kind(n) == "if-elif":
        el = n.orelse[0]
        return [n.body, el.body, el.orelse]
    if isinstance(n, ast.If):
        return [n.body, n.orelse]
    return [n.body, n.orelse]


def _cf_children(stmts: list[ast.stmt]) -> list[ast.AST]:
    """Control-flow statements directly in `stmts` (not inside nested control flow)."""
    return [s for s in stmts if _cf_kind(s) is not None]


def cf_chain(fn: ast.FunctionDef) -> tuple[list[str], list[str]]:
    """(chain of kinds along the single nesting path, problems if it is not a single path)."""
    problems: list[str] = []
    chain: list[str] = []
    level = _cf_children(fn.body)
    while level:
        if len(level) > 1:
            problems.append(f"{len(level)} control-flow statements side by side at depth {len(chain) + 1}")
        node = level[0]
        kind = _cf_kind(node)
        chain.append(kind)
        if kind == "if-elif" and _cf_kind(node.orelse[0]) == "if-elif":
            problems.append("if-elif-elif chains are not a drawn kind")
        if isinstance(node, (ast.For, ast.While)) and node.orelse:
            problems.append(f"{kind}-else is not allowed")
        nxt: list[ast.AST] = []
        for br in _branches(node):
            nxt += _cf_children(br)
        level = nxt
    return chain, problems


def no_comments(code: str) -> bool:
    """True when the source has no comment tokens (and tokenizes)."""
    try:
        toks = tokenize.generate_tokens(io.StringIO(code).readline)
        return not any(t.type == tokenize.COMMENT for t in toks)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return False


def check(code: str, entry: str, constraint: dict) -> list[str]:
    """Violations of the structural constraint by `code` (see module docstring); [] = ok."""
    v: list[str] = []
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        return [f"syntax error: {e.msg} (line {e.lineno})"]
    group, method = constraint.get("group"), constraint.get("method")
    level = constraint.get("level")
    chain_want = list(constraint.get("cf_chain", []))
    helper = bool(constraint.get("helper"))
    other_required = bool(constraint.get("other_methods"))
    if not no_comments(code):
        v.append("comments are not allowed")

    funcs: list[ast.FunctionDef] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            funcs.append(node)
        elif isinstance(node, ast.Import):
            bad = [a.name for a in node.names if a.name not in _ALLOWED_IMPORTS or a.asname]
            if bad:
                v.append(f"import of {bad} not allowed (only math)")
        elif isinstance(node, ast.ImportFrom):
            if node.module not in _ALLOWED_IMPORTS:
                v.append(f"import from {node.module} not allowed (only math)")
        else:
            v.append(f"module-level {type(node).__name__} statement (only defs and imports allowed)")
    names = {f.name for f in funcs}
    if len(names) != len(funcs):
        v.append("duplicate function names")
    if entry not in names:
        v.append(f"entry function {entry!r} not defined")
        return v
    want_funcs = 2 if helper else 1
    if len(funcs) != want_funcs:
        v.append(f"expected exactly {want_funcs} function(s), found {len(funcs)}")
    entry_fn = next(f for f in funcs if f.name == entry)
    if helper and len(funcs) == 2:
        helper_fn = next(f for f in funcs if f.name != entry)
        calls = [n for n in ast.walk(entry_fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                 and n.func.id == helper_fn.name]
        if not calls:
            v.append(f"entry {entry!r} does not call helper {helper_fn.name!r}")
        if any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == entry
               for n in ast.walk(helper_fn)):
            v.append("helper calls the entry")

    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.Lambda)):
            a = node.args
            if a.defaults or any(d is not None for d in a.kw_defaults):
                v.append(f"default argument values in {getattr(node, 'name', 'lambda')}")
            n_args = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + bool(a.vararg) + bool(a.kwarg)
            if n_args == 0:
                v.append(f"{getattr(node, 'name', 'lambda')} takes no arguments")
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            v.append("global/nonlocal state")
        elif isinstance(node, (ast.ClassDef, ast.AsyncFunctionDef, ast.Try, ast.With, ast.AsyncWith,
                               ast.AsyncFor, ast.Yield, ast.YieldFrom, ast.Await, ast.Raise)):
            v.append(f"{type(node).__name__} not allowed")
        elif isinstance(node, (ast.Import, ast.ImportFrom)) and node not in tree.body:
            v.append("import inside a function")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FORBIDDEN_CALLS:
            v.append(f"call of {node.func.id}() not allowed")
        elif isinstance(node, ast.Attribute) and node.attr.startswith("__"):
            v.append(f"dunder attribute {node.attr}")

    # tested entry and nesting
    try:
        is_occ = _matcher(group, method)
    except ValueError as e:
        return v + [str(e)]
    occ = [n for n in ast.walk(tree) if is_occ(n)]
    if not occ:
        v.append(f"tested entry {group}.{method} is never used")
    elif constraint.get("nested", True):
        repeat_only = method in _REPEAT_ONLY or (method == "pop" and group in _SET_POP_GROUPS)
        if repeat_only:
            if len(occ) < 2:
                v.append(f"{method} must be called at least twice (found {len(occ)})")
        elif _max_depth(tree, is_occ) < 2:
            v.append(f"{method} is not nested (depth < 2)")

    # other built-in methods
    own = names | {"math"}
    others = []
    for n in ast.walk(tree):
        if not isinstance(n, ast.Call) or is_occ(n):
            continue
        f = n.func
        if isinstance(f, ast.Name):
            if f.id in own or f.id in _CONSTRUCTORS or f.id not in _BUILTIN_FUNCS:
                continue
            others.append(f.id)
        elif isinstance(f, ast.Attribute):
            others.append(f.attr)
    if other_required and not others:
        v.append("no other built-in method used, but the level requires one")
    if not other_required and others:
        v.append(f"other built-in methods used ({sorted(set(others))}) but the level forbids them")

    # control flow
    chains = {f.name: cf_chain(f) for f in funcs}
    with_cf = [name for name, (ch, _) in chains.items() if ch]
    if len(with_cf) > 1:
        v.append(f"control flow in more than one function: {with_cf}")
    got, problems = chains[with_cf[0]] if with_cf else ([], [])
    v += problems
    if got != chain_want:
        v.append(f"control-flow chain {got} != required {chain_want}")
    if level is not None and level in (1, 2) and chain_want:
        v.append(f"level {level} must have no control flow")
    return v
