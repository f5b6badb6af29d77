"""Stage-II reward (code generation): pass rate of the model's solution on the problem's tests.

Parent-side, pure: extract the code, validate the test record, build sandbox payloads for
`targets:run_tests` (inputs only) and compare what the child returned with the expected outputs.
The sandbox jobs themselves are scheduled by `rewards/scorer.py`: one job with all tests, and only
when that job dies without per-test verdicts (hang past the wall limit, os._exit, crash), one job
per test for the first `codegen_max_single_tests` tests, as the reference harness does.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from execverify_jax.data import safe_codec
from execverify_jax.rewards import parse
from execverify_jax.rewards.config import RewardConfig
from execverify_jax.rewards.result import RewardResult
from execverify_jax.rewards.whitebox import RecordError, python_equal

# The APPS/PRIME harness prepends these imports to every solution; solutions written for that
# harness may rely on them (e.g. `math` without importing it).
APPS_PRELUDE = "\n".join([
    "from string import *", "from re import *", "from datetime import *", "from collections import *",
    "from heapq import *", "from bisect import *", "from copy import *", "from math import *",
    "from random import *", "from statistics import *", "from itertools import *",
    "from functools import *", "from operator import *", "from io import *", "from sys import *",
    "from json import *", "from builtins import *", "from typing import *",
    "import string", "import re", "import datetime", "import collections", "import heapq",
    "import bisect", "import copy", "import math", "import random", "import statistics",
    "import itertools", "import functools", "import operator", "import io", "import sys", "import json",
    "sys.setrecursionlimit(6 * 10 ** 5)",
])


@dataclass(frozen=True)
class Tests:
    """A problem's tests: call-based when `fn_name` is set, else stdin/stdout text."""

    fn_name: str | None
    inputs: list
    outputs: list


def load_tests(answer: dict) -> Tests:
    """Validates a codegen answer record (Eurus/APPS convention); raises RecordError."""
    tests = answer.get("tests")
    if isinstance(tests, str):  # Eurus stores the ground truth as a JSON string
        try:
            tests = json.loads(tests)
        except ValueError as exc:
            raise RecordError(f"codegen tests are not valid JSON: {exc}") from None
    if not isinstance(tests, dict):
        raise RecordError("codegen answer lacks a 'tests' mapping")
    fn_name = answer.get("fn_name", tests.get("fn_name"))
    inputs, outputs = tests.get("inputs"), tests.get("outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list) or len(inputs) != len(outputs):
        raise RecordError("codegen tests need equal-length 'inputs' and 'outputs' lists")
    if not inputs:
        raise RecordError("codegen tests are empty")
    if fn_name is not None and not (isinstance(fn_name, str) and fn_name.isidentifier()):
        raise RecordError(f"fn_name must be an identifier or null, got {fn_name!r:.80}")
    if fn_name is None and not all(isinstance(x, (str, list)) for x in inputs):
        raise RecordError("stdin tests need string inputs")
    return Tests(fn_name=fn_name or None, inputs=inputs, outputs=outputs)


def extract_code(response: str | bytes | None, cfg: RewardConfig) -> tuple[str | None, bool]:
    """(code of the last ```python block inside the last <answer> span, answer tags present)."""
    text = parse.extract_answer(response, cfg)
    if text is None:
        return None, False
    code = parse.last_code_block(text)
    if code is None or not code.strip():
        return None, True
    return code, True


def prelude(cfg: RewardConfig) -> str:
    """The import header run before each solution."""
    return APPS_PRELUDE if cfg.codegen_prelude == "apps" else ""


def tests_payload(code: str, tests: Tests, indices: list[int], timeout_s: float, cfg: RewardConfig) -> dict:
    """Payload of `targets:run_tests` for the given test indices (inputs only, never outputs)."""
    return {"code": code, "prelude": prelude(cfg), "fn_name": tests.fn_name,
            "inputs": [tests.inputs[i] for i in indices], "timeout_s": timeout_s,
            "max_output_chars": cfg.codegen_max_output_chars}


def _listify(x: Any, depth: int = 0) -> Any:
    # JSON ground truth has no tuples: a returned tuple compares as a list (APPS convention).
    if depth > 100:
        return x
    if type(x) in (list, tuple):
        return [_listify(v, depth + 1) for v in x]
    if type(x) is dict:
        return {k: _listify(v, depth + 1) for k, v in x.items()}
    return x


def call_output_matches(got: Any, expected: Any) -> bool:
    """Call-based verdict: `==` on literal values, tuples as lists, and (APPS) a one-element
    expected list also accepts the bare value. Opaque (non-literal) returns never match."""
    got = _listify(got)
    if python_equal(got, expected):
        return True
    return isinstance(expected, list) and len(expected) == 1 and python_equal(got, expected[0])


def _token_eq(a: str, b: str, tol: float) -> bool:
    if a == b:
        return True
    # Float tolerance only for tokens written as floats: integers must match exactly.
    if tol <= 0 or not any(c in a + b for c in ".eE"):
        return False
    try:
        fa, fb = float(a), float(b)
    except ValueError:
        return False
    return math.isfinite(fa) and math.isfinite(fb) and math.isclose(fa, fb, rel_tol=tol, abs_tol=tol)


def stdout_matches(got: str, expected: Any, tol: float) -> bool:
    """Stdin/stdout verdict (APPS-style): equal after whitespace tokenisation (line breaks and
    runs of spaces are not significant), float-looking tokens within `tol`."""
    if isinstance(expected, list):
        expected = "\n".join(map(str, expected))
    if not isinstance(expected, str) or not isinstance(got, str):
        return False
    if got.strip() == expected.strip():
        return True
    g, e = got.split(), expected.split()
    return len(g) == len(e) and all(_token_eq(x, y, tol) for x, y in zip(g, e))


def verdicts(results: Any, tests: Tests, indices: list[int], cfg: RewardConfig) -> list[bool] | None:
    """Per-test pass/fail from a `run_tests` value, or None when the value is malformed."""
    if not isinstance(results, dict) or not isinstance(results.get("results"), list):
        return None
    rows = results["results"]
    if len(rows) != len(indices):
        return None
    out = []
    for row, i in zip(rows, indices):
        if not (isinstance(row, list) and len(row) == 2 and row[0] == "ok" and isinstance(row[1], str)):
            out.append(False)
            continue
        if tests.fn_name:
            try:
                got = safe_codec.loads(row[1])
            except safe_codec.CodecError:
                out.append(False)
                continue
            out.append(call_output_matches(got, tests.outputs[i]))
        else:
            out.append(stdout_matches(row[1], tests.outputs[i], cfg.codegen_float_tol))
    return out


def codegen_result(passed: list[bool], n_total: int, phase: str, cfg: RewardConfig,
                   extra: dict | None = None) -> RewardResult:
    """Pass rate (+ format bonus when > 0). `phase` is `all` or `single` (the fallback)."""
    denom = n_total if (phase == "all" or cfg.codegen_denominator == "all") else max(1, len(passed))
    rate = sum(passed) / denom if denom else 0.0
    reward = rate + (cfg.codegen_format_bonus if rate > 0 else 0.0)
    details = {"pass_rate": rate, "n_tests": n_total, "n_run": len(passed), "n_passed": sum(passed),
               "phase": phase, **(extra or {})}
    reason = "" if rate == 1.0 else "tests_failed"
    return RewardResult(reward, "codegen", True, reason, details)
