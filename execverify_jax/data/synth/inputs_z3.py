"""Input synthesis with z3: argument values that satisfy types, size ranges and branch goals.

Every argument lives in a *finite* domain (ints 5..20, floats q/4 for q in 20..80, characters
of a fixed alphabet, dict keys from a word list), and collections have lengths 5..15. So each
scalar or element is encoded as a z3 Int *index into its domain's value list*, and any
predicate on an element (``ch.isupper()``, ``x % 3 == 0``, ``key < 'm'``) is encoded exactly by
tabulating it over the domain (membership in a union of index intervals). No string theory is
needed, formulas stay tiny, and solving takes a few milliseconds.

A branch *goal* is a conjunction of condition outcomes along a path (the enclosing branches
plus the branch itself). Conditions on the same loop variable are grouped into one existential
over that loop's index range (``exists i < len: c1(e_i) and not c2(e_i)``); scalar conditions
apply to the value directly. Conditions with no tabular encoding (relations between two
arguments, like ``s.count(ch) > 1``, or order-dependent subjects like ``sorted(b)[:3]``) are
"python-only": they are checked concretely, and only seeded random resampling can cover them.

Algorithm per program (see `InputSolver.solve`): inputs are first chosen greedily from seeded
random draws (paper-like distributions), which is cheap and covers most goals; z3 is called only
for the goals still uncovered, re-solving one input at a time anchored to its random value
(every element pinned by an assumption literal; unsat cores release only the conflicting pins),
so solved inputs stay diverse and natural-looking. Statistics say how many goals were covered by the random draw, by z3, or not
at all (infeasible, or python-only and missed).
"""

from __future__ import annotations

import random
from typing import Any, Callable, Sequence

import z3

# The domains and conditions live in domains.py; re-exported so `inputs_z3 as iz` stays the one import.
from execverify_jax.data.synth.domains import (  # noqa: F401
    ALPHABET, CHAR, COMPACT, FLOAT, FLOAT_VALUES, INT, INT_VALUES, LENGTHS, SET_INT, STANDARD, VALUE_SPACES, WORD,
    WORDS, Cond, Domain, Goal, Param, Stats, ValueSpace, _elements, _intervals, elem_domain, goal_holds, random_value)


class InputSolver:
    """Solves inputs for one program: params, branch goals, hard preconditions."""

    def __init__(self, params: Sequence[Param], goals: Sequence[Goal], needs: Sequence[Goal],
                 rng: random.Random, timeout_ms: int = 200, max_tries: int = 4, use_z3: bool = True):
        self.params = {p.name: p for p in params}
        self.order = [p.name for p in params]
        self.goals = list(goals)
        self.needs = list(needs)
        self.rng = rng
        self.timeout_ms = timeout_ms
        self.max_tries = max_tries
        self.use_z3 = use_z3
        self.stats = Stats()
        self._z: dict | None = None

    # ------------------------------------------------------------------ z3 encoding
    def _solver(self) -> z3.Solver:
        if self._z is None:
            s = z3.Solver()
            s.set("timeout", self.timeout_ms)
            s.set("random_seed", self.rng.randrange(1 << 30))
            self._z = {"__solver__": s}
        return self._z["__solver__"]

    def _var(self, name: str):
        """z3 variables of one param, created (with domain constraints) on first use only."""
        s = self._solver()
        z = self._z
        if name in z:
            return z[name]
        p = self.params[name]
        if p.kind == "scalar":
            x = z3.Int(f"{name}")
            s.add(x >= 0, x < len(p.elem.values))
            z[name] = x
            return x
        dom = elem_domain(p)
        lo, hi = p.space.lengths
        n = z3.Int(f"{name}_len")
        es = [z3.Int(f"{name}_{i}") for i in range(hi)]
        s.add(n >= lo, n <= hi)
        s.add(*[z3.And(e >= 0, e < len(dom.values)) for e in es])
        if p.kind in ("set", "dict"):  # distinct elements / keys (domains hold >= 15 values)
            s.add(z3.Distinct(es))
        vs = None
        if p.kind == "dict":
            vs = [z3.Int(f"{name}_v{i}") for i in range(hi)]
            s.add(*[z3.And(v >= 0, v < len(p.elem.values)) for v in vs])
        z[name] = (n, es, dom, vs)
        return z[name]

    def _member(self, x, dom: Domain, pred: Callable[[Any], bool]):
        ok = [i for i, v in enumerate(dom.values) if pred(v)]
        if not ok:
            return z3.BoolVal(False)
        return z3.Or([z3.And(x >= a, x <= b) if a != b else x == a for a, b in _intervals(ok)])

    def _encode_cond(self, c: Cond, want: bool, elem=None):
        kind, pname = c.subject[0], c.subject[1]
        p = self.params[pname]
        if c.member_of is not None:
            x = self._var(pname) if kind == "scalar" else elem
            n2, es2, _, _ = self._var(c.member_of)
            f = z3.Or([z3.And(i < n2, e == x) for i, e in enumerate(es2)])
            return f if want else z3.Not(f)
        if kind == "scalar":
            f = self._member(self._var(pname), p.elem, c.pred)
        elif kind == "len":
            n = self._var(pname)[0]
            lo, hi = p.space.lengths
            f = z3.Or([n == k for k in range(lo, hi + 1) if c.pred(k)] or [z3.BoolVal(False)])
        else:
            f = self._member(elem, self._var(pname)[2], c.pred)
        return f if want else z3.Not(f)

    def _encode_goal(self, goal: Goal):
        groups: dict[tuple, list[tuple[Cond, bool]]] = {}
        for c, want in goal:
            key = c.subject if c.subject[0] != "elem" else ("elem", c.subject[4])
            groups.setdefault(key, []).append((c, want))
        parts = []
        for key, items in groups.items():
            c0 = items[0][0]
            if c0.subject[0] != "elem":
                parts += [self._encode_cond(c, w) for c, w in items]
                continue
            pname, lo, hi = c0.subject[1], c0.subject[2], c0.subject[3]
            n, es, _, _ = self._var(pname)
            longest = self.params[pname].space.lengths[1]
            hi_ = longest if hi is None else min(hi, longest)
            parts.append(z3.Or([z3.And(i < n, *[self._encode_cond(c, w, es[i]) for c, w in items])
                                for i in range(lo, hi_)]))
        return z3.And(parts) if parts else z3.BoolVal(True)

    def _anchors(self, sample: dict) -> list:
        z = self._z
        out = []
        for name, p in self.params.items():
            if name not in z:
                continue
            v = sample[name]
            if p.kind == "scalar":
                out.append(z[name] == p.elem.values.index(v))
                continue
            n, es, dom, vs = z[name]
            els = _elements(p, v) if p.kind != "set" else list(v)
            if p.kind == "set":
                els = sorted(els)
            out.append(n == len(els))
            for i, x in enumerate(els):
                out.append(es[i] == dom.values.index(x))
                if vs is not None:
                    out.append(vs[i] == p.elem.values.index(v[x]))
        return out

    def _decode(self, m: z3.ModelRef, sample: dict) -> dict:
        z = self._z
        out = dict(sample)
        for name, p in self.params.items():
            if name not in z:
                continue
            if p.kind == "scalar":
                out[name] = p.elem.values[m.eval(z[name], model_completion=True).as_long()]
                continue
            n, es, dom, vs = z[name]
            k = m.eval(n, model_completion=True).as_long()
            items = [dom.values[m.eval(e, model_completion=True).as_long()] for e in es[:k]]
            if p.kind == "str":
                out[name] = "".join(items)
            elif p.kind == "list":
                out[name] = items
            elif p.kind == "tuple":
                out[name] = tuple(items)
            elif p.kind == "set":
                out[name] = set(items)
            else:
                out[name] = {key: p.elem.values[m.eval(v, model_completion=True).as_long()]
                             for key, v in zip(items, vs[:k])}
        return out

    def _check(self, s: z3.Solver, anchors: list) -> bool:
        """sat under the anchors, releasing anchors from unsat cores (at most 4 rounds)."""
        lits = {z3.Bool(f"anchor_{i}"): a for i, a in enumerate(anchors)}
        for b, a in lits.items():
            s.add(z3.Implies(b, a))
        live = list(lits)
        for _ in range(4):
            self.stats.z3_calls += 1
            r = s.check(*live)
            if r == z3.sat:
                return True
            if r != z3.unsat:
                break
            core = {str(c) for c in s.unsat_core()}
            if not core:
                break
            live = [b for b in live if str(b) not in core]
        self.stats.z3_calls += 1
        return s.check() == z3.sat

    def _z3_cover(self, sample: dict, targets: list[Goal]) -> tuple[dict | None, list[Goal], list[Goal]]:
        """A model satisfying the needs and as many `targets` as possible, near `sample`.

        Every scalar/element of the random sample is pinned by an assumption literal; unsat
        cores release only the pins that conflict, so the solved input differs from the random
        draw where the goal requires it and nowhere else (z3's own choices are boring: 'aaaaa').
        """
        s = self._solver()
        for g in list(self.needs) + list(targets):  # domain constraints live outside push scopes
            for c, _ in g:
                self._var(c.subject[1])
                if c.member_of is not None:
                    self._var(c.member_of)
        s.push()
        try:
            for g in self.needs:
                s.add(self._encode_goal(g))
            goal_f = [self._encode_goal(g) for g in targets]
            got: list[Goal] = []
            dead: list[Goal] = []  # unsatisfiable on their own (given the needs): never retry
            for g, f in zip(targets, goal_f):
                s.push()
                s.add(f)
                self.stats.z3_calls += 1
                if s.check() == z3.sat:
                    got.append(g)
                    continue
                s.pop()
                if not got:
                    dead.append(g)
            ok = self._check(s, self._anchors(sample))
            model = self._decode(s.model(), sample) if ok else None
            for _ in range(len(got)):
                s.pop()
            return model, (got if ok else []), dead
        finally:
            s.pop()

    # ------------------------------------------------------------------ main loop
    def _sample(self) -> dict:
        return {name: random_value(self.params[name], self.rng) for name in self.order}

    def _ok_needs(self, x: dict) -> bool:
        return all(goal_holds(g, x, self.params) for g in self.needs)

    def _covers(self, x: dict) -> set[int]:
        return {i for i, g in enumerate(self.goals) if goal_holds(g, x, self.params)}

    def _key(self, x: dict) -> str:
        return repr(sorted((k, repr(v)) for k, v in x.items()))

    def solve(self, n_inputs: int) -> list[dict]:
        """`n_inputs` distinct inputs (fewer only if the domain cannot provide them).

        Phase 1 (cheap): each input is the best of `max_tries` seeded random draws, greedily
        maximising newly covered goals. Phase 2 (z3, only when needed): goals still uncovered
        and encodable are solved into the inputs, last slot first, each re-solve anchored to
        the slot's current value and required to keep the goals only that slot covers.
        """
        self.stats.goals = len(self.goals)
        self.stats.python_only_goals = sum(1 for g in self.goals if not all(c.encodable for c, _ in g))
        inputs: list[dict] = []
        seen: set[str] = set()
        covered: set[int] = set()
        for _ in range(n_inputs * 4):
            if len(inputs) >= n_inputs:
                break
            best, best_cov = None, set()
            for _t in range(self.max_tries):
                x = self._sample()
                if not self._ok_needs(x) or self._key(x) in seen:
                    continue
                cov = self._covers(x) - covered
                if best is None or len(cov) > len(best_cov):
                    best, best_cov = x, cov
            if best is None and self.needs and self.use_z3:  # preconditions random draws missed
                best, _, _ = self._z3_cover(self._sample(), [])
                if best is not None and self._key(best) in seen:
                    best = None
            if best is None:
                continue
            seen.add(self._key(best))
            covered |= self._covers(best)
            inputs.append(best)
        by_random = set(covered)
        if self.use_z3 and inputs:
            infeasible: set[int] = set()
            for slot in reversed(range(len(inputs))):
                remaining = [i for i in range(len(self.goals)) if i not in covered and i not in infeasible
                             and all(c.encodable for c, _ in self.goals[i])]
                if not remaining:
                    break
                others: set[int] = set()
                for j, x in enumerate(inputs):
                    if j != slot:
                        others |= self._covers(x)
                unique = sorted(self._covers(inputs[slot]) - others)
                self.rng.shuffle(remaining)
                keep = [self.goals[i] for i in unique if all(c.encodable for c, _ in self.goals[i])]
                model, _got, dead = self._z3_cover(inputs[slot], keep + [self.goals[i] for i in remaining])
                dead_ids = {id(g) for g in dead}
                infeasible.update(i for i in remaining if id(self.goals[i]) in dead_ids)
                if model is None or self._key(model) in seen:
                    continue
                new_cov = others | self._covers(model)
                if len(new_cov) > len(covered):
                    seen.discard(self._key(inputs[slot]))
                    seen.add(self._key(model))
                    inputs[slot] = model
                    covered = new_cov
        self.stats.by_random = len(by_random & covered)
        self.stats.by_z3 = len(covered - by_random)
        self.stats.uncovered = len(self.goals) - len(covered)
        return inputs
