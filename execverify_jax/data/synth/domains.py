"""Value domains, parameters and branch conditions of synthesized programs, and their concrete
(pure-Python) semantics: random draws and goal checks. Split from data/synth/inputs_z3.py (which
re-exports these names and adds the z3 encoding; its docstring describes the design).
"""

from __future__ import annotations

import dataclasses
import random
import string
from typing import Any, Callable

INT_VALUES: tuple[int, ...] = tuple(range(5, 21))
FLOAT_VALUES: tuple[float, ...] = tuple(q / 4 for q in range(20, 81))
# Printable, quote-free alphabet: letters, digits and a few punctuation/space characters.
ALPHABET: tuple[str, ...] = tuple(string.ascii_letters + string.digits + " -_.!#")
WORDS: tuple[str, ...] = (
    "apple", "banana", "cherry", "delta", "eclipse", "falcon", "garden", "harbor", "island", "jungle",
    "kernel", "lemon", "mango", "nectar", "orbit", "pepper", "quartz", "river", "salmon", "tiger",
    "umbra", "violet", "walnut", "xenon", "yellow", "zebra", "amber", "basil", "cobalt", "dunes",
)


@dataclasses.dataclass(frozen=True)
class Domain:
    """A finite value domain; `values` is indexed by the z3 Int of each scalar/element."""

    name: str
    values: tuple[Any, ...]


INT = Domain("int", INT_VALUES)
# Set elements: 15 distinct values out of 5..20 would make every set nearly the full range.
SET_INT = Domain("set_int", tuple(range(1, 31)))
FLOAT = Domain("float", FLOAT_VALUES)
CHAR = Domain("char", ALPHABET)
WORD = Domain("word", WORDS)
LENGTHS: tuple[int, int] = (5, 15)


@dataclasses.dataclass(frozen=True)
class ValueSpace:
    """Where the characters, dict keys and container lengths of entry arguments come from
    (`SynthConfig.values`). Integer, float and set-element domains are the same in every space
    (branch thresholds are drawn from them).

    standard: the paper-like values (strings of 5-15 characters over 67, ten-entry dicts of
    words). compact: 5-7 elements, 12 characters, three-letter words, so that a call's argument
    list is a few tokens: a from-scratch CPU demo policy cannot copy 15-token random strings
    into its assertion (docs/BENCHMARKS.md 5c), which the paper's answer format requires.
    The minimum length stays 5 because templates index elements 0..4.
    """

    name: str
    lengths: tuple[int, int]  # container / string length range, inclusive
    char: Domain  # string characters
    word: Domain  # dict keys and KEY scalars (>= lengths[1] values: dict keys are distinct)
    literal_chars: str  # character literals the program text uses (`s.count('a')`)
    len_thresholds: tuple[int, int]  # `len(x) > t` draws t in this range (inclusive)


STANDARD = ValueSpace("standard", LENGTHS, CHAR, WORD, "aeiostnrl1", (6, 13))
COMPACT = ValueSpace("compact", (5, 7), Domain("char", tuple("abcexyzABE12")),
                     Domain("word", ("ant", "bee", "cat", "dog", "eel", "fox", "gnu", "hen", "owl", "yak")),
                     "abexAB1", (5, 6))
VALUE_SPACES: dict[str, ValueSpace] = {s.name: s for s in (STANDARD, COMPACT)}


@dataclasses.dataclass(frozen=True)
class Param:
    """One entry argument. kind: scalar | str | list | tuple | set | dict (keys `space.word`,
    values elem); strings draw characters from `space.char`."""

    name: str
    kind: str
    elem: Domain
    space: ValueSpace = STANDARD


def elem_domain(p: Param) -> Domain:
    """The domain of one element of a container param (a character of a string, a dict key)."""
    return p.space.char if p.kind == "str" else (p.space.word if p.kind == "dict" else p.elem)


@dataclasses.dataclass(frozen=True)
class Cond:
    """A branch condition on a subject.

    subject: ("scalar", param) | ("len", param) | ("elem", param, lo, hi, var) where the loop
    variable `var` ranges over elements lo..hi-1 (hi None = to the end) of param (dict: keys).
    `pred(value)` decides it for one element/scalar/length. `member_of` makes it the relation
    "value in that param" (encoded as an existential over the param's elements). `py(inputs,
    value)`, when set, replaces both and makes the condition python-only (not encodable).
    """

    subject: tuple
    pred: Callable[[Any], bool] | None = None
    py: Callable[[dict, Any], bool] | None = None
    member_of: str | None = None  # relation "value in <param>" (same domain): z3-encodable

    @property
    def encodable(self) -> bool:
        return self.py is None


Goal = tuple[tuple[Cond, bool], ...]  # conjunction of (condition, required outcome)


@dataclasses.dataclass
class Stats:
    """Where each branch goal's coverage came from, summed over programs."""

    goals: int = 0
    by_random: int = 0
    by_z3: int = 0
    uncovered: int = 0
    python_only_goals: int = 0
    z3_calls: int = 0

    def add(self, other: "Stats") -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def _rand_str(rng: random.Random, space: ValueSpace = STANDARD) -> str:
    """Paper-like strings (reference §2.4 mix), length 5..15 over the alphabet; other spaces:
    the same mix of uniform draws and runs of repeated characters over their own alphabet."""
    u = rng.random()
    n = rng.randint(*space.lengths)
    if space is not STANDARD:
        chars = space.char.values
        if u < 0.5:
            return "".join(rng.choice(chars) for _ in range(n))
        out = ""
        while len(out) < n:
            out += rng.choice(chars) * rng.randint(1, 3)
        return out[:n]
    if u < 0.5:
        pool = string.ascii_letters + string.digits
        return "".join(rng.choice(pool) for _ in range(n))
    if u < 0.85:  # runs of repeated characters, as the paper's repeated-char values
        out = ""
        while len(out) < n:
            out += rng.choice(ALPHABET[:62]) * rng.randint(1, 4)
        return out[:n]
    return "".join(rng.choice(ALPHABET) for _ in range(n))


def random_value(p: Param, rng: random.Random) -> Any:
    """A seeded random value of the param's kind and domain."""
    if p.kind == "scalar":
        return rng.choice(p.elem.values)
    if p.kind == "str":
        return _rand_str(rng, p.space)
    n = rng.randint(*p.space.lengths)
    if p.kind == "set":
        return set(rng.sample(p.elem.values, min(n, len(p.elem.values))))
    if p.kind == "dict":
        return {k: rng.choice(p.elem.values) for k in rng.sample(p.space.word.values, n)}
    seq = [rng.choice(p.elem.values) for _ in range(n)]
    return tuple(seq) if p.kind == "tuple" else seq


def _elements(p: Param, v: Any) -> list:
    if p.kind == "dict":
        return list(v)
    if p.kind == "set":  # sets carry their z3 order only in the encoding; order is irrelevant
        return sorted(v)
    return list(v)


def _subject_values(c: Cond, inputs: dict, params: dict[str, Param]) -> list:
    kind, pname = c.subject[0], c.subject[1]
    v = inputs[pname]
    if kind == "scalar":
        return [v]
    if kind == "len":
        return [len(v)]
    lo, hi = c.subject[2], c.subject[3]
    if params[pname].kind == "set":  # loops over sets run in iteration order
        els = list(v)
    else:
        els = _elements(params[pname], v)
    return els[lo:hi]


def _holds(c: Cond, inputs: dict, value: Any) -> bool:
    if c.py is not None:
        return bool(c.py(inputs, value))
    if c.member_of is not None:
        return value in inputs[c.member_of]
    return bool(c.pred(value))


def goal_holds(goal: Goal, inputs: dict, params: dict[str, Param]) -> bool:
    """Concrete check: does this input reach the goal's path with the required outcomes?"""
    groups: dict[tuple, list[tuple[Cond, bool]]] = {}
    for c, want in goal:
        key = c.subject if c.subject[0] != "elem" else ("elem", c.subject[4])
        groups.setdefault(key, []).append((c, want))
    for key, items in groups.items():
        c0 = items[0][0]
        vals = _subject_values(c0, inputs, params)
        if not any(all(_holds(c, inputs, x) == w for c, w in items) for x in vals):
            return False
    return True


def _intervals(idx: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for i in idx:
        if out and out[-1][1] == i - 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out
