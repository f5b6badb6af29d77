"""Input prediction and code generation through the hardened sandbox pool, including attacks."""

from __future__ import annotations

import dataclasses
import json

import pytest

from execverify_jax.data import safe_codec
from execverify_jax.rewards.scorer import Scorer
from execverify_jax.rewards.config import RewardConfig
from execverify_jax.rewards.whitebox import RecordError

# Short timeouts keep the hanging-solution tests fast; semantics are those of the defaults.
FAST = RewardConfig(oi_timeout_s=2.0, codegen_test_timeout_s=0.5, codegen_all_timeout_s=1.5,
                    codegen_single_timeout_s=0.3, codegen_single_wall_s=1.0)


def ans(text: str) -> str:
    return f"<reasoning>r</reasoning>\n<answer>\n{text}\n</answer>"


def block(code: str) -> str:
    return ans(f"```python\n{code}\n```")


# ---------------------------------------------------------------------------------------- oi


@pytest.mark.parametrize("text,reward", [
    ("assert f('abc', 2) == ['A', 'bb', 'C']", 2.0),
    ("assert f('abc', k=2) == ['A', 'bb', 'C']", 2.0),  # keyword form, same call
    ("assert f(s='abc', k=2) == ????", 0.0),  # placeholder left
    ("assert f('abc', 3) == ['A', 'bb', 'C']", 0.0),  # wrong input
    ("assert f('abc', 2) == 'anything'", 2.0),  # only the arguments matter
    ("assert f(x) == ['A', 'bb', 'C']", 0.0),  # names are not literals
    ("assert f(__import__('os').getcwd(), 2) == ['A', 'bb', 'C']", 0.0),
    ("assert f(*('abc', 2)) == ['A', 'bb', 'C']", 0.0),
    ("assert f(f'abc', 2) == ['A', 'bb', 'C']", 0.0),
    ("assert f((lambda: 'abc')(), 2) == ['A', 'bb', 'C']", 0.0),
    ("assert f((s := 'abc'), 2) == ['A', 'bb', 'C']", 0.0),
    ("assert True", 0.0),
    ("assert g('abc', 2) == ['A', 'bb', 'C']", 0.0),
])
def test_oi(pool, oi_record, text, reward):
    r = Scorer(pool, FAST).score(oi_record, ans(text))
    assert r.reward == reward, r


def _oi(code: str, args: str, output) -> dict:
    return {"id": "q?", "kind": "oi", "answer": {"layout": "oi", "program": {"code": code, "entry": "f", "args": args},
                                                 "output": safe_codec.to_jsonable(output)}}


def test_oi_question_marks_inside_literals_are_values_not_the_placeholder(pool):
    # The prompt's placeholder is a bare `????` in the argument list (not Python); '????' as a
    # string, the asserted output here or an argument, is a legitimate answer.
    scorer = Scorer(pool, FAST)
    marks_out = _oi("def f(n):\n    return '?' * n", "4", "????")
    assert scorer.score(marks_out, ans("assert f(4) == '????'")).reward == 2.0
    marks_in = _oi("def f(s):\n    return len(s)", "'????'", 4)
    assert scorer.score(marks_in, ans("assert f('????') == 4")).reward == 2.0
    left = scorer.score(marks_out, ans("assert f(????) == '????'"))
    assert left.reward == 0.0 and left.reason == "placeholder_left"


def test_oi_rewriting_the_function_does_not_help(pool, oi_record):
    scorer = Scorer(pool, FAST)
    rewrite = "def f(s, k):\n    return ['A', 'bb', 'C']\n\nassert f('zzz', 9) == ['A', 'bb', 'C']"
    assert scorer.score(oi_record, block(rewrite)).reward == 0.0
    # With the right arguments the rewrite is ignored too (the ground truth runs): still correct.
    right = "def f(s, k):\n    raise SystemExit\n\nassert f('abc', 2) == ['A', 'bb', 'C']"
    assert scorer.score(oi_record, block(right)).reward == 2.0
    # Only the first assertion counts: no hedging with several.
    hedge = "assert f('zzz', 1) == 0\nassert f('abc', 2) == ['A', 'bb', 'C']"
    assert scorer.score(oi_record, block(hedge)).reward == 0.0


def test_oi_ground_truth_failures_score_zero(pool, oi_record):
    oi_record["answer"]["program"]["code"] = "def f(n):\n    while n:\n        pass\n    return 1 / n\n"
    oi_record["answer"]["output"] = 1.0
    scorer = Scorer(pool, dataclasses.replace(FAST, oi_timeout_s=0.5))
    assert scorer.score(oi_record, ans("assert f(1) == 1.0")).reward == 0.0  # hangs: timeout
    r = scorer.score(oi_record, ans("assert f(0) == 1.0"))  # ZeroDivisionError
    assert r.reward == 0.0 and r.reason == "error"


def test_oi_cache_shares_identical_runs(pool, oi_record):
    scorer = Scorer(pool, FAST)
    texts = ["assert f('abc', 2) == 1", "assert f(\"abc\",2) == 2", "assert f('abc', 3) == 1"] * 5
    results = scorer.score_batch([oi_record] * len(texts), [ans(t) for t in texts])
    assert [r.reward for r in results] == [2.0, 2.0, 0.0] * 5
    assert scorer.oi_jobs == 1 and scorer.oi_cache_hits == 13  # both distinct runs in one group job
    single = Scorer(pool, dataclasses.replace(FAST, oi_group_size=1))
    assert [r.reward for r in single.score_batch([oi_record] * len(texts), [ans(t) for t in texts])] == \
        [2.0, 2.0, 0.0] * 5
    assert single.oi_jobs == 2


@pytest.mark.parametrize("fork", [False, True])
def test_oi_group_equals_single_jobs_even_when_the_group_dies(pool, oi_record, fork):
    # f(1) disables the alarm and hangs. In-process: the group job dies at its wall limit and
    # every call is rerun in its own job; fork per call: only that call's process is killed.
    # Either way the results are exactly those of one job per answer.
    oi_record["answer"]["program"]["code"] = (
        "import signal\ncounter = []\n"
        "def f(n):\n    counter.append(n)\n    if n == 1:\n"
        "        signal.signal(signal.SIGALRM, signal.SIG_IGN)\n        while True:\n            pass\n"
        "    if n == 2:\n        return 1 / 0\n    return len(counter) * 10 + n\n")
    oi_record["answer"]["output"] = 13
    texts = [ans(f"assert f({n}) == 0") for n in (3, 1, 2, 3, 4)]
    cfg = dataclasses.replace(FAST, oi_timeout_s=0.5, oi_fork_per_call=fork)
    grouped = Scorer(pool, cfg).score_batch([oi_record] * 5, texts)
    single = [Scorer(pool, cfg).score(oi_record, t) for t in texts]
    assert [r.to_dict() for r in grouped] == [r.to_dict() for r in single]
    # Fresh program per call: module state (counter) never leaks between calls.
    assert [r.reward for r in grouped] == [2.0, 0.0, 0.0, 2.0, 0.0]
    assert [r.reason for r in grouped] == ["", "timeout", "error", "", "wrong_args"]


# ----------------------------------------------------------------------------------- codegen

STDIO = {"id": "c1", "answer": {"layout": "codegen", "fn_name": None, "tests": {
    "inputs": ["1 2\n", "3 4\n", "10 20\n", "7 8\n"], "outputs": ["3\n", "7\n", "30\n", "15"]}}}
CALL = {"id": "c2", "answer": {"layout": "codegen", "fn_name": "add", "tests": {
    "inputs": [[1, 2], [3, 4], [[1], [2]], [10, 20]], "outputs": [3, [7], [1, 2], 30]}}}

SUM_STDIO = "a, b = map(int, input().split())\nprint(a + b)"


@pytest.mark.parametrize("code,rate", [
    (SUM_STDIO, 1.0),
    ("import sys\nprint(sum(map(int, sys.stdin.buffer.read().split())))", 1.0),
    ("a, b = map(int, input().split())\nprint(a + b if a < 5 else a - b)", 0.5),  # partially correct
    ("a, b = map(int, input().split())\nprint(a + b)\nexit()", 1.0),  # exit() after output is fine
    ("raise ValueError('boom')", 0.0),  # crashing
    ("while True:\n    pass", 0.0),  # hanging
    ("a, b = map(int, input().split())\nif a == 10:\n    while True: pass\nprint(a + b)", 0.75),
    ("import sys\nsys.exit(0)", 0.0),  # exits before any output
    ("import os\nos._exit(0)", 0.0),  # kills the job without a result
    ("print('PASS')\nprint('All tests passed')", 0.0),  # fake pass lines
    ("import builtins, sys\nbuiltins.print = lambda *a, **k: sys.__stdout__.write('3\\n')\n"
     "builtins.input = lambda *a: '1 2'\nbuiltins.print(input())", 0.0),  # patched print/input
    ("import os\nos.write(1, b'3\\n')", 0.0),  # writing the real fd 1 bypasses the capture
    ("import glob, os\nprint(glob.glob('/**/*expected*', recursive=True), os.environ)", 0.0),
    ("print('x' * 10**8)", 0.0),  # output flood
    ("import sys, threading\nthreading.stack_size(2**26)\nsys.setrecursionlimit(10**5)\n"
     "def main():\n    a, b = map(int, input().split())\n    print(a + b)\n"
     "threading.Thread(target=main).start()", 1.0),  # big-stack thread idiom
])
def test_codegen_stdio(pool, code, rate):
    r = Scorer(pool, FAST).score(STDIO, block(code))
    assert r.details["pass_rate"] == rate, r
    assert r.reward == pytest.approx(rate + (0.05 if rate > 0 else 0.0))


def test_codegen_patching_print_does_not_leak_into_other_tests(pool):
    # The first test run patches builtins.print (and marks `sys`); later tests in the same job
    # must see the real print again, so only the first test fails.
    code = ("import builtins, sys\nif not hasattr(sys, '_seen'):\n    sys._seen = 1\n"
            "    builtins.print = lambda *a, **k: None\n" + SUM_STDIO)
    # Without the APPS prelude (whose `from builtins import *` would pin the real print).
    r = Scorer(pool, dataclasses.replace(FAST, codegen_prelude="none")).score(STDIO, block(code))
    assert r.details["phase"] == "all" and r.details["pass_rate"] == 0.75


@pytest.mark.parametrize("code,rate", [
    ("def add(a, b):\n    return a + b", 1.0),  # [7] accepts 7 (APPS single-element convention)
    ("def add(a, b):\n    return a + b if isinstance(a, int) else tuple(a + b)", 1.0),  # tuples as lists
    ("def add(a, b):\n    return (a + b,)", 0.25),  # a 1-tuple is not the bare value (only [7] ~ 7)
    ("class Solution:\n    def add(self, a, b):\n        return a + b", 1.0),
    ("def add(a, b):\n    return a + b if a != 3 else 0", 0.75),
    ("def add(a, b):\n    return [a + b, 0] if a == 3 else a + b", 0.75),  # only 1-element lists unwrap
    ("def add(a, b):\n    raise RuntimeError", 0.0),
    ("def add(a, b):\n    while True: pass", 0.0),
    ("import sys\nsys.exit(0)\ndef add(a, b):\n    return a + b", 0.0),
    ("def add(a, b):\n    import os\n    os._exit(0)", 0.0),
    ("class Eq:\n    def __eq__(self, o):\n        return True\n    __hash__ = None\n"
     "def add(a, b):\n    return Eq()", 0.0),  # objects are Opaque in the parent: never equal
    ("class I(int):\n    def __eq__(self, o):\n        return True\ndef add(a, b):\n    return I(0)", 0.0),
    ("def add(a, b):\n    print(a + b)\n    return None", 0.0),
    ("import json\ndef add(a, b):\n    return json.loads(open('/proc/self/environ').read())", 0.0),
])
def test_codegen_call_based(pool, code, rate):
    r = Scorer(pool, FAST).score(CALL, block(code))
    assert r.details["pass_rate"] == rate, r


def test_codegen_format_and_extraction(pool):
    scorer = Scorer(pool, FAST)
    assert scorer.score(STDIO, SUM_STDIO).reward == 0.0  # no answer span
    assert scorer.score(STDIO, ans(SUM_STDIO)).reason == "no_code"  # no fenced block
    two = ans(f"```python\nprint(0)\n```\n```python\n{SUM_STDIO}\n```")
    assert scorer.score(STDIO, two).reward == pytest.approx(1.05)  # the last block is graded
    no_bonus = Scorer(pool, dataclasses.replace(FAST, codegen_format_bonus=0.0))
    assert no_bonus.score(STDIO, block(SUM_STDIO)).reward == 1.0


def test_codegen_fallback_denominator(pool):
    many = {"answer": {"layout": "codegen", "fn_name": None, "tests": {
        "inputs": [f"{i} 1\n" for i in range(20)], "outputs": [f"{i + 1}\n" for i in range(20)]}}}
    # Hard hang (alarm ignored) on inputs >= 10: the all-tests job dies, per-test fallback runs
    # the first 10 tests, all of which pass.
    code = ("import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
            "a, b = map(int, input().split())\nif a >= 10:\n    while True: pass\nprint(a + b)")
    r = Scorer(pool, FAST).score(many, block(code))
    assert r.details["phase"] == "single" and r.details["n_passed"] == 10
    assert r.details["pass_rate"] == 0.5  # over all 20 tests (default)
    r = Scorer(pool, dataclasses.replace(FAST, codegen_denominator="run")).score(many, block(code))
    assert r.details["pass_rate"] == 1.0  # the reference's passed / run


def test_bad_records_raise(pool):
    scorer = Scorer(pool, FAST)
    for bad in [{"answer": {"layout": "codegen", "tests": {"inputs": [1], "outputs": []}}},
                {"answer": {"layout": "codegen", "fn_name": "x y", "tests": {"inputs": [[1]], "outputs": [1]}}},
                {"answer": {"layout": "oi", "program": {"code": "def f(): pass"}}},
                {"answer": {"layout": "nope"}}, "not a dict"]:
        with pytest.raises(RecordError):
            scorer.submit(bad, "x")


def test_results_do_not_depend_on_pool_size(pool, oi_record, io_record, correct_lines, respond):
    from execverify_jax.data.sandbox import SandboxPool
    from execverify_jax.rewards.scorer import PRELOAD

    qs = [oi_record, io_record, STDIO, CALL] * 3
    rs = [ans("assert f('abc', 2) == 0"), respond(correct_lines), block(SUM_STDIO),
          block("def add(a, b):\n    return a + b if a != 3 else 0"),
          ans("assert f('ab', 2) == 0"), respond(correct_lines[:3]), block("print(3)"),
          block("def add(a, b):\n    return a"),
          ans("assert f(???) == 0"), "junk", block("raise SystemExit(1)"), block("add = 3")]
    with SandboxPool(1, preload=PRELOAD) as one:
        a = [r.to_dict() for r in Scorer(one, FAST).score_batch(qs, rs)]
    b = [r.to_dict() for r in Scorer(pool, FAST).score_batch(qs, rs)]
    assert a == b
    assert [x["reward"] for x in a] == [2.0, 2.0, 1.05, 0.8, 0.0, 1.0, 0.05 + 0.25, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_hostile_batch_never_reaches_the_sandbox(pool, oi_record, io_record, correct_lines, respond):
    hostile = [
        "x" * 2_000_000,
        ans("assert f(" + "[" * 3000 + "]" * 3000 + ", 2) == 1"),
        ans("assert f('" + "a" * 100_000 + "', 2) == 1"),
        ans("\n".join(["assert f('abc', 2) == 1"] * 5000)),
        ans("assert f(__import__('os').system('touch /tmp/pwned'), 2) == 1"),
        ans("assert f(*[1] * 10**9) == 1"),
        b"\xff\xfe<answer>assert f('\xff', 2) == 1</answer>",
        ans("assert f('abc', 2) == ????"),
    ]
    scorer = Scorer(pool, FAST)
    qs = [oi_record] * len(hostile) + [io_record] * len(hostile) + [oi_record, io_record]
    rs = hostile + hostile + [ans("assert f('abc', 2) == 0"), respond(correct_lines)]
    results = scorer.score_batch(qs, rs)
    assert [r.reward for r in results] == [0.0] * (2 * len(hostile)) + [2.0, 2.0]
    # One sandbox job: the two well-formed input predictions (the bytes answer decodes to a valid,
    # wrong, literal) packed together; nothing hostile was ever submitted.
    assert scorer.oi_jobs == 1


class _RecordingPool:
    """Wraps the real pool and keeps every payload sent into the sandbox."""

    def __init__(self, pool):
        self.pool, self.payloads = pool, []
        self.default_limits = pool.default_limits

    def submit(self, target, payload, limits=None):
        self.payloads.append(json.dumps(payload))
        return self.pool.submit(target, payload, limits)


def test_expected_answers_never_enter_the_sandbox(pool, oi_record):
    secret_out = "EXPECTED-7f3a9"
    rec = _RecordingPool(pool)
    scorer = Scorer(rec, FAST)
    codegen_q = {"answer": {"layout": "codegen", "fn_name": None,
                            "tests": {"inputs": ["1\n"], "outputs": [secret_out]}}}
    call_q = {"answer": {"layout": "codegen", "fn_name": "g",
                         "tests": {"inputs": [[1]], "outputs": [secret_out]}}}
    oi_record["answer"]["output"] = secret_out
    oi_record["answer"]["program"]["code"] = "def f(x):\n    return x\n"
    scorer.score(codegen_q, block("print('hello')"))
    scorer.score(codegen_q, block("while True: pass"))  # the per-test fallback too
    scorer.score(call_q, block("def g(x):\n    return x"))
    assert scorer.score(oi_record, ans(f"assert f('{secret_out}') == 0")).reward == 2.0
    assert scorer.score(oi_record, ans("assert f('other') == 0")).reward == 0.0
    assert len(rec.payloads) >= 5
    # The only payload holding the string is the one where the *model* wrote it as an argument.
    holders = [p for p in rec.payloads if secret_out in p]
    assert len(holders) == 1 and '"args": ["' in holders[0]


def test_missing_or_closed_pool_never_leaves_a_future_pending(oi_record):
    from execverify_jax.data.sandbox import SandboxPool
    from execverify_jax.rewards.scorer import PRELOAD

    with pytest.raises(RuntimeError):
        Scorer(None, FAST).submit(oi_record, ans("assert f('abc', 2) == 0"))
    closed = SandboxPool(1, preload=PRELOAD)
    closed.close()
    scorer = Scorer(closed, FAST)
    for q, r in [(oi_record, ans("assert f('abc', 2) == 0")), (STDIO, block(SUM_STDIO))]:
        with pytest.raises(RuntimeError):
            scorer.submit(q, r).result(timeout=10)


def test_oi_ground_truth_prints_are_discarded(pool, oi_record):
    oi_record["answer"]["program"]["code"] = "def f(n):\n    for _ in range(n):\n        print('x' * 1000)\n    return n\n"
    oi_record["answer"]["output"] = 200_000
    scorer = Scorer(pool, dataclasses.replace(FAST, oi_timeout_s=5.0))
    assert scorer.score(oi_record, ans("assert f(200000) == 0")).reward == 2.0  # 200 MB printed
