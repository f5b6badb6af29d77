"""The fused filter + tracer (`trace_filter`): verdicts, isolation, fallbacks, leakage detection."""

from __future__ import annotations

import json

import pytest

from execverify_jax.data.trace.tracer import trace_program

GOOD = ("def f(xs):\n    out = []\n    for x in xs:\n        out.append(x * 2)\n    return out\n", "f", "[1, 2]")
RANDOM = ("import random\ndef f():\n    return random.random()\n", "f", "")
HASH_ORDER = ("def f():\n    return ''.join({'alpha', 'beta', 'gamma', 'delta', 'eps', 'zeta'})\n", "f", "")
SLEEP = ("import time\ndef f():\n    time.sleep(30)\n", "f", "")
FLOOD = ("import os\ndef f():\n    os.write(1, b'x' * 10 ** 6)\n    return 1\n", "f", "")
INF = ("def f():\n    return float('inf')\n", "f", "")
BAD = ("def f(:\n", "f", "")
RAISES = ("def f(x):\n    return 1 // x\n", "f", "0")


@pytest.fixture(scope="module")
def pool():
    from execverify_jax.data.sandbox import SandboxPool
    from execverify_jax.data.trace.batch import BATCH_TARGET

    with SandboxPool(2, preload=(BATCH_TARGET,)) as p:
        yield p


def test_verdicts(pool):
    from execverify_jax.data.trace.batch import trace_filter

    items = [GOOD, RANDOM, HASH_ORDER, INF, BAD, RAISES, GOOD]
    res = trace_filter(pool, items, batch_size=4)
    assert [r.reason for r in res] == [None, "nondeterministic", "nondeterministic", "repr_roundtrip",
                                       "syntax_error", "error:ZeroDivisionError", None]
    assert res[0].kept and res[0].value == [2, 4]
    assert res[0].trace == trace_program(*GOOD, max_seconds=2.0)  # the kept trace is the real trace


def test_a_timeout_does_not_reject_its_batch_mates(pool):
    from execverify_jax.data.trace.batch import trace_filter

    res = trace_filter(pool, [GOOD, SLEEP, GOOD], batch_size=3, item_timeout_s=0.5)
    assert [r.reason for r in res] == [None, "timeout", None]


def test_a_failed_batch_falls_back_to_single_jobs(pool):
    from execverify_jax.data.trace.batch import trace_filter

    res = trace_filter(pool, [GOOD, FLOOD, GOOD], batch_size=3)
    assert [r.reason for r in res] == [None, "output_overflow", None]


def test_shared_process_leakage_is_caught_by_the_reversed_run(pool):
    from execverify_jax.data.trace.batch import trace_filter

    patcher = ("import builtins\nbuiltins.len = lambda x: 0\ndef f():\n    return 1\n", "f", "")
    user = ("def f(s):\n    return len(s)\n", "f", "'abc'")
    res = trace_filter(pool, [patcher, user], batch_size=2, isolation="none")
    assert res[0].kept
    assert res[1].reason == "nondeterministic"  # it saw the patched len() in one order only
    # "first": the kept run is clean, so a kept trace is never wrong; the shared, reversed
    # digest run can only cause a (safe) false rejection
    res = trace_filter(pool, [patcher, user], batch_size=2, isolation="first")
    assert res[1].kept and res[1].value == 3
    res = trace_filter(pool, [user, patcher], batch_size=2, isolation="first")
    assert res[0].reason == "nondeterministic" and res[1].kept
    res = trace_filter(pool, [patcher, user], batch_size=2, isolation="each")
    assert res[1].kept and res[1].value == 3  # a process per program: no leakage at all
    with pytest.raises(ValueError, match="isolation"):
        trace_filter(pool, [user], isolation="some")


def test_batch_target_in_process_digest_matches():
    from execverify_jax.data.trace.tracer import trace_payload, trace_target
    from execverify_jax.data.trace.batch import digest, trace_batch_target

    items = [trace_payload(*GOOD)]
    full = trace_batch_target({"items": items, "isolate": False})
    dig = trace_batch_target({"items": items, "isolate": True, "digest": True})  # forked: same trace
    # shared-process runs carry the per-item time budget as the tracer's own time limit
    assert json.loads(full[0]) == trace_program(*GOOD, max_seconds=2.0)
    assert dig == [digest(trace_target({**items[0], "max_seconds": 2.0}))]


def test_cruxeval_all_programs_pass_the_fused_filter(pool, cruxeval_path):
    from execverify_jax.data import safe_codec
    from execverify_jax.data.trace.batch import trace_filter

    rows = [json.loads(line) for line in cruxeval_path.read_text().splitlines() if line.strip()]
    res = trace_filter(pool, [(r["code"], "f", r["input"]) for r in rows])
    rejected = [(r["id"], v.reason) for r, v in zip(rows, res) if not v.kept]
    assert rejected == []
    assert all(safe_codec.to_jsonable(v.value) == v.trace["return"]["value"] for v in res)
