"""Stress (slow): many mixed jobs, good and hostile, in flight at once; nothing hangs or leaks."""

import os
import random

import pytest

from execverify_jax.data.sandbox import RUN_CALL, Limits, SandboxPool, Status

MIX = [
    ("def f(i):\n    return [i, i * i]", lambda i, o: o.ok and o.value == [i, i * i]),
    ("def f(i):\n    return 1 // (i - i)", lambda i, o: o.status is Status.ERROR and o.error_type == "ZeroDivisionError"),
    ("def f(i):\n    while True:\n        pass", lambda i, o: o.status is Status.TIMEOUT),
    ("import os\ndef f(i):\n    os._exit(3)", lambda i, o: o.status is Status.KILLED),
    ("def f(i):\n    while True:\n        print(i)", lambda i, o: o.status is Status.OUTPUT_OVERFLOW),
    ("def f(i):\n    return bytearray(10 ** 10)", lambda i, o: o.status is Status.MEMORY),
    ("import os\ndef f(i):\n    open('x', 'w').write('y' * i)\n    return os.listdir('.')", lambda i, o: o.ok and o.value == ["x"]),
]


@pytest.mark.slow
def test_mixed_jobs_do_not_hang_or_leak():
    rng = random.Random(0)
    fds_before = len(os.listdir("/proc/self/fd"))
    with SandboxPool(2, limits=Limits(timeout_s=0.3, memory_mb=256, output_bytes=4096)) as pool:
        kinds = [rng.randrange(len(MIX)) for _ in range(600)]
        futs = [pool.submit(RUN_CALL, {"code": MIX[k][0], "call": f"f({i})"}) for i, k in enumerate(kinds)]
        outs = [f.result(timeout=300) for f in futs]
        for i, (k, o) in enumerate(zip(kinds, outs)):
            assert MIX[k][1](i, o), (MIX[k][0], o)
        assert pool.restarts == 0
    assert len(os.listdir("/proc/self/fd")) <= fds_before + 2
    children = [p for p in os.listdir("/proc") if p.isdigit() and _ppid(p) == os.getpid()]
    assert children == []


def _ppid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1
