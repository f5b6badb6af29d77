"""Sandbox round-trip cost: trivial `run_call` jobs, per isolation configuration.

Prints a table and writes benchmarks/results/bench_sandbox.json. Serial latency uses one worker
and one job in flight; throughput uses every worker with all jobs queued. The machine may be
shared, so numbers are noisy: compare rows from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from execverify_jax.data.sandbox import RUN_CALL, SandboxPool

BENCH_UID = 64999  # outside the pools' uid range (61000..62999): kill(-1) from it hits nothing else
PAYLOAD = {"code": "def f(x):\n    return [x, x * 2]\n", "call": "f(3)"}

CONFIGS = [
    ("all layers (netns+mountns+pidns+uid)", dict()),
    ("no namespaces, uid drop", dict(namespaces=False)),
    ("namespaces, no uid drop", dict(drop_privileges=False)),
    ("bare fork (no namespaces, no uid drop)", dict(namespaces=False, drop_privileges=False)),
]


def _p10(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 10]


def _serial_times(pool: SandboxPool, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        out = pool.run(RUN_CALL, PAYLOAD)
        times.append((time.perf_counter() - t) * 1e3)
        assert out.ok and out.value == [3, 6], out
    return times


def _cpu_s(pid: int) -> float:
    """utime+stime of `pid` plus its reaped children (the jobs), from /proc (clock ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _throughput(pool: SandboxPool, n: int) -> tuple[float, float]:
    """(jobs per second, CPU ms per job). CPU time (parent + workers + jobs) is what a job costs
    a core, and unlike wall time it hardly moves when other processes load the machine."""
    pids = [w.proc.pid for w in pool._workers if w is not None]
    cpu0 = time.process_time() + sum(_cpu_s(p) for p in pids)
    t = time.perf_counter()
    outs = pool.map(RUN_CALL, [PAYLOAD] * n)
    dt = time.perf_counter() - t
    cpu1 = time.process_time() + sum(_cpu_s(p) for p in pids)
    assert all(o.ok for o in outs)
    return n / dt, (cpu1 - cpu0) / n * 1e3


def _fork_cost_us(n: int, before=None, in_child=None) -> float:
    """CPU microseconds (this process + its reaped children) per fork + (in_child) + _exit +
    wait, with `before` run in the parent. CPU time rather than wall time: on a shared, loaded
    machine wall time mostly measures waiting for a core."""
    import resource

    def cpu() -> float:
        c = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + c.ru_utime + c.ru_stime

    c0 = cpu()
    for _ in range(n):
        if before:
            before()
        pid = os.fork()
        if pid == 0:
            try:
                if in_child:
                    in_child()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
    return (cpu() - c0) / n * 1e6


def _python_c_ms(n: int) -> float:
    """10th-percentile ms of one `python -c` running the same trivial call (what the original did, twice)."""
    import subprocess
    import sys

    src = PAYLOAD["code"] + f"print(repr({PAYLOAD['call']}))"
    times = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", src], capture_output=True, check=True, timeout=30)
        times.append((time.perf_counter() - t) * 1e3)
    return _p10(times)


def _kill_all() -> None:
    try:
        os.kill(-1, 9)  # as BENCH_UID: every other process of that uid (there are none)
    except ProcessLookupError:
        pass


def _delta_us(n: int, before=None, in_child=None, after=None) -> float:
    """Extra cost of a variant over the bare fork, measured in alternating rounds so that load
    changes during the measurement hit both sides alike."""
    base, variant = [], []
    for _ in range(max(1, n // 10)):
        base.append(_fork_cost_us(10))
        variant.append(_fork_cost_us(10, before=before, in_child=in_child))
        if after:
            after()
    return statistics.median(variant) - statistics.median(base)


def _per_job_namespaces_us(n: int) -> float:
    """What each job's own IPC + mount namespace, procfs and /dev/shm add to a job that already
    has a PID namespace. Measured in a helper that first takes a private mount namespace, as the
    worker does (the job's mounts must not propagate to the host)."""
    from execverify_jax.data.sandbox import oslayer as sandbox_os
    from execverify_jax.data.sandbox.child import JobNamespaces, enter_job_namespaces, job_mounts

    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        value = float("nan")
        try:
            sandbox_os.unshare(sandbox_os.CLONE_NEWNS)
            sandbox_os.mount("none", "/", None, sandbox_os.MS_REC | sandbox_os.MS_PRIVATE)
            fd = os.open("/proc/self/ns/pid", os.O_RDONLY)
            ns = JobNamespaces(sandbox_os.CLONE_NEWNS | sandbox_os.CLONE_NEWIPC, job_mounts(True, True, 64), cap_ipc=True)
            base, variant = [], []
            for _ in range(max(1, n // 10)):  # alternating rounds, both with a PID namespace
                for out, in_child in ((base, None), (variant, lambda: enter_job_namespaces(ns, 1024))):
                    out.append(_fork_cost_us(10, before=lambda: sandbox_os.new_pid_namespace_for_children(fd), in_child=in_child))
                    sandbox_os.setns(fd, sandbox_os.CLONE_NEWPID)
            value = statistics.median(variant) - statistics.median(base)
        finally:
            os.write(wfd, repr(value).encode())
            os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd) as f:
        text = f.read()
    os.waitpid(pid, 0)
    return float(text)


def layer_costs(n: int = 200) -> dict:
    """Per-layer costs, measured in this (throwaway, root) process with the worker's primitives."""
    import resource

    from execverify_jax.data.sandbox import oslayer as sandbox_os

    if os.geteuid() != 0:
        return {"skipped": "needs root"}
    base = _fork_cost_us(n)
    pidns_fd = os.open("/proc/self/ns/pid", os.O_RDONLY)
    res = {"fork_exit_wait_us": base}
    res["per_job_pidns_us"] = _delta_us(
        n,
        before=lambda: sandbox_os.new_pid_namespace_for_children(pidns_fd),
        after=lambda: sandbox_os.setns(pidns_fd, sandbox_os.CLONE_NEWPID),  # back, for the bare rounds
    )
    # pid_for_children now points at the last (dead) namespace: go back for the rest.
    sandbox_os.setns(pidns_fd, sandbox_os.CLONE_NEWPID)

    def drop() -> None:
        os.setgroups([])
        os.setgid(BENCH_UID)
        os.setuid(BENCH_UID)

    def limits() -> None:
        for r in (resource.RLIMIT_CPU, resource.RLIMIT_AS, resource.RLIMIT_NPROC, resource.RLIMIT_NOFILE, resource.RLIMIT_FSIZE, resource.RLIMIT_CORE):
            resource.setrlimit(r, resource.getrlimit(r))

    res["per_job_uid_drop_us"] = _delta_us(n, in_child=drop)
    res["per_job_rlimits_us"] = _delta_us(n, in_child=limits)
    res["per_job_no_new_privs_pdeathsig_us"] = _delta_us(n, in_child=lambda: (sandbox_os.set_no_new_privs(), sandbox_os.set_parent_death_signal()))
    from execverify_jax.data.sandbox import seccomp as sandbox_seccomp

    filt = sandbox_seccomp.Filter(sandbox_seccomp.build_filter())
    res["seccomp_if_installed_per_job_us"] = _delta_us(n, in_child=lambda: (sandbox_os.set_no_new_privs(), filt.install()))
    # One-time worker layers (measured in a child so this process keeps its namespaces).
    res["per_worker_netns_us"] = _delta_us(20, in_child=lambda: sandbox_os.unshare(sandbox_os.CLONE_NEWNET))

    def mounts() -> None:
        sandbox_os.unshare(sandbox_os.CLONE_NEWNS)
        sandbox_os.mount("none", "/", None, sandbox_os.MS_REC | sandbox_os.MS_PRIVATE)
        sandbox_os.mount("tmpfs", "/tmp", "tmpfs", 0, "size=64m,mode=0755")

    res["per_worker_mountns_tmpfs_us"] = _delta_us(20, in_child=mounts)
    res["per_job_ipc_mount_ns_proc_shm_us"] = _per_job_namespaces_us(n)
    # The uid sweep used when there is no PID namespace: one extra fork + setuid + kill(-1).
    res["per_job_uid_sweep_fallback_us"] = _fork_cost_us(n, in_child=lambda: (drop(), _kill_all()))
    return {k: round(v, 1) for k, v in res.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=400)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    args = ap.parse_args()
    baseline = _python_c_ms(30)
    print(f"baseline: one `python -c` per job (the original's way): {baseline:.2f} ms per job (serial)")
    layers = layer_costs()
    print("isolation layer costs (us):", json.dumps(layers))
    # Serial latency: one single-worker pool per configuration, measured in interleaved rounds
    # so that load from other processes on a shared machine hits every configuration alike.
    pools = [SandboxPool(1, **kw) for _, kw in CONFIGS]
    serial: list[list[float]] = [[] for _ in CONFIGS]
    try:
        for pool in pools:
            pool.run(RUN_CALL, PAYLOAD)  # warm-up
        for _ in range(max(1, args.jobs // 20)):
            for k, pool in enumerate(pools):
                serial[k] += _serial_times(pool, 20)
        caps_all = [pool.capabilities for pool in pools]
    finally:
        for pool in pools:
            pool.close()
    rows = []
    for (name, kw), times, caps in zip(CONFIGS, serial, caps_all):
        med, p10 = statistics.median(times), _p10(times)
        with SandboxPool(args.workers, **kw) as pool:
            pool.map(RUN_CALL, [PAYLOAD] * args.workers)
            jps, cpu_ms = _throughput(pool, args.jobs)
        rows.append({
            "config": name,
            "serial_median_ms": round(med, 3),
            "serial_p10_ms": round(p10, 3),
            "throughput_jobs_per_s": round(jps, 1),
            "ms_per_job_per_core": round(args.workers / jps * 1e3, 3),
            "cpu_ms_per_job": round(cpu_ms, 3),
            "layers": {k: caps.get(k) for k in ("uid_drop", "netns", "mountns", "pidns")},
        })
    print(f"{'config':42s} {'serial med ms':>14s} {'p10 ms':>8s} {'jobs/s':>8s} {'ms/job/core':>12s} {'CPU ms/job':>11s}")
    for r in rows:
        print(f"{r['config']:42s} {r['serial_median_ms']:14.3f} {r['serial_p10_ms']:8.3f} {r['throughput_jobs_per_s']:8.1f} {r['ms_per_job_per_core']:12.3f} {r['cpu_ms_per_job']:11.3f}")
    out = Path(__file__).resolve().parent / "results" / "bench_sandbox.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"workers": args.workers, "jobs": args.jobs, "cpu_count": os.cpu_count(), "load_avg_1m": os.getloadavg()[0], "python_c_baseline_ms": round(baseline, 3), "layer_costs_us": layers, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
