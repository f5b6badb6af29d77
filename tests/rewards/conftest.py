"""Fixtures for the reward tests: a small sandbox pool and hand-built question records."""

from __future__ import annotations

import pytest

from execverify_jax.data import safe_codec
from execverify_jax.rewards.scorer import PRELOAD

PROGRAM = (
    "def f(s, k):\n"
    "    out = []\n"
    "    for i, c in enumerate(s):\n"
    "        if i % 2 == 0:\n"
    "            out.append(c.upper())\n"
    "        else:\n"
    "            out.append(c * k)\n"
    "    return out\n"
)


@pytest.fixture(scope="module")
def pool():
    """A 2-worker hardened sandbox pool with the reward targets preloaded."""
    from execverify_jax.data.sandbox import SandboxPool

    with SandboxPool(2, preload=PRELOAD) as p:
        yield p


@pytest.fixture
def io_record() -> dict:
    """An io_mixed question record (schema of docs/ARCHITECTURE.md), built by hand."""
    enc = safe_codec.to_jsonable
    return {
        "id": "q1", "program_id": "p1", "kind": "io_mixed", "messages": [],
        "answer": {
            "layout": "io_mixed",
            "program": {"code": PROGRAM, "entry": "f", "args": "'abc', 2"},
            "output": enc(["A", "bb", "C"]),
            "subquestions": [
                {"kind": "next_statement", "line": 4, "occurrence": 2, "accept": ["            out.append(c * k)"]},
                {"kind": "next_statement", "line": 8, "occurrence": 1, "accept": ["-1"]},
                {"kind": "value_type", "line": 3, "occurrence": 2, "var": "c", "nil": False,
                 "accept": [{"value": enc("b"), "type": "str"}]},
                {"kind": "value_type", "line": 5, "occurrence": 1, "var": "out", "nil": False,
                 "accept": [{"value": enc(["A"]), "type": "list"}]},
                {"kind": "value_type", "line": 7, "occurrence": 3, "var": "out", "nil": True, "accept": []},
                {"kind": "coverage", "line": 7, "executed": True},
            ],
        },
    }


CORRECT_LINES = [
    "assert f('abc', 2) == ['A', 'bb', 'C']",
    "            out.append(c * k)",
    "-1",
    "'b'; str",
    "['A']; list",
    "Nil",
    "YES",
]


def respond(lines: list[str], reasoning: str = "thinking") -> str:
    """A response in the <reasoning>/<answer> format with the given answer lines."""
    return f"<reasoning>{reasoning}</reasoning>\n<answer>\n" + "\n".join(lines) + "\n</answer>"


@pytest.fixture
def oi_record() -> dict:
    return {"id": "q2", "kind": "oi", "answer": {
        "layout": "oi", "program": {"code": PROGRAM, "entry": "f", "args": "'abc', 2"},
        "output": safe_codec.to_jsonable(["A", "bb", "C"])}}


@pytest.fixture
def correct_lines() -> list[str]:
    """Answer lines that answer every question of `io_record` correctly."""
    return list(CORRECT_LINES)


@pytest.fixture(name="respond")
def respond_fixture():
    """The `respond(lines)` helper as a fixture (conftest modules are not importable here)."""
    return respond
