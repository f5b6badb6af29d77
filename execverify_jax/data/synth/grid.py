"""The constraint grid: method-inventory entries crossed with the six structural levels.

A `Cell` names what a program must test (group + method entry of `builtin_methods.json`) and
its structural level. Level flags follow the paper's six generation configurations
(reference §2.3): every level uses nested calls; level >= 2 adds other built-in methods;
levels 3/4/5 add a control-flow chain of depth 1/2/3; level 6 is level 5 plus a helper+entry
pair. The concrete control-flow chain (items from {if, for, while, if-elif}) is drawn per
program from its seed and stored in the program's constraint record, not in the cell, so one
cell yields many differently structured programs.
"""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from typing import Iterable, Sequence

LEVELS: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
CF_KINDS: tuple[str, ...] = ("if", "for", "while", "if-elif")

# level -> (other_methods, cf_depth, helper); nested calls are on at every level (paper §2.3).
LEVEL_FLAGS: dict[int, tuple[bool, int, bool]] = {
    1: (False, 0, False),
    2: (True, 0, False),
    3: (True, 1, False),
    4: (True, 2, False),
    5: (True, 3, False),
    6: (True, 3, True),
}


@dataclasses.dataclass(frozen=True)
class Cell:
    """One grid cell: which inventory entry is tested, at which structural level."""

    group: str
    method: str
    level: int
    cf_depth: int
    helper: bool
    nested: bool
    other_methods: bool

    @property
    def key(self) -> str:
        """Stable text key, used in ids and seeds."""
        return f"{self.group}|{self.method}|{self.level}"


def load_inventory() -> dict[str, list[str]]:
    """The method inventory shipped as package data (11 groups, 186 entries), in file order."""
    text = resources.files("execverify_jax.data").joinpath("builtin_methods.json").read_text()
    inv = json.loads(text)
    if not isinstance(inv, dict) or not all(isinstance(v, list) for v in inv.values()):
        raise ValueError("builtin_methods.json must map group name -> list of entries")
    return inv


def make_cell(group: str, method: str, level: int) -> Cell:
    """The cell for one (group, method, level), with the level's flags."""
    if level not in LEVEL_FLAGS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    other, depth, helper = LEVEL_FLAGS[level]
    return Cell(group, method, level, depth, helper, True, other)


def build_grid(
    levels: Iterable[int] = LEVELS,
    groups: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
) -> list[Cell]:
    """All cells for the requested levels/groups/methods, in a deterministic order.

    Order: level, then group (sorted), then inventory order within the group. `methods`
    filters on entry text (e.g. ``["replace", "+"]``); unknown groups or methods are errors.
    """
    inv = load_inventory()
    levels = tuple(levels)
    for lv in levels:
        if lv not in LEVEL_FLAGS:
            raise ValueError(f"level must be one of {LEVELS}, got {lv!r}")
    if groups is not None:
        unknown = [g for g in groups if g not in inv]
        if unknown:
            raise ValueError(f"unknown groups {unknown}; known: {sorted(inv)}")
    if methods is not None:
        known = {m for ms in inv.values() for m in ms}
        unknown = [m for m in methods if m not in known]
        if unknown:
            raise ValueError(f"unknown methods {unknown}")
    cells = []
    for lv in sorted(set(levels)):
        for g in sorted(inv):
            if groups is not None and g not in groups:
                continue
            for m in inv[g]:
                if methods is not None and m not in methods:
                    continue
                cells.append(make_cell(g, m, lv))
    return cells


def shard(cells: Sequence[Cell], shard_index: int, num_shards: int) -> list[Cell]:
    """Round-robin slice `shard_index` of `num_shards`: disjoint, covering, balanced by level."""
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ValueError(f"need 0 <= shard_index < num_shards, got {shard_index}/{num_shards}")
    return list(cells[shard_index::num_shards])
