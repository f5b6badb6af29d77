"""Sandbox soak: many jobs mixing normal programs and attacks; does anything grow on the host?

Runs `--jobs` jobs (default 10,000) through one `SandboxPool`, cycling through normal programs and
the attack kinds of issue 14 (SysV shared memory touched then detached, SysV queues and semaphores,
POSIX message queues, files in /dev/shm, reading every /proc entry, children left running, leaked
fds), and reports before and after: the host's SysV IPC objects, POSIX queues the jobs named that
still exist on the host, /dev/shm entries, the kernel's Shmem total, the pool's open fds and RSS
(parent + workers), and jobs per second. Target: no growth.

Attacks that would leak onto the host when a layer is missing (no IPC namespace, no private
/dev/shm) are left out, and said so, rather than run: this script never leaves junk behind.
Writes benchmarks/results/soak_sandbox.json.

    python benchmarks/soak_sandbox.py --jobs 10000
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import json
import os
import time
from pathlib import Path

from execverify_jax.data.sandbox import RUN_CALL, Limits, SandboxPool

MQ_PREFIX = f"/evx-soak-{os.getpid()}-"
SHM_MB = 1  # per SysV segment; a job that leaked it would pin this much host memory

_LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.shmat.restype = ctypes.c_void_p\n"
CODES = {
    "normal": "def f(k):\n    return sum(i * i for i in range(200 + k % 50)) % 97",
    "normal_str": "def f(k):\n    s = ''.join(chr(97 + (k * i) % 26) for i in range(40))\n    return sorted(set(s))[:3]",
    "sysv_shm": _LIBC + (
        "def f(k):\n    shm = libc.shmget(0, %d << 20, 0o1000 | 0o600)\n"
        "    addr = libc.shmat(shm, None, 0)\n    ctypes.memset(addr, 7, %d << 20)\n"
        "    libc.shmdt(ctypes.c_void_p(addr))\n    return shm >= 0" % (SHM_MB, SHM_MB)
    ),
    "sysv_msg_sem": _LIBC + "def f(k):\n    return libc.msgget(0, 0o1000 | 0o600) >= 0 and libc.semget(0, 4, 0o1000 | 0o600) >= 0",
    "posix_mq": _LIBC + (
        "def f(k):\n    name = ('%s' + str(k)).encode()\n"
        "    return libc.mq_open(name, os.O_CREAT | os.O_RDWR, 0o600, None) >= 0" % MQ_PREFIX
    ),
    "dev_shm": "def f(k):\n    with open(f'/dev/shm/soak-{k}', 'wb') as fh:\n        fh.write(b'x' * (1 << 20))\n    return True",
    "proc_snoop": (
        "import os\ndef f(k):\n    seen = 0\n    for p in os.listdir('/proc'):\n        if p.isdigit():\n"
        "            try:\n                open(f'/proc/{p}/environ', 'rb').read()\n                seen += 1\n"
        "            except OSError:\n                pass\n    return seen"
    ),
    "child_left_running": (
        "import os\ndef f(k):\n    pid = os.fork()\n    if pid == 0:\n        os.setsid()\n"
        "        import time\n        time.sleep(30)\n        os._exit(0)\n    return pid > 0"
    ),
    "fd_exhaustion": (
        "import os\ndef f(k):\n    fds = []\n    try:\n        while len(fds) < 10_000:\n"
        "            fds += os.pipe()\n    except OSError:\n        pass\n    return len(fds)"
    ),
}
NEEDS = {"sysv_shm": "ipcns", "sysv_msg_sem": "ipcns", "posix_mq": "ipcns", "dev_shm": "private_shm"}


def _sysv_objects() -> dict[str, int]:
    out = {}
    for kind in ("shm", "msg", "sem"):
        with open(f"/proc/sysvipc/{kind}") as fh:
            out[kind] = sum(1 for _ in fh) - 1
    return out


def _mq_left(names: list[str]) -> int:
    """How many of the POSIX queues the jobs named exist on the host (each is removed if so)."""
    libc = ctypes.CDLL(None, use_errno=True)
    left = 0
    for name in names:
        mqd = libc.mq_open(name.encode(), os.O_RDONLY)
        if mqd >= 0:
            left += 1
            libc.mq_close(mqd)
            libc.mq_unlink(name.encode())
    return left


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _meminfo_mb(key: str) -> float:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def snapshot(pool: SandboxPool) -> dict:
    pids = [w.proc.pid for w in pool._workers if w is not None]
    return {
        "host_sysv": _sysv_objects(),
        "host_dev_shm_entries": len(os.listdir("/dev/shm")),
        "host_shmem_mb": round(_meminfo_mb("Shmem"), 1),
        "parent_fds": len(os.listdir("/proc/self/fd")),
        "worker_fds": sum(len(os.listdir(f"/proc/{p}/fd")) for p in pids),
        "parent_rss_mb": round(_rss_mb(os.getpid()), 1),
        "workers_rss_mb": round(sum(_rss_mb(p) for p in pids), 1),
        "workers": len(pids),
        "parent_threads": len(os.listdir("/proc/self/task")),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--chunk", type=int, default=500, help="jobs per pool.map call (progress lines)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "soak_sandbox.json"))
    args = ap.parse_args()

    with SandboxPool(args.workers, limits=Limits(timeout_s=5.0, memory_mb=512)) as pool:
        caps = pool.capabilities
        kinds = [k for k in CODES if k not in NEEDS or caps.get(NEEDS[k])]
        left_out = sorted(set(CODES) - set(kinds))
        if left_out:
            print(f"left out (their layer is missing, they would leak onto the host): {left_out}")
        warm = [{"code": CODES["normal"], "call": f"f({k})"} for k in range(50)]
        assert all(o.ok for o in pool.map(RUN_CALL, warm))  # workers started, caches warm
        before = snapshot(pool)
        statuses: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        wrong_normal = 0
        proc_visible = 0  # most /proc/PID/environ a job could read
        mq_names = []
        t0 = time.perf_counter()
        done = 0
        mid = None
        while done < args.jobs:
            n = min(args.chunk, args.jobs - done)
            ks = list(range(done, done + n))
            kind_of = [kinds[k % len(kinds)] for k in ks]
            mq_names += [f"{MQ_PREFIX}{k}" for k, kind in zip(ks, kind_of) if kind == "posix_mq"]
            outs = pool.map(RUN_CALL, [{"code": CODES[kind], "call": f"f({k})"} for k, kind in zip(ks, kind_of)])
            for k, kind, out in zip(ks, kind_of, outs):
                statuses[kind][out.status.value] += 1
                if kind == "normal" and out.value != sum(i * i for i in range(200 + k % 50)) % 97:
                    wrong_normal += 1
                if kind == "proc_snoop" and out.ok:
                    proc_visible = max(proc_visible, out.value)
            done += n
            if mid is None and done >= args.jobs // 2:
                mid = snapshot(pool)  # growth that goes on would show in both halves
            rate = done / (time.perf_counter() - t0)
            print(f"  {done:6d} jobs  {rate:7.1f} jobs/s  restarts={pool.restarts}", flush=True)
        elapsed = time.perf_counter() - t0
        after = snapshot(pool)
        mq_left = _mq_left(mq_names)
        restarts = pool.restarts
    report = {
        "jobs": args.jobs, "workers": args.workers, "seconds": round(elapsed, 1),
        "jobs_per_s": round(args.jobs / elapsed, 1), "kinds": kinds, "left_out": left_out,
        "statuses": {k: dict(v) for k, v in statuses.items()}, "wrong_normal_results": wrong_normal,
        "most_proc_environ_a_job_could_read": proc_visible,
        "restarts": restarts, "posix_queues_left_on_host": mq_left, "before": before, "halfway": mid, "after": after,
        "capabilities": {k: caps.get(k) for k in ("uid_drop", "userns", "pidns", "ipcns", "ipc_limits", "private_proc", "private_shm", "seccomp")},
        "loadavg_at_end": os.getloadavg(),
    }
    growth = {k: (after[k], before[k]) for k in before if after[k] != before[k]}
    print(json.dumps(report, indent=1))
    print("changed between before and after (after, before):", growth or "nothing")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
