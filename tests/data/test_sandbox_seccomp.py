"""The seccomp deny-list: tables match the kernel headers, the filter denies what it should inside
a job and leaves threads, fork and subprocesses alone."""

import platform
import re
from pathlib import Path

import pytest

from execverify_jax.data.sandbox import seccomp as sandbox_seccomp
from execverify_jax.data.sandbox import RUN_CALL, Limits, SandboxPool, Status

HEADERS = {
    "x86_64": Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
    "aarch64": Path("/usr/include/asm-generic/unistd.h"),
}


@pytest.mark.parametrize("arch", sorted(HEADERS))
def test_syscall_numbers_match_headers(arch):
    header = HEADERS[arch]
    if not header.is_file():
        pytest.skip(f"{header} not installed")
    table = {m.group(1): int(m.group(2)) for m in re.finditer(r"#define __NR_(\w+)\s+(\d+)", header.read_text())}
    ours = sandbox_seccomp.SYSCALLS[arch]
    for name, nr in ours.items():
        assert table.get(name) == nr, (arch, name)
    missing = [n for n in sandbox_seccomp.DENIED if n not in ours and n in table]
    assert missing == []


def test_filter_shape():
    for arch in sandbox_seccomp.SYSCALLS:
        prog = sandbox_seccomp.build_filter(arch)
        assert prog and len(prog) % 8 == 0 and len(prog) // 8 < 4096
    assert sandbox_seccomp.build_filter("sparc") is None


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(1, limits=Limits(timeout_s=5.0)) as p:
        if not p.capabilities.get("seccomp"):
            pytest.skip(f"seccomp unavailable: {p.capabilities['notes']}")
        yield p


def _syscall_code(calls):
    return (
        "import ctypes\ndef f():\n    libc = ctypes.CDLL(None, use_errno=True)\n    out = []\n"
        f"    for nr, args in {calls!r}:\n"
        "        r = libc.syscall(nr, *args)\n        out.append((r, ctypes.get_errno() if r == -1 else 0))\n    return out"
    )


def test_denied_syscalls_fail_with_eperm(pool):
    nr = sandbox_seccomp.SYSCALLS[platform.machine()]
    calls = [
        (nr["unshare"], [0x10000000]),  # a user namespace
        (nr["ptrace"], [0, 0, 0, 0]),
        (nr["io_uring_setup"], [1, 0]),
        (nr["bpf"], [0, 0, 0]),
        (nr["mount"], [0, 0, 0, 0, 0]),
        (nr["clone"], [0x40000000 | 17, 0, 0, 0, 0]),  # clone with CLONE_NEWNET
        (nr["unshare"], [0x20000000]),  # exactly CLONE_NEWPID passes the filter (the worker needs
        # it), but the kernel refuses it to a job without CAP_SYS_ADMIN
        (nr["clone3"], [0, 0]),
    ]
    out = pool.run(RUN_CALL, {"code": _syscall_code(calls), "call": "f()"})
    assert out.ok, out
    assert out.value[:-1] == [(-1, 1)] * 7  # EPERM
    assert out.value[-1] == (-1, 38)  # clone3: ENOSYS, so libc falls back to clone


def test_namespace_calls_the_filter_lets_through_are_refused_to_jobs(pool):
    # The filter passes unshare(CLONE_NEWNS|CLONE_NEWIPC) and mount with exactly the flags of
    # the job's own procfs and /dev/shm (each job's first step needs them); the job's code,
    # without privileges, must still be refused both by the kernel.
    code = (
        "import ctypes\ndef f():\n    libc = ctypes.CDLL(None, use_errno=True)\n    out = []\n"
        "    r = libc.unshare(0x00020000 | 0x08000000)\n    out.append((r, ctypes.get_errno() if r else 0))\n"
        "    for fs, target, flags in ((b'proc', b'/proc', 14), (b'tmpfs', b'/dev/shm', 6), (b'tmpfs', b'/tmp', 6)):\n"
        "        r = libc.mount(fs, target, fs, ctypes.c_ulong(flags), None)\n"
        "        out.append((r, ctypes.get_errno() if r else 0))\n    return out"
    )
    out = pool.run(RUN_CALL, {"code": code, "call": "f()"})
    assert out.ok and out.value == [(-1, 1)] * 4, out


def test_normal_process_and_thread_use_still_works(pool):
    code = (
        "import os, threading, subprocess, sys\ndef f():\n    t = threading.Thread(target=lambda: None)\n    t.start(); t.join()\n"
        "    pid = os.fork()\n    if pid == 0:\n        os._exit(5)\n    st = os.waitpid(pid, 0)[1]\n"
        "    r = subprocess.run([sys.executable, '-c', 'print(6 * 7)'], capture_output=True, text=True)\n"
        "    return os.waitstatus_to_exitcode(st), r.stdout.strip()"
    )
    out = pool.run(RUN_CALL, {"code": code, "call": "f()"})
    assert out.ok and out.value == (5, "42"), out


def test_pool_without_seccomp_reports_it():
    with SandboxPool(1, seccomp=False) as p:
        assert p.capabilities["seccomp"] is False
        assert p.run(RUN_CALL, {"code": "def f(): return 1", "call": "f()"}).status is Status.OK
