"""A long-lived sandbox worker: set up isolation once, then fork one confined child per job.

Started by `SandboxPool` as `python -m execverify_jax.data.sandbox.worker CONFIG_JSON` from a
clean interpreter (never forked from the trainer), so forking stays cheap. Single-threaded on
purpose: fork is only safe without threads. Talks to the parent with length-prefixed JSON frames
on its original stdin/stdout (moved to private fds; fds 0/1 become /dev/null).

Per worker, once (`sandbox_isolation.IsolationSetup`): a locked unprivileged uid (root only), a
new network namespace, a new mount namespace (private size-limited tmpfs over the temp dirs,
hidden home/checkout/data dirs, a minimal /dev, a hidepid procfs as a fallback), a probe of the
per-job namespaces; then what every job inherits: scrubbed environment, SIGXCPU handler, audit
hook, no_new_privs, seccomp (`confine_worker`).
Per job: an empty work dir, a fresh PID namespace (the job is its init, so everything it spawns
dies with it), pipes for stdout/stderr/result, fork, then wait with a deadline and caps. The
child first enters an IPC and a mount namespace of its own and mounts its own procfs and
/dev/shm (`child.enter_job_namespaces`): all of it, SysV/POSIX IPC objects included, dies with it.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import select
import signal
import sys
import time
from typing import Any, Callable

from execverify_jax.data.sandbox import oslayer as sandbox_os

from execverify_jax.data.sandbox import seccomp as sandbox_seccomp
from execverify_jax.data.sandbox.child import (
    EXIT_CPU_LIMIT,
    EXIT_RESULT_FAILED,
    EXIT_SETUP_FAILED,
    SAFE_PATH,
    JobNamespaces,
    audit_hook,
    on_cpu_limit,
    run_child,
)
from execverify_jax.data.sandbox.isolation import IsolationSetup
from execverify_jax.data.sandbox.protocol import read_frame, write_frame

HEAVY_MODULES = ("numpy", "jax", "torch", "tensorflow", "scipy", "pandas")
STRAGGLER_GRACE_S = 0.5  # without a PID namespace: how long escaped processes may hold our pipes


class Worker(IsolationSetup):
    """The worker's state: isolation results (see IsolationSetup), target cache and the job loop."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.index = int(config["index"])
        self.config = config
        self.caps: dict[str, Any] = {"notes": []}
        self.uid: int | None = None
        self.pidns_fd: int | None = None
        self.job_ns: JobNamespaces | None = None  # per-job IPC/mount namespace, procfs, /dev/shm
        self.targets: dict[str, Callable[[Any], Any]] = {}
        self.devnull = os.open(os.devnull, os.O_RDWR)
        self._workdir_ready = False
        self.seccomp: sandbox_seccomp.Filter | None = None
        self.nproc_base = 0  # added to Limits.nproc when jobs share the user's uid

    # ------------------------------------------------------------------------------ targets
    def resolve(self, target: str) -> Callable[[Any], Any]:
        """Imports `module:function` once, in the worker, so forked jobs start with it loaded."""
        fn = self.targets.get(target)
        if fn is None:
            module, _, name = target.partition(":")
            fn = getattr(importlib.import_module(module), name)
            if not callable(fn):
                raise TypeError(f"{target} is not callable")
            self.targets[target] = fn
        return fn

    # ------------------------------------------------------------------------------- jobs
    def run_job(self, job: dict[str, Any]) -> dict[str, Any]:
        """Runs one job in a fresh child and returns the reply frame (never raises for the job)."""
        try:
            fn = self.resolve(job["target"])
        except Exception as exc:  # noqa: BLE001 - a bad target name is the caller's error
            return {"status": "error", "error_type": "TargetError", "error": f"cannot load target {job['target']!r}: {type(exc).__name__}: {exc}"}
        limits = job["limits"]
        if self.nproc_base:
            limits = dict(limits, nproc=int(limits["nproc"]) + self.nproc_base)
        workdir = self._workdir()
        try:
            return self._fork_and_wait(fn, job["payload"], limits, workdir)
        finally:
            self._release_workdir(workdir)

    @property
    def workdir(self) -> str:
        """The job work dir: one fixed path per worker (jobs run one at a time), so the job
        environment (HOME/TMPDIR) can be set once in the worker instead of in every child."""
        return os.path.join(self.base, "job")

    def _workdir(self) -> str:
        """The work dir, empty and owned by the job uid (recreated after a job dirtied it)."""
        workdir = self.workdir
        if not self._workdir_ready:
            os.mkdir(workdir, 0o700)
            if self.uid is not None:
                os.chown(workdir, self.uid, self.uid)
            self._workdir_ready = True
        return workdir

    def _release_workdir(self, workdir: str) -> None:
        # Most jobs write nothing: keep the dir if it is still empty with its original mode and
        # owner (saves mkdir+chown+rmtree per job); anything else is removed.
        try:
            st = os.lstat(workdir)
            pristine = st.st_mode == 0o40700 and st.st_uid == (self.uid if self.uid is not None else os.getuid())
            if pristine and not os.listdir(workdir):
                return
        except OSError:
            pass
        _rmtree(workdir)
        self._workdir_ready = False

    def confine_worker(self) -> None:
        """Per-process settings every job inherits through fork, applied once, last: so the
        children do not redo them (each Python-level step in a child costs copy-on-write faults).
        """
        os.environ.clear()  # nothing of the parent's environment reaches the jobs
        os.environ.update({"PATH": SAFE_PATH, "LANG": "C.UTF-8", "HOME": self.workdir, "TMPDIR": self.workdir})
        signal.signal(signal.SIGXCPU, on_cpu_limit)
        sys.addaudithook(audit_hook)  # the worker itself never opens a socket
        sandbox_os.set_no_new_privs()
        if self.seccomp is not None:
            try:
                self.seccomp.install()
            except OSError as exc:
                self.caps["seccomp"] = False
                self.caps["notes"].append(f"seccomp unavailable: {exc}")

    def _fork_and_wait(self, fn: Callable[[Any], Any], payload: Any, limits: dict[str, Any], workdir: str) -> dict[str, Any]:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        res_r, res_w = os.pipe()
        if self.pidns_fd is not None:
            sandbox_os.new_pid_namespace_for_children(self.pidns_fd)
        sys.stdout.flush()
        sys.stderr.flush()
        t0 = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the job; never returns
            fds = {"out": out_w, "err": err_w, "res": res_w, "devnull": self.devnull}
            run_child(fn, payload, limits, fds, workdir, self.uid, self.job_ns)
        for fd in (out_w, err_w, res_w):
            os.close(fd)
        try:
            return self._collect(pid, t0, limits, {out_r: "stdout", err_r: "stderr", res_r: "result"})
        finally:
            for fd in (out_r, err_r, res_r):
                os.close(fd)

    def _collect(self, pid: int, t0: float, limits: dict[str, Any], streams: dict[int, str]) -> dict[str, Any]:
        caps = {"stdout": int(limits["output_bytes"]), "stderr": int(limits["output_bytes"]), "result": int(limits["result_bytes"])}
        bufs: dict[str, bytearray] = {name: bytearray() for name in streams.values()}
        deadline = t0 + float(limits["timeout_s"])
        pidfd = os.pidfd_open(pid)
        open_fds = set(streams)
        exited = False
        reason = None  # "timeout" | "output_overflow" | "result_overflow"
        try:
            while open_fds or not exited:
                left = deadline - time.monotonic()
                if left <= 0:
                    reason = None if exited else "timeout"
                    break
                watch = list(open_fds) + ([] if exited else [pidfd])
                ready = select.select(watch, [], [], left)[0]
                for fd in ready:
                    if fd == pidfd:
                        exited = True
                        # The job's init is gone: in a PID namespace everything died with it;
                        # without one, stragglers must not hold our pipes open for long.
                        self._kill_group(pid)
                        if self.pidns_fd is None:
                            if self.uid is not None:
                                self._sweep_uid()
                            deadline = min(deadline, time.monotonic() + STRAGGLER_GRACE_S)
                        continue
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        open_fds.discard(fd)
                        continue
                    name = streams[fd]
                    buf = bufs[name]
                    room = caps[name] - len(buf)
                    buf += chunk[: max(room, 0)]
                    if len(chunk) > room:
                        reason = "output_overflow" if name != "result" else "result_overflow"
                        break
                if reason:
                    break
        finally:
            self._kill_group(pid)
            _, status, rusage = os.wait4(pid, 0)
            os.close(pidfd)
            if self.pidns_fd is None and self.uid is not None and not exited:
                self._sweep_uid()  # (already done on exit; here for timeouts and overflows)
        duration = time.monotonic() - t0
        cpu = rusage.ru_utime + rusage.ru_stime
        reply: dict[str, Any] = {
            "duration_s": duration,
            "stdout": bufs["stdout"].decode("utf-8", "replace"),
            "stderr": bufs["stderr"].decode("utf-8", "replace"),
            "cpu_s": cpu,
        }
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        if reason == "output_overflow":
            reply.update(status="output_overflow", error_type="OutputOverflow", error=f"output exceeded {caps['stdout']} bytes")
        elif reason == "timeout":
            reply.update(status="timeout", error_type="Timeout", error=f"wall-clock limit of {limits['timeout_s']} s exceeded")
        elif reason == "result_overflow":
            reply.update(status="killed", error_type="ResultTooLarge", error=f"result exceeded {caps['result']} bytes")
        elif code == EXIT_CPU_LIMIT or sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu >= 0.5 * int(limits["cpu_seconds"])):
            # A SIGKILL we did not send is the hard CPU limit (rusage under-reports CPU time on
            # a loaded VM, hence the loose bound; with RLIMIT_AS the OOM killer is unlikely).
            reply.update(status="timeout", error_type="Timeout", error=f"CPU-time limit of {limits['cpu_seconds']} s exceeded")
        elif bufs["result"] and code == 0:
            reply.update(status="result", result=bufs["result"].decode("utf-8", "replace"))
        elif sig is not None:
            reply.update(status="killed", error_type="Killed", error=f"the job was killed by signal {signal.Signals(sig).name} before returning a value")
        elif code == EXIT_SETUP_FAILED:
            reply.update(status="killed", error_type="SandboxSetupError", error="the sandbox could not confine the job (see stderr)")
        elif code == EXIT_RESULT_FAILED:
            reply.update(status="killed", error_type="ResultError", error="the job's result could not be encoded or sent")
        else:
            reply.update(status="killed", error_type="EarlyExit", error=f"the job exited with status {code} without returning a value")
        return reply

    def _kill_group(self, pid: int) -> None:
        # The child is not reaped yet, so its pid (= its process-group id) cannot be reused.
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _sweep_uid(self) -> None:
        # No PID namespace: kill every process of the job uid (escaped grandchildren), from a
        # short-lived helper that takes that uid, so kill(-1) reaches exactly those processes.
        helper = os.fork()
        if helper == 0:
            try:
                os.setgroups([])
                os.setgid(self.uid)
                os.setuid(self.uid)
                os.kill(-1, signal.SIGKILL)
            except BaseException:  # noqa: BLE001
                pass
            os._exit(0)
        os.waitpid(helper, 0)


def _rmtree(path: str) -> None:
    """Removes a job's directory tree, ignoring errors (shutil would add ~0.5 MB of imports to
    the worker, and every fork pays for the worker's size). Never follows symlinks."""
    try:
        for root, dirs, files in os.walk(path, topdown=False):
            for name in files:
                _ignore(os.unlink, os.path.join(root, name))
            for name in dirs:
                p = os.path.join(root, name)
                _ignore(os.unlink if os.path.islink(p) else os.rmdir, p)
    finally:
        _ignore(os.rmdir, path)


def _ignore(fn: Callable[[str], None], path: str) -> None:
    try:
        fn(path)
    except OSError:
        pass


def _vm_size_mb() -> float:
    """The worker's virtual size: RLIMIT_AS of a job counts it before the job allocates anything."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return -1.0


def _take_protocol_fds() -> tuple[int, int]:
    # Move the protocol pipes off 0/1 so nothing printed (by us or a forked job) can corrupt them.
    rfd, wfd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    return rfd, wfd


def main(argv: list[str]) -> int:
    """Worker entry point: argv[0] is the JSON config written by SandboxPool."""
    config = json.loads(argv[0])
    rfd, wfd = _take_protocol_fds()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    worker = Worker(config)
    worker.setup()
    for target in config.get("preload", []):
        try:
            worker.resolve(target)
        except Exception as exc:  # noqa: BLE001 - reported; jobs for it will get TargetError
            worker.caps["notes"].append(f"cannot preload {target}: {type(exc).__name__}: {exc}")
    heavy = sorted(m for m in HEAVY_MODULES if m in sys.modules)
    if heavy:
        worker.caps["notes"].append(f"preloaded targets imported {heavy}: forks are slower and RLIMIT_AS must cover them")
    worker.caps["worker_vm_mb"] = _vm_size_mb()
    worker.confine_worker()  # last: seccomp forbids mounts from here on
    gc.freeze()  # keep the GC from touching (and so copying) the worker's objects in every job
    write_frame(wfd, {"hello": worker.caps, "pid": os.getpid()})
    while True:
        try:
            job = read_frame(rfd)
        except Exception:  # noqa: BLE001 - parent gone or closed the pipe: shut down
            break
        try:
            reply = worker.run_job(job)
        except Exception as exc:  # noqa: BLE001 - our own failure (fork, pipes, namespaces...)
            # The job gets a typed outcome, and this worker retires: the parent starts a fresh one
            # rather than trusting a worker in an unknown state.
            reply = {"status": "killed", "error_type": "WorkerError", "error": f"{type(exc).__name__}: {exc}", "fatal": True}
        reply["id"] = job.get("id")
        write_frame(wfd, reply)
        if reply.get("fatal"):
            break
    _rmtree(worker.base)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
