"""Fixtures of the evaluation-harness tests: a grading context with a small sandbox pool,
the DREval folder, and tiny LCB / codegen / synthetic fixtures written in their published schemas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from execverify_jax.data import safe_codec


@pytest.fixture(scope="module")
def ctx():
    """A GradeContext with 2 sandbox workers (closed after the module)."""
    from execverify_jax.eval.base import GradeContext

    c = GradeContext(timeout_s=3.0, workers=2)
    yield c
    c.close()


@pytest.fixture(scope="session")
def dreval_dir(shared_data: Path) -> Path:
    d = shared_data / "benchmarks"
    if not (d / "DREval_data.jsonl").is_file() or not (d / "DREval_tasks.jsonl").is_file():
        pytest.skip(f"DREval files not found in {d}")
    return d


# LiveCodeBench execution-v2 schema (dataset card of livecodebench/execution-v2): question_id,
# id, function_name, code, input (a call with keyword arguments), output, numsteps, problem_id,
# contest_id, contest_date, difficulty.
LCB_ROWS = [
    {"question_id": 2802, "id": "sample_0", "function_name": "punishmentNumber",
     "code": "def punishmentNumber(n: int) -> int:\n    total = 0\n    for i in range(1, n + 1):\n"
             "        if i % 3 == 0:\n            total += i * i\n    return total",
     "input": "punishmentNumber(n = 10)", "output": "126", "numsteps": 600, "problem_id": [0, 1, 2],
     "contest_id": "weekly-contest-346", "contest_date": "2023-05-21T00:00:00", "difficulty": "medium"},
    {"question_id": 2803, "id": "sample_1", "function_name": "splitWords",
     "code": "def splitWords(words: list, separator: str) -> list:\n    out = []\n    for w in words:\n"
             "        out.extend(p for p in w.split(separator) if p)\n    return out",
     "input": "splitWords(words = ['one.two.three', 'four.five', 'six'], separator = '.')",
     "output": "['one', 'two', 'three', 'four', 'five', 'six']", "numsteps": 589, "problem_id": [1, 2, 3],
     "contest_id": "weekly-contest-355", "contest_date": "2023-07-23T00:00:00", "difficulty": "easy"},
    {"question_id": 2804, "id": "sample_2", "function_name": "minimumCost",
     "code": "def minimumCost(s: str) -> int:\n    ans = 0\n    for i in range(1, len(s)):\n"
             "        if s[i - 1] != s[i]:\n            ans += min(i, len(s) - i)\n    return ans",
     "input": "minimumCost(s = \"0011\")", "output": "2", "numsteps": 570, "problem_id": [2, 3, 4],
     "contest_id": "weekly-contest-347", "contest_date": "2023-05-28T00:00:00", "difficulty": "medium"},
]


@pytest.fixture
def lcb_file(tmp_path: Path) -> Path:
    p = tmp_path / "lcb_execution.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in LCB_ROWS) + "\nnot json\n")
    return p


# Stage-II rows in the Eurus-2-RL-Data layout: chat `prompt`, `reward_model.ground_truth` as a
# JSON string (call-based with fn_name, or stdin/stdout). `solution`/`wrong` are ours (test only).
CODEGEN_ROWS = [
    {"id": "cg-call", "prompt": [{"role": "user", "content": "Write add(a, b) returning a + b."}],
     "reward_model": {"style": "rule", "ground_truth": json.dumps(
         {"fn_name": "add", "inputs": [[1, 2], [5, -3], [0, 0]], "outputs": [3, 2, 0]})},
     "solution": "def add(a, b):\n    return a + b\n", "wrong": "def add(a, b):\n    return a - b\n"},
    {"id": "cg-stdin", "prompt": [{"role": "user", "content": "Read n and print n squared."}],
     "reward_model": {"style": "rule", "ground_truth": json.dumps(
         {"inputs": ["3\n", "12\n"], "outputs": ["9\n", "144\n"]})},
     "solution": "n = int(input())\nprint(n * n)\n", "wrong": "n = int(input())\nprint(n + n)\n"},
]


@pytest.fixture
def codegen_file(tmp_path: Path) -> Path:
    p = tmp_path / "codegen.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in CODEGEN_ROWS) + "\n{\"broken\": 1}\n")
    return p


PROGRAM = ("def f(xs, k):\n"
           "    out = []\n"
           "    for x in xs:\n"
           "        if x > k:\n"
           "            out.append(x * 2)\n"
           "    return out\n")


def synthetic_records() -> tuple[list[dict], list[dict]]:
    """(programs, questions) in the synth output schema (docs/DATA.md), built by hand."""
    enc = safe_codec.to_jsonable
    programs = [{"id": "p1", "code": PROGRAM, "entry": "f", "inputs": ["[1, 5, 7], 4"], "outputs": [enc([10, 14])],
                 "level": 2, "group": "list", "method": "append", "split": "heldout"},
                {"id": "p2", "code": PROGRAM, "entry": "f", "inputs": ["[3], 1"], "outputs": [enc([6])],
                 "level": 3, "group": "list", "method": "append", "split": "heldout"}]
    io = {"id": "p1:io", "program_id": "p1", "kind": "io_mixed", "split": "heldout",
          "messages": [{"role": "user", "content": "(io_mixed prompt)"}],
          "answer": {"layout": "io_mixed", "program": {"code": PROGRAM, "entry": "f", "args": "[1, 5, 7], 4"},
                     "output": enc([10, 14]),
                     "subquestions": [
                         {"kind": "next_statement", "line": 5, "occurrence": 1, "accept": ["    for x in xs:"]},
                         {"kind": "value_type", "line": 5, "occurrence": 2, "var": "out", "nil": False,
                          "accept": [{"value": enc([10, 14]), "type": "list"}]},
                         {"kind": "coverage", "line": 5, "executed": True}]}}
    oi = {"id": "p2:oi", "program_id": "p2", "kind": "oi", "split": "heldout",
          "messages": [{"role": "user", "content": "(oi prompt)"}],
          "answer": {"layout": "oi", "program": {"code": PROGRAM, "entry": "f", "args": "[3], 1"},
                     "output": enc([6])}}
    train = dict(oi, id="p2:oi:train", split="train")
    return programs, [io, oi, train]
