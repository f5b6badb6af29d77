"""Building blocks of a synthesized program: name pools, the assembly context, parameters,
branch conditions (with z3/sampling reachability), loop headers, literals and the hoisting of
lazy iterators. Split from data/synth/builder.py, which assembles them (see its docstring).
"""

from __future__ import annotations

import ast
import dataclasses
import random
from typing import Any

from execverify_jax.data.synth import inputs_z3 as iz
from execverify_jax.data.synth.grid import Cell

_POOLS: dict[str, tuple[str, ...]] = {
    "str_a": ("text", "word", "line", "name", "label", "token", "phrase", "message", "code", "title_text"),
    "str_b": ("other", "pattern", "suffix", "tag", "prefix", "chars", "marker", "needle"),
    "list_a": ("nums", "values", "items", "scores", "data", "counts", "weights", "points", "levels"),
    "list_b": ("others", "extra", "bonus", "refs", "marks", "limits", "second"),
    "tuple_a": ("coords", "record", "entries", "row", "triple", "sample"),
    "tuple_b": ("other_row", "rest", "more", "tail_row"),
    "set_a": ("ids", "seen", "tags", "pool", "members", "active"),
    "set_b": ("blocked", "others", "extra_ids", "banned", "known"),
    "dict_a": ("stock", "scores", "counts", "prices", "ages", "inventory", "table"),
    "float_a": ("x", "price", "rate", "amount", "temp", "ratio", "weight"),
    "float_b": ("y", "factor", "step", "base", "scale", "offset"),
    "vals": ("readings", "samples", "measurements", "series"),
    "key": ("name", "key", "item", "target", "wanted"),
    "int": ("n", "limit", "size", "k", "width", "steps", "budget"),
    "char": ("ch", "c", "letter", "char", "sym"),
    "num": ("x", "num", "item", "v", "val", "elem"),
    "flt": ("r", "reading", "f", "sample_value"),
    "word": ("key", "k", "word", "label"),
    "work": ("work", "buf", "current", "temp", "state", "bag"),
    "acc_int": ("total", "count", "score", "hits", "acc", "tally"),
    "acc_str": ("res", "out", "joined", "collected"),
    "last": ("last", "latest", "found", "chunk"),
    "size": ("size", "total_len", "seen_len"),
    "alt": ("misses", "skipped", "rest_count"),
    "ctr": ("i", "remaining", "left", "rounds", "fuel"),
    "tmp": ("tmp", "part", "piece", "head", "pair", "spare"),
    "stage": ("first", "inner", "partial", "mid", "stage", "step_val", "piece_val"),
    "derived": ("cleaned", "prepared", "base_val", "ordered", "adjusted", "norm"),
    "fn": ("process", "transform", "compute", "analyze", "build_result", "evaluate", "summarize",
           "crunch", "inspect", "reshape"),
    "helper": ("apply_op", "helper", "step_once", "combine", "mix", "work_on", "handle"),
}
_ELEM_DOMAIN = {"str": iz.CHAR, "list": iz.INT, "tuple": iz.INT, "set": iz.INT, "dict": iz.WORD, "float": iz.FLOAT}
_EMPTY = {"list": "[]", "tuple": "()", "set": "set()", "dict": "{}", "bytes": "b''"}
_CTOR = {"list": "list", "set": "set", "dict": "dict"}


class _Names:
    """Draws unique identifiers from the pools."""

    def __init__(self, rng: random.Random):
        self.rng, self.used = rng, set()

    def __call__(self, pool: str) -> str:
        opts = [n for n in _POOLS[pool] if n not in self.used]
        name = self.rng.choice(opts) if opts else f"{_POOLS[pool][0]}_{len(self.used)}"
        self.used.add(name)
        return name


def _conds_for(dom: iz.Domain, rng: random.Random) -> list[tuple[str, Any]]:
    """Condition templates ('{x}' = subject text) with their element predicates."""
    if dom in (iz.INT, iz.SET_INT):
        t, m = rng.randint(8, 16), rng.randint(2, 4)
        return [(f"{{x}} > {t}", lambda v: v > t), (f"{{x}} % {m} == 0", lambda v: v % m == 0),
                (f"{{x}} < {t}", lambda v: v < t), ("{x} % 2 == 1", lambda v: v % 2 == 1)]
    if dom is iz.FLOAT:
        t = rng.randint(8, 16) + 0.5
        return [(f"{{x}} > {t}", lambda v: v > t), ("{x}.is_integer()", lambda v: v.is_integer()),
                ("{x} % 1 == 0.5", lambda v: v % 1 == 0.5), (f"{{x}} < {t}", lambda v: v < t)]
    if dom.name == "char":  # any value space's characters
        return [("{x} in 'aeiouAEIOU'", lambda v: v in "aeiouAEIOU"), ("{x}.isupper()", str.isupper),
                ("{x}.isdigit()", str.isdigit), ("{x}.isalpha()", str.isalpha),
                ("{x} > 'm'", lambda v: v > "m"), ("{x}.islower()", str.islower)]
    return [("{x} < 'm'", lambda v: v < "m"), ("len({x}) > 5", lambda v: len(v) > 5),
            ("{x}[0] in 'aeiou'", lambda v: v[0] in "aeiou"), ("{x}.endswith('n')", lambda v: v.endswith("n"))]


@dataclasses.dataclass
class _Ctx:
    """Per-program state while assembling."""

    cell: Cell
    rng: random.Random
    names: _Names
    vtype: str
    params: dict[str, iz.Param]  # role -> Param (roles: A, B, N, KEY, VALS)
    loops: list[tuple[str, tuple]]  # (loop var, subject prefix) of enclosing `for`s, outer first
    goals: list
    python_only_prob: float
    space: iz.ValueSpace = iz.STANDARD  # where string characters, dict keys and lengths come from
    in_while: bool = False  # conditions on the while's int input would be (near-)decided
    cond_srcs: set = dataclasses.field(default_factory=set)  # no condition twice on one path
    path: list = dataclasses.field(default_factory=list)  # enclosing (Cond, outcome) pairs


def _param(ctx: _Ctx, role: str) -> str:
    """Name of the entry param with `role`, creating it on first use."""
    if role not in ctx.params:
        vt = ctx.vtype
        if role in ("A", "B"):
            pool = f"{vt}_{'a' if role == 'A' else 'b'}"
            if pool not in _POOLS:
                pool = f"{vt}_a"
            kind = {"float": "scalar"}.get(vt, vt)
            elem = iz.FLOAT if vt == "float" else (iz.SET_INT if vt == "set" else iz.INT)
            ctx.params[role] = iz.Param(ctx.names(pool), kind, elem, ctx.space)
        elif role == "N":
            ctx.params[role] = iz.Param(ctx.names("int"), "scalar", iz.INT, ctx.space)
        elif role == "KEY":
            ctx.params[role] = iz.Param(ctx.names("key"), "scalar", ctx.space.word, ctx.space)
        elif role == "VALS":
            ctx.params[role] = iz.Param(ctx.names("vals"), "list", iz.FLOAT, ctx.space)
    return ctx.params[role].name


def _subject_domain(ctx: _Ctx, cond: iz.Cond) -> tuple | None:
    """The finite set of values the condition's subject ranges over (None: not tabulable)."""
    kind, pname = cond.subject[0], cond.subject[1]
    p = next((q for q in ctx.params.values() if q.name == pname), None)
    if p is None:
        return None
    if kind == "len":
        return tuple(range(p.space.lengths[0], p.space.lengths[1] + 1))
    if kind == "scalar":
        return p.elem.values
    return iz.elem_domain(p).values


def _both_outcomes_reachable(ctx: _Ctx, cond: iz.Cond, extra: list) -> bool:
    """Can the condition be true and false given the enclosing conditions on the same subject?"""
    if cond.pred is None or cond.py is not None:  # relations: no single-subject table
        return True
    dom = _subject_domain(ctx, cond)
    if dom is None:
        return True
    key = cond.subject if cond.subject[0] != "elem" else ("elem", cond.subject[4])
    same = [(c, w) for c, w in ctx.path + extra if c.pred is not None and c.py is None and
            (c.subject if c.subject[0] != "elem" else ("elem", c.subject[4])) == key]
    ok = [v for v in dom if all(bool(c.pred(v)) == w for c, w in same)]
    return any(cond.pred(v) for v in ok) and any(not cond.pred(v) for v in ok)


def _make_cond(ctx: _Ctx, extra: list | None = None) -> tuple[str, iz.Cond]:
    """A fresh branch condition: not used before in this program, and (when it shares a subject
    with enclosing conditions) with both outcomes reachable, so no branch is dead by design."""
    extra = extra or []
    for _ in range(30):
        src, cond = _draw_cond(ctx)
        if src not in ctx.cond_srcs and _both_outcomes_reachable(ctx, cond, extra):
            break
    ctx.cond_srcs.add(src)
    return src, cond


def _draw_cond(ctx: _Ctx) -> tuple[str, iz.Cond]:
    """A branch condition on the innermost loop variable (mostly) or on a scalar input."""
    rng = ctx.rng
    if ctx.loops and rng.random() < 0.8:
        var, subj = ctx.loops[-1] if rng.random() < 0.75 else rng.choice(ctx.loops)
        pname = subj[1]
        p = next(p for p in ctx.params.values() if p.name == pname)
        dom = iz.elem_domain(p)
        subject = subj + (var,)
        if rng.random() < ctx.python_only_prob and (dom.name == "char" or dom in (iz.INT, iz.SET_INT)):
            # relational conditions between two inputs
            if dom.name == "char":  # python-only: not encoded
                return f"{pname}.count({var}) > 1", iz.Cond(subject, py=lambda inp, v, n=pname: inp[n].count(v) > 1)
            a, b = _param(ctx, "A"), _param(ctx, "B")
            other = a if pname == b else b
            if subj[0] == "pyelem":  # sorted set slice: order-dependent, python-only
                return f"{var} in {other}", iz.Cond(("elem",) + subject[1:], py=lambda inp, v, n=other: v in inp[n])
            return f"{var} in {other}", iz.Cond(subject, member_of=other)
        src, pred = rng.choice(_conds_for(dom, rng))
        if subj[0] == "pyelem":  # order-dependent subject (sorted set slice): python-only
            return src.format(x=var), iz.Cond(("elem",) + subject[1:], py=lambda inp, v, f=pred: f(v))
        return src.format(x=var), iz.Cond(subject, pred=pred)
    vt = ctx.vtype
    choice = rng.random()
    if vt == "float" and (choice < 0.5 or ctx.in_while):
        a = _param(ctx, "A")
        src, pred = rng.choice(_conds_for(iz.FLOAT, rng))
        return src.format(x=a), iz.Cond(("scalar", a), pred=pred)
    if vt in ("str", "list", "tuple", "set", "dict") and (choice < 0.5 or (ctx.in_while and vt != "dict")):
        a = _param(ctx, "A")
        if vt == "str" and rng.random() < 0.4:
            src, pred = rng.choice(_conds_for(iz.CHAR, rng))
            return src.format(x=f"{a}[0]"), iz.Cond(("elem", a, 0, 1, f"{a}[0]"), pred=pred)
        t = rng.randint(*ctx.space.len_thresholds)
        if rng.random() < 0.5:
            return f"len({a}) > {t}", iz.Cond(("len", a), pred=lambda v: v > t)
        return f"len({a}) % 2 == 0", iz.Cond(("len", a), pred=lambda v: v % 2 == 0)
    if vt == "dict" and (choice < 0.7 or ctx.in_while):
        a, key = _param(ctx, "A"), _param(ctx, "KEY")
        return f"{key} in {a}", iz.Cond(("scalar", key), member_of=a)
    n = _param(ctx, "N")
    src, pred = rng.choice(_conds_for(iz.INT, rng))
    return src.format(x=n), iz.Cond(("scalar", n), pred=pred)


def _loop_header(ctx: _Ctx, first: bool) -> tuple[str, str]:
    """`for` header text and the loop variable; records the loop's subject."""
    rng, vt = ctx.rng, ctx.vtype
    var = ctx.names({"str": "char", "dict": "word", "float": "flt"}.get(vt, "num"))
    k = rng.randint(2, 3)
    if vt == "float":
        vals = _param(ctx, "VALS")
        if first:
            ctx.loops.append((var, ("elem", vals, 0, None)))
            return f"for {var} in {vals}:", var
        ctx.loops.append((var, ("elem", vals, 1, 1 + k)))
        return f"for {var} in {vals}[1:{1 + k}]:", var
    if first:
        a = _param(ctx, "A")
        ctx.loops.append((var, ("elem", a, 0, None)))
        return f"for {var} in {a}:", var
    if vt == "dict":
        a = _param(ctx, "A")
        ctx.loops.append((var, ("elem", a, 0, k)))
        return f"for {var} in list({a})[:{k}]:", var
    b = _param(ctx, "B")
    if vt == "set":
        ctx.loops.append((var, ("pyelem", b, 0, k)))
        return f"for {var} in sorted({b})[:{k}]:", var
    ctx.loops.append((var, ("elem", b, 0, k)))
    return f"for {var} in {b}[:{k}]:", var


def _indent(lines: list[str], n: int = 1) -> list[str]:
    return ["    " * n + ln for ln in lines]


def _literal(ctx: _Ctx, n: int) -> list[str]:
    """`n` distinct element literals ($C, $D) of the group's element type."""
    rng, vt = ctx.rng, ctx.vtype
    if vt == "str":
        return [repr(c) for c in rng.sample(ctx.space.literal_chars, n)]
    if vt == "dict":
        return [repr(w) for w in rng.sample(ctx.space.word.values, n)]
    if vt == "float":
        return [repr(v) for v in rng.sample(iz.FLOAT_VALUES, n)]
    return [str(v) for v in rng.sample(iz.INT_VALUES, n)]


def _flat_elem(ctx: _Ctx) -> str:
    """$E outside loops: an element-typed expression over the inputs."""
    vt, rng = ctx.vtype, ctx.rng
    if vt == "str":
        return f"{_param(ctx, 'B')}[{rng.randint(0, 4)}]"
    if vt in ("list", "tuple"):
        return f"{_param(ctx, 'B')}[{rng.randint(0, 4)}]"
    if vt == "dict":
        return _param(ctx, "KEY")
    if vt == "float":
        return _param(ctx, "B")
    return _param(ctx, "N")


_LAZY_FUNCS = {"filter", "zip", "enumerate", "reversed", "map", "iter", "range"}
_VIEW_METHODS = {"items", "keys", "values"}


def _lazy(node: ast.AST) -> bool:
    """Would a local bound to this expression hold an iterator/view (not a literal value)?"""
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    return (isinstance(f, ast.Name) and f.id in _LAZY_FUNCS) or (isinstance(f, ast.Attribute) and f.attr in _VIEW_METHODS)


def _hoist(expr: str, rng: random.Random, name: str) -> tuple[str, str] | None:
    """Move one compound sub-expression of `expr` into a local: (`name = sub`, new expr).

    Gives the same computation a different data flow (`a = s.replace(x, y)` then
    `a.replace(...)`). Never hoists an iterator or dict view (locals stay literal values for
    the tracer's state questions), never out of a lambda (its parameter would be unbound) or a
    conditional operand of `and`/`or` beyond the first (that would change what is evaluated).
    """
    tree = ast.parse(expr, mode="eval")
    cands: list[ast.AST] = []

    def walk(node: ast.AST, top: bool) -> None:
        if isinstance(node, ast.Lambda):
            return
        if not top and isinstance(node, (ast.Call, ast.BinOp, ast.Subscript, ast.Compare)):
            cands.append(node)
        if isinstance(node, ast.BoolOp):
            walk(node.values[0], False)
            return
        for child in ast.iter_child_nodes(node):
            walk(child, False)

    walk(tree.body, True)
    cands = [c for c in cands if not _lazy(c) and (
        isinstance(c, (ast.Call, ast.Compare))
        or any(isinstance(n, (ast.Call, ast.BinOp, ast.Subscript)) for n in ast.walk(c) if n is not c))]
    if not cands:
        return None
    pick = rng.choice(cands)

    class _Sub(ast.NodeTransformer):
        def generic_visit(self, node):
            if node is pick:
                return ast.copy_location(ast.Name(id=name, ctx=ast.Load()), node)
            return super().generic_visit(node)

    sub_src = ast.unparse(pick)
    new = _Sub().visit(tree)
    return f"{name} = {sub_src}", ast.unparse(new)


def _outer_names(code: str, known: set[str]) -> list[str]:
    """Names in `code` that are bound outside it (params, loop vars, locals), in first-use order."""
    out: list[str] = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Name) and node.id in known and node.id not in out:
            out.append(node.id)
    return out
