"""Sandbox pool: values, errors, limits, ordering, concurrency, worker replacement, targets."""

import json
import os
import threading
import time

import pytest

from execverify_jax.data import safe_codec
from execverify_jax.data.sandbox import RUN_CALL, RUN_CALLS, RUN_STDIO, Limits, Outcome, SandboxPool, Status
from execverify_jax.data.safe_codec import Opaque
from execverify_jax.data.sandbox.limits import Limits as LimitsDirect


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(2, limits=Limits(timeout_s=3.0, memory_mb=512)) as p:
        yield p


def call(pool, code, expr, limits=None):
    return pool.run(RUN_CALL, {"code": code, "call": expr}, limits)


def test_literal_value_and_repr(pool):
    out = call(pool, "def f(x, s):\n    return {'n': x * 2, 's': s.upper(), 't': (1.5, None, b'z')}", "f(21, 'ab')")
    assert out.status is Status.OK and out.ok
    assert out.value == {"n": 42, "s": "AB", "t": (1.5, None, b"z")}
    assert out.value_repr == repr(out.value)
    assert out.error_type is None and out.duration_s > 0


def test_sets_floats_and_special_values_survive_transport(pool):
    out = call(pool, "def f():\n    return [{3, 1}, frozenset([2]), float('inf'), float('nan'), -0.0, 2j, range(1, 4)]", "f()")
    v = out.value
    assert v[0] == {1, 3} and type(v[1]) is frozenset and v[2] == float("inf")
    assert v[3] != v[3] and str(v[4]) == "-0.0" and v[5] == 2j and v[6] == range(1, 4)


def test_opaque_values_keep_type_and_repr(pool):
    out = call(pool, "class A:\n    def __repr__(self): return 'A!'\ndef f():\n    return [A(), iter([1])]", "f()")
    assert out.ok
    a, it = out.value
    assert a == Opaque("A", "A!") and it.type_name == "list_iterator"
    assert not safe_codec.is_literal(out.value)
    assert out.value_repr.startswith("[A!, <list_iterator")


def test_hostile_repr_does_not_break_the_result(pool):
    out = call(pool, "class B:\n    def __repr__(self): raise ValueError('no')\ndef f():\n    return B()", "f()")
    assert out.ok and out.value.type_name == "B" and "repr failed" in out.value_repr


def test_exception_is_typed_error(pool):
    out = call(pool, "def f(x):\n    return x[5]", "f([1])")
    assert out.status is Status.ERROR
    assert out.error_type == "IndexError" and "out of range" in out.error and out.value is None


def test_syntax_error_in_program_is_error(pool):
    out = call(pool, "def f(:\n  pass", "f()")
    assert out.status is Status.ERROR and out.error_type == "SyntaxError"


def test_stdout_and_stderr_are_captured(pool):
    out = call(pool, "import sys\ndef f():\n    print('hello')\n    print('oops', file=sys.stderr)\n    return 1", "f()")
    assert out.ok and out.stdout == "hello\n" and out.stderr == "oops\n"


def test_module_level_imports_work(pool):
    out = call(pool, "import math\nfrom collections import Counter\ndef f(x):\n    return math.ceil(x), Counter('aab')['a']", "f(2.5)")
    assert out.value == (3, 2)


def test_program_runs_as_its_own_module_not_main(pool):
    code = "ran = []\nif __name__ == '__main__':\n    ran.append(1)\ndef f():\n    return __name__, ran"
    assert call(pool, code, "f()").value == ("__program__", [])


def test_dataclasses_in_programs_work(pool):
    code = "from dataclasses import dataclass\n@dataclass\nclass P:\n    x: int\ndef f():\n    return P(3).x"
    assert call(pool, code, "f()").value == 3


def test_sys_exit_is_not_ok(pool):
    out = call(pool, "import sys\ndef f():\n    sys.exit(0)", "f()")
    assert out.status is Status.ERROR and out.error_type == "SystemExit" and "sys.exit(0)" in out.error


def test_os_exit_is_killed_without_result(pool):
    out = call(pool, "import os\ndef f():\n    print('bye', flush=True)\n    os._exit(0)", "f()")
    assert out.status is Status.KILLED and out.error_type == "EarlyExit" and out.value is None
    assert out.stdout == "bye\n"


def test_timeout(pool):
    out = call(pool, "def f():\n    while True:\n        pass", "f()", Limits(timeout_s=0.5))
    assert out.status is Status.TIMEOUT and out.value is None


def test_memory_error_is_memory(pool):
    out = call(pool, "def f():\n    return bytearray(2 * 1024 ** 3)", "f()", Limits(memory_mb=256))
    assert out.status is Status.MEMORY and out.error_type == "MemoryError"


def test_output_overflow_keeps_capped_prefix(pool):
    out = call(pool, "def f():\n    while True:\n        print('x' * 100)", "f()", Limits(output_bytes=1000))
    assert out.status is Status.OUTPUT_OVERFLOW
    assert 0 < len(out.stdout) <= 1000 and set(out.stdout) <= {"x", "\n"}


def test_result_too_large_is_reported(pool):
    out = call(pool, "def f():\n    return 'x' * 200000", "f()", Limits(result_bytes=50000))
    assert out.status is Status.ERROR and out.error_type == "ResultTooLarge"


def test_forged_garbage_result_is_killed_not_crash(pool):
    out = call(pool, "import os\ndef f():\n    os.write(3, b'{not json')\n    os._exit(0)", "f()")
    assert out.status is Status.KILLED and out.error_type == "BadResult"


def test_forged_result_decodes_only_to_data(pool):
    # A child can lie about its own value, but the lie is plain data (no pickle, no objects).
    forged = json.dumps({"status": "ok", "value": {"__t": "opaque", "type": "os.system", "repr": "rm"}, "repr": "x"})
    out = call(pool, f"import os\ndef f():\n    os.write(3, {forged.encode()!r})\n    os._exit(0)", "f()")
    assert out.ok and out.value == Opaque("os.system", "rm")
    out = call(pool, "import os\ndef f():\n    os.write(3, b'{\"status\":\"ok\",\"value\":{\"__t\":\"pickle\"},\"repr\":\"\"}')\n    os._exit(0)", "f()")
    assert out.status is Status.KILLED and out.error_type == "BadResult"


def test_forged_oversized_result_is_cut(pool):
    code = "import os\ndef f():\n    os.write(3, b'x' * 100000)\n    os._exit(0)"
    out = call(pool, code, "f()", Limits(result_bytes=1000))
    assert out.status is Status.KILLED and out.error_type == "ResultTooLarge"


def test_map_keeps_input_order_with_more_jobs_than_workers(pool):
    # Later jobs are faster, so completion order differs from input order.
    payloads = [{"code": f"import time\ndef f():\n    time.sleep({0.02 * (i % 3)})\n    return {i}", "call": "f()"} for i in range(12)]
    outs = pool.map(RUN_CALL, payloads)
    assert [o.value for o in outs] == list(range(12))


def test_submit_is_thread_safe(pool):
    results = {}

    def client(k):
        futs = [pool.submit(RUN_CALL, {"code": "def f(a, b): return a * 100 + b", "call": f"f({k}, {j})"}) for j in range(10)]
        results[k] = [f.result().value for f in futs]

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {k: [k * 100 + j for j in range(10)] for k in range(4)}


def test_pinned_jobs_run_on_different_workers(pool):
    # Workers have their own hash seeds: str hashes differ between worker 0 and worker 1.
    payload = {"code": "def f(): return hash('execverify')", "call": "f()"}
    a = pool.submit(RUN_CALL, payload, worker=0).result().value
    b = pool.submit(RUN_CALL, payload, worker=1).result().value
    assert a == pool.submit(RUN_CALL, payload, worker=0).result().value
    assert a != b


def test_random_is_reseeded_per_job(pool):
    payload = {"code": "import random\ndef f(): return random.random()", "call": "f()"}
    values = {pool.submit(RUN_CALL, payload, worker=0).result().value for _ in range(3)}
    assert len(values) == 3


def test_unknown_target_is_typed_error(pool):
    out = pool.run("execverify_jax.data.sandbox.calls:nope", {})
    assert out.status is Status.ERROR and out.error_type == "TargetError"
    with pytest.raises(ValueError):
        pool.submit("no_colon", {})


def test_bad_payload_is_typed_error(pool):
    out = pool.run(RUN_CALL, {"code": 3, "call": "f()"})
    assert out.status is Status.ERROR and out.error_type == "TypeError"


def test_run_calls_returns_per_call_results_fresh_by_default(pool):
    code = "seen = []\ndef f(x):\n    seen.append(x)\n    return len(seen), 10 // x"
    out = pool.run(RUN_CALLS, {"code": code, "calls": ["f(1)", "f(0)", "f(5)", "g()"]})
    assert out.ok
    r = out.value
    assert r[0] == {"status": "ok", "value": (1, 10), "repr": "(1, 10)"}
    assert r[1]["status"] == "error" and r[1]["error_type"] == "ZeroDivisionError"
    assert r[2]["value"] == (1, 2)  # fresh module: no state from earlier calls
    assert r[3]["error_type"] == "NameError"
    shared = pool.run(RUN_CALLS, {"code": code, "calls": ["f(1)", "f(1)"], "fresh": False}).value
    assert [x["value"][0] for x in shared] == [1, 2]


def test_run_stdio_feeds_stdin_and_returns_stdout(pool):
    code = "import sys\nn = int(input())\nxs = sys.stdin.read().split()\nprint(n, sum(map(int, xs)))\nif __name__ == '__main__':\n    print('main')\n    exit()"
    out = pool.run(RUN_STDIO, {"code": code, "stdin": "3\n1 2 3\n"})
    assert out.ok and out.value == "3 6\nmain\n"
    bad = pool.run(RUN_STDIO, {"code": "import sys\nsys.exit(2)", "stdin": ""})
    assert bad.status is Status.ERROR and bad.error_type == "SystemExit"
    big = pool.run(RUN_STDIO, {"code": "while True: print('x' * 100)", "stdin": "", "max_output": 1000})
    assert big.status is Status.ERROR and big.error_type == "OutputLimitExceeded"


def test_outcome_to_dict_round_trips(pool):
    out = call(pool, "def f(): return {'a': (1, {2})}", "f()")
    d = out.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["status"] == "ok" and Outcome.from_dict(d) == out


def test_limits_are_validated():
    with pytest.raises(ValueError, match="timeout_s"):
        Limits(timeout_s=0)
    with pytest.raises(ValueError, match="memory_mb"):
        Limits(memory_mb=-5)
    with pytest.raises(ValueError, match="nofile"):
        Limits(nofile=3)
    with pytest.raises(ValueError, match="unknown"):
        Limits.from_dict({"timeout": 1})
    assert Limits(timeout_s=1.2).cpu_seconds == 2 and Limits(cpu_s=3).cpu_seconds == 3
    assert LimitsDirect is Limits


def test_capabilities_are_reported(pool):
    caps = pool.capabilities
    for key in ("uid_drop", "netns", "mountns", "pidns", "ipcns", "private_proc", "private_shm", "audit_hook", "rlimits", "notes"):
        assert key in caps
    if os.geteuid() == 0:
        assert caps["uid_drop"] and caps["netns"] and caps["pidns"], caps
        assert caps["ipcns"] and caps["private_proc"] and caps["private_shm"], caps


def test_environment_is_scrubbed(pool):
    out = call(pool, "import os\ndef f(): return dict(os.environ), os.getcwd() == os.environ['HOME']", "f()")
    env, home_is_cwd = out.value
    assert set(env) == {"PATH", "LANG", "HOME", "TMPDIR"} and home_is_cwd


def test_work_dir_is_empty_and_removed(pool):
    code = "import os\ndef f():\n    before = os.listdir('.')\n    open('x.txt', 'w').write('1')\n    return before, os.getcwd()"
    first = call(pool, code, "f()").value
    second = call(pool, code, "f()").value
    assert first[0] == [] and second[0] == []


def test_worker_killed_between_jobs_is_replaced():
    with SandboxPool(1) as p:
        assert call(p, "def f(): return 1", "f()").value == 1
        p._workers[0].proc.kill()
        p._workers[0].proc.wait()
        assert call(p, "def f(): return 2", "f()").value == 2
        assert p.restarts == 1


def test_worker_dying_mid_job_gives_killed_outcome_not_hang():
    with SandboxPool(1) as p:
        fut = p.submit(RUN_CALL, {"code": "import time\ndef f(): time.sleep(30)", "call": "f()"}, Limits(timeout_s=20))
        time.sleep(0.5)
        p._workers[0].proc.kill()
        out = fut.result(timeout=10)
        assert out.status is Status.KILLED and out.error_type == "WorkerDied"
        assert call(p, "def f(): return 3", "f()").value == 3


def test_close_resolves_queued_jobs():
    p = SandboxPool(1)
    slow = p.submit(RUN_CALL, {"code": "import time\ndef f(): time.sleep(0.5); return 1", "call": "f()"})
    queued = [p.submit(RUN_CALL, {"code": "def f(): return 2", "call": "f()"}) for _ in range(5)]
    time.sleep(0.1)
    p.close()
    assert slow.result(timeout=10).value == 1
    statuses = {f.result(timeout=10).status for f in queued}
    assert statuses <= {Status.OK, Status.KILLED}
    with pytest.raises(RuntimeError):
        p.submit(RUN_CALL, {"code": "", "call": "1"})


def test_fallback_without_namespaces_or_uid_drop_still_works():
    with SandboxPool(1, namespaces=False, drop_privileges=False) as p:
        caps = p.capabilities
        assert not caps["netns"] and not caps["pidns"] and not caps["uid_drop"]
        # What is then exposed is said, not silently lost (docs/SANDBOX.md).
        assert not caps["ipcns"] and not caps["private_proc"] and not caps["private_shm"]
        assert any("no IPC namespace per job" in n for n in caps["notes"]), caps["notes"]
        assert any("no procfs of the job's own" in n for n in caps["notes"]), caps["notes"]
        assert call(p, "def f(x): return x + 1", "f(1)").value == 2
        # The audit hook still blocks Python-level sockets.
        out = call(p, "import socket\ndef f(): socket.socket()", "f()")
        assert out.status is Status.ERROR and out.error_type == "PermissionError"


def test_cpu_limit_of_busy_threads(pool):
    # Two busy threads burn CPU time faster than wall time; generous wall clock so CPU fires first.
    code = "import threading\ndef spin():\n    while True:\n        pass\ndef f():\n    threading.Thread(target=spin, daemon=True).start()\n    spin()"
    out = call(pool, code, "f()", Limits(timeout_s=30.0, cpu_s=1))
    assert out.status is Status.TIMEOUT and "CPU" in out.error


def test_worker_retires_after_an_internal_error():
    from execverify_jax.data.sandbox.pool import _WorkerProcess
    from execverify_jax.data.sandbox.protocol import read_frame, write_frame

    w = _WorkerProcess(0, {"index": 0, "preload": [], "uid_base": 61000, "uid_count": 2000})
    try:
        write_frame(w.wfd, {"id": 7, "target": RUN_CALL, "payload": {}})  # no "limits": a worker bug
        reply = read_frame(w.rfd, time.monotonic() + 10)
        assert reply["id"] == 7 and reply["status"] == "killed" and reply["fatal"]
        assert w.proc.wait(timeout=10) == 0
    finally:
        w.kill()


def test_unserializable_payload_is_a_typed_outcome(pool):
    out = pool.run(RUN_CALL, {"code": "def f(): return 1", "call": "f()", "x": object()})
    assert out.status is Status.KILLED and "serializable" in out.error
    assert call(pool, "def f(): return 1", "f()").value == 1


def test_forked_copy_of_the_pool_refuses_jobs(pool):
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            pool.submit(RUN_CALL, {"code": "", "call": "1"})
        except RuntimeError:
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert call(pool, "def f(): return 4", "f()").value == 4


def test_task_count_for_unprivileged_nproc_offset():
    from execverify_jax.data.sandbox.isolation import tasks_of_uid

    assert tasks_of_uid(os.getuid()) >= threading.active_count()
    assert tasks_of_uid(4_000_000) == 0
