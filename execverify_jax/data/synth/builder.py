"""Offline program synthesis: one deterministic program per (cell, seed), no teacher model.

`synthesize(cell, seed, n_inputs, cfg)` draws (from a RNG seeded by cell+seed) a template of the
tested entry, names from per-type pools, literals, a control-flow chain of the cell's depth,
branch conditions over the inputs, and an "other built-in method" transform (level >= 2). It
assembles the function text, normalises it with `ast.unparse`, then asks `inputs_z3` for inputs
that cover the branches. The result is a pure function of its arguments.

Program shape (body of the entry function):
  [work copy init]  [other-method transform]  [accumulator init]
  <chain item 1>                       for / while (counter from an int param) / if / if-elif
      <chain item 2 nested in item 1>  (an if-elif's other branch counts into `alt`)
          <tested usage>               accumulator update, or mutating statements on the copy
  return <accumulator / copy>
Level 6 moves the tested usage into a helper function that the entry calls.
"""

from __future__ import annotations

import ast
import hashlib
import random
import string as _string

from execverify_jax.data.synth import inputs_z3 as iz
from execverify_jax.data.synth.config import SynthConfig
from execverify_jax.data.synth.grid import CF_KINDS, Cell
from execverify_jax.data.synth.parts import (_CTOR, _EMPTY, _both_outcomes_reachable, _Ctx, _flat_elem, _hoist,
                                             _indent, _literal, _loop_header, _make_cond, _Names, _outer_names,
                                             _param)
from execverify_jax.data.synth.templates import GROUP_TYPE, OTHER_METHODS, Tpl, templates_for




def eligible_templates(cell: Cell, in_loop: bool) -> list[Tpl]:
    """Templates of the cell's entry usable at its level (pure at level 1; loop-safe in loops)."""
    tpls = templates_for(cell.group, cell.method)
    ok = [t for t in tpls if (t.pure or cell.other_methods) and (t.loop or not in_loop)
          and (not t.needs or not in_loop)]
    if not ok:
        raise LookupError(f"no template for {cell.group}.{cell.method} at level {cell.level}")
    return ok


def synthesize_with_stats(cell: Cell, seed: int, n_inputs: int, cfg: SynthConfig | None = None, *,
                          template_index: int | None = None) -> tuple[dict | None, iz.Stats]:
    """`synthesize` plus the input solver's coverage statistics for this program.

    `template_index` forces one of `eligible_templates(...)` (modulo their number) instead of
    the seeded draw; tests use it to exercise every template.
    """
    cfg = cfg or SynthConfig()
    rng = random.Random(f"{cell.key}|{seed}")
    names = _Names(rng)
    vtype = GROUP_TYPE[cell.group]
    ctx = _Ctx(cell, rng, names, vtype, {}, [], [], cfg.python_only_prob, iz.VALUE_SPACES[cfg.values])
    chain = [rng.choice(CF_KINDS) for _ in range(cell.cf_depth)]
    in_loop = any(c in ("for", "while") for c in chain)
    tpls = eligible_templates(cell, in_loop)
    tpl = rng.choice(tpls)
    if template_index is not None:
        tpl = tpls[template_index % len(tpls)]
    _param(ctx, "A")
    entry = names("fn")

    # --- placeholder bindings
    j = rng.randint(0, 2)
    k = rng.randint(j, 4)
    c_lit, d_lit = _literal(ctx, 2)
    m = rng.randint(2, 4)
    bind: dict[str, str] = {"J": str(j), "K": str(k), "M": str(m), "K1": str(k + 1), "K2": str(k + 2),
                            "K6": str(k + 6), "M1": str(m + 1), "J4": str(j + 4),
                            "T": str(rng.randint(6, 15)), "C": c_lit, "D": d_lit}
    prelude: list[str] = []
    a_name = _param(ctx, "A")
    bind["A"] = a_name
    if "$B" in tpl.src:
        bind["B"] = _param(ctx, "B")
    if "$N" in tpl.src:
        bind["N"] = _param(ctx, "N")
    for ph in ("P", "Q"):
        if f"${ph}" in tpl.src:
            bind[ph] = names("tmp")
    if "$AK" in tpl.src:
        bind["AK"] = f"list({a_name})[{j}]"

    # --- level >= 2: one other built-in method, transforming a value the template reads (the
    # second value, else the main value, else the source of the working copy, else the int).
    if cell.other_methods:
        reads_a = "$A" in tpl.src.replace("$AK", "") or "$W" in tpl.src or "$AK" in tpl.src
        if "$B" in tpl.src:
            role, otype = "B", vtype
        elif reads_a:
            role, otype = "A", vtype
        else:
            role, otype = "N", "int"
        opts = [(m, s) for m, s in OTHER_METHODS[otype] if m != cell.method]
        _m, osrc = rng.choice(opts)
        derived = names("derived")
        osrc = _string.Template(osrc).substitute(X=bind[role], N=_param(ctx, "N") if "$N" in osrc else "",
                                                 C=c_lit if otype == "float" else "")
        prelude.append(f"{derived} = {osrc}")
        bind[role] = derived
        if role == "A" and "$AK" in tpl.src:
            bind["AK"] = f"list({derived})[{j}]"
    if "$W" in tpl.src:  # the working copy (of the transformed value at level >= 2)
        bind["W"] = names("work")
        prelude.append(f"{bind['W']} = {_CTOR[vtype]}({bind['A']})")

    # --- control flow chain, built outside-in
    known: set[str] = set()
    path = ctx.path
    alt_name = None
    depth = 0
    out_lines: list[str] = []
    tail_by_depth: dict[int, list[str]] = {}
    for item in chain:
        if item == "for":
            hdr, var = _loop_header(ctx, first=not ctx.loops)
            out_lines += _indent([hdr], depth)
            known.add(var)
        elif item == "while":
            n = _param(ctx, "N")
            ctr = names("ctr")
            step = rng.randint(3, 5)
            for _ in range(12):  # a threshold that enclosing conditions on n leave undecided
                t = rng.randint(6, 13)
                cond = iz.Cond(("scalar", n), pred=lambda v, t=t: v > t)
                if _both_outcomes_reachable(ctx, cond, []):
                    break
            ctx.goals += [tuple(path) + ((cond, True),), tuple(path) + ((cond, False),)]
            path.append((cond, True))
            out_lines += _indent([f"{ctr} = {n}", f"while {ctr} > {t}:"], depth)
            tail_by_depth[depth + 1] = [f"{ctr} -= {step}"]
            known.add(ctr)
            ctx.in_while = True
        elif item == "if":
            src, cond = _make_cond(ctx)
            ctx.goals += [tuple(path) + ((cond, True),), tuple(path) + ((cond, False),)]
            path.append((cond, True))
            out_lines += _indent([f"if {src}:"], depth)
        else:  # if-elif: nested chain continues in the `if` branch; the `elif` counts into alt
            src1, c1 = _make_cond(ctx)
            src2, c2 = _make_cond(ctx, [(c1, False)])
            ctx.goals += [tuple(path) + ((c1, True),), tuple(path) + ((c1, False), (c2, True)),
                          tuple(path) + ((c1, False), (c2, False))]
            alt_name = alt_name or names("alt")
            out_lines += _indent([f"if {src1}:"], depth)
            tail_by_depth.setdefault(depth + 1, [])
            tail_by_depth[depth + 1] = tail_by_depth[depth + 1] + [f"__ELIF__{src2}"]
            path.append((c1, True))
        depth += 1
    bind["E"] = ctx.loops[-1][0] if ctx.loops else _flat_elem(ctx)
    for role in ("A", "B", "N", "KEY", "VALS"):
        if role in ctx.params:
            known.add(ctx.params[role].name)
    known.update(v for k_, v in bind.items() if k_ in ("W", "A", "B", "N") and v.isidentifier())
    known.add(bind.get("W", a_name))

    usage = _string.Template(tpl.src).substitute(bind)
    kind = tpl.kind
    pre_usage: list[str] = []
    if kind != "stmt" and rng.random() < 0.5:
        h = _hoist(usage, rng, names("stage"))
        if h is not None:
            pre_usage, usage = [h[0]], h[1]
    helper_name = None
    helper_lines: list[str] = []
    if cell.helper:
        helper_name = names("helper")
        temps = {bind.get("P"), bind.get("Q")}
        args = [n for n in _outer_names(usage, known) if n not in temps] or [a_name]
        if kind == "stmt":
            helper_lines = [f"def {helper_name}({', '.join(args)}):"] + _indent(usage.splitlines() + [f"return {bind['W']}"])
            usage = f"{bind['W']} = {helper_name}({', '.join(args)})"
        else:
            args = [n for n in _outer_names("\n".join(pre_usage + [usage]), known) if n not in temps] or [a_name]
            helper_lines = [f"def {helper_name}({', '.join(args)}):"] + _indent(pre_usage + [f"return {usage}"])
            usage = f"{helper_name}({', '.join(args)})"
            pre_usage = []

    # --- innermost body, accumulator, return
    init: list[str] = []
    if not chain and pre_usage:
        r = names("last")
        inner, ret = pre_usage + [f"{r} = {usage}"], r
        if rng.random() < 0.5:
            inner, ret = pre_usage, usage
    elif not chain:
        if kind == "stmt":
            inner, ret = usage.splitlines(), bind["W"]
        elif rng.random() < 0.5:
            inner, ret = [], usage
        else:
            r = names("last")
            inner, ret = [f"{r} = {usage}"], r
    elif kind == "stmt":
        inner, ret = usage.splitlines(), bind["W"]
    elif kind == "str":
        acc = names("acc_str")
        init.append(f"{acc} = ''")
        inner, ret = [f"{acc} += ({usage})[:2]"], acc
    elif kind in ("int", "bool", "float"):
        acc = names("acc_int")
        init.append(f"{acc} = 0")
        inner, ret = [f"{acc} += {usage}"], acc
    else:
        last, size = names("last"), names("size")
        init += [f"{last} = {_EMPTY[kind]}", f"{size} = 0"]
        inner, ret = [f"{last} = {usage}", f"{size} += len({last})"], f"{size}, {last}"
    if chain and pre_usage:
        inner = pre_usage + inner
    if alt_name:
        init.append(f"{alt_name} = 0")
        ret = f"{ret}, {alt_name}"

    body = list(out_lines)
    body += _indent(inner, depth)
    for d in range(depth, 0, -1):  # close levels inner-out: elif branches and while decrements
        for t_ in tail_by_depth.get(d, []):
            if t_.startswith("__ELIF__"):
                body += _indent([f"elif {t_[8:]}:", f"    {alt_name} += 1"], d - 1)
            else:
                body += _indent([t_], d)
    fn_lines = prelude + init + body + [f"return {ret}"]

    # --- signature: only the inputs the body reads, in role order
    used_names = {n.id for n in ast.walk(ast.parse("def _p():\n" + "\n".join(_indent(fn_lines)))) if isinstance(n, ast.Name)}
    order = [r for r in ("A", "B", "KEY", "N", "VALS") if r in ctx.params and ctx.params[r].name in used_names]
    if not order:
        order = ["A"]
    sig = ", ".join(ctx.params[r].name for r in order)
    src = "\n".join(helper_lines + ([""] if helper_lines else []) + [f"def {entry}({sig}):"] + _indent(fn_lines))
    if "math." in src:
        src = "import math\n\n" + src
    code = ast.unparse(ast.parse(src))

    # --- inputs
    params = [ctx.params[r] for r in order]
    need_goals = []
    for nd in tpl.needs:
        lit = bind["C"] if nd.endswith("_C") else bind["D"]
        need_goals.append(((iz.Cond(("elem", a_name, 0, None, "__need__" + lit), pred=lambda v, x=int(lit): v == x), True),))
    goals = [g for g in ctx.goals if all(any(p.name == c.subject[1] for p in params) for c, _ in g)]
    solver = iz.InputSolver(params, goals, need_goals, rng, timeout_ms=cfg.solver_timeout_ms,
                            max_tries=cfg.sample_tries, use_z3=cfg.use_z3)
    values = solver.solve(n_inputs)
    if not values:
        return None, solver.stats
    inputs = [", ".join(repr(v[p.name]) for p in params) for v in values]
    cid = hashlib.sha256(f"{cell.key}|{seed}".encode()).hexdigest()[:16]
    constraint = {"group": cell.group, "method": cell.method, "level": cell.level, "cf_chain": chain,
                  "helper": cell.helper, "nested": cell.nested, "other_methods": cell.other_methods,
                  "entry": entry, "helper_name": helper_name}
    cand = {"id": cid, "code": code, "entry": entry, "inputs": inputs, "level": cell.level,
            "group": cell.group, "method": cell.method, "constraint": constraint, "seed": seed}
    return cand, solver.stats


def synthesize(cell: Cell, seed: int, n_inputs: int, cfg: SynthConfig | None = None) -> dict | None:
    """One candidate program for `cell` (pure function of the arguments), or None if no inputs."""
    return synthesize_with_stats(cell, seed, n_inputs, cfg)[0]
