"""A long-lived sandbox worker: set up isolation once, then fork one confined child per job.

Started by `SandboxPool` as `python -m execverify_jax.data.sandbox_worker CONFIG_JSON` from a
clean interpreter (never forked from the trainer), so forking stays cheap. Single-threaded on
purpose: fork is only safe without threads. Talks to the parent with length-prefixed JSON frames
on its original stdin/stdout (moved to private fds; fds 0/1 become /dev/null).

Per worker, once: a locked unprivileged uid (root only), a new network namespace, a new mount
namespace with private size-limited tmpfs over /tmp, /var/tmp, /dev/shm and /run/lock.
Per job: an empty work dir, a fresh PID namespace (the job is its init, so everything it spawns
dies with it), pipes for stdout/stderr/result, fork, then wait with a deadline and caps.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import platform
import select
import signal
import sys
import time
from typing import Any, Callable

from execverify_jax.data import sandbox_os, sandbox_seccomp
from execverify_jax.data.sandbox_child import EXIT_CPU_LIMIT, EXIT_RESULT_FAILED, EXIT_SETUP_FAILED, run_child
from execverify_jax.data.sandbox_protocol import read_frame, write_frame

UID_LOCK_DIR = "/tmp/execverify-sandbox-uids"
PRIVATE_TMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
# The only device nodes a job gets (no GPU/TPU/kvm/fuse/tty devices: a job must not grab the
# trainer's accelerator memory); /dev becomes a small tmpfs with these bound in.
DEV_NODES = ("null", "zero", "full", "random", "urandom")
DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"}
# Hidden from jobs behind empty read-only tmpfs (home dirs, checkouts, data sets: a job must not
# read expected answers or keys off disk). What the interpreter needs is bound back read-only.
HIDDEN_DIRS = ("/root", "/home", "/work", "/mnt", "/srv", "/media", "/data", "/scratch", "/run")
NPROC_SLACK = 64  # growth of the user's own task count that non-root jobs tolerate
HEAVY_MODULES = ("numpy", "jax", "torch", "tensorflow", "scipy", "pandas")
STRAGGLER_GRACE_S = 0.5  # without a PID namespace: how long escaped processes may hold our pipes


class Worker:
    """The worker's state: isolation set-up results, target cache and the job loop."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.index = int(config["index"])
        self.config = config
        self.caps: dict[str, Any] = {"notes": []}
        self.uid: int | None = None
        self.pidns_fd: int | None = None
        self.targets: dict[str, Callable[[Any], Any]] = {}
        self.devnull = os.open(os.devnull, os.O_RDWR)
        self.jobs = 0
        self._spare_workdir: str | None = None
        self.seccomp: sandbox_seccomp.Filter | None = None
        self.nproc_base = 0  # added to Limits.nproc when jobs share the user's uid

    # ----------------------------------------------------------------- one-time isolation set-up
    def setup(self) -> None:
        """Applies every per-worker layer it can and records which ones are active."""
        caps, notes = self.caps, self.caps["notes"]
        # "unprivileged" (tests, or a root host that wants the non-root layout) skips the uid drop
        # and takes the user-namespace path that non-root pools use.
        root = os.geteuid() == 0 and not self.config.get("unprivileged", False)
        caps["root"] = root
        caps["uid_drop"] = False
        if root and self.config.get("drop_privileges", True):
            first, count = int(self.config["uid_base"]), int(self.config["uid_count"])
            self.uid, self._uid_lock = sandbox_os.acquire_uid(UID_LOCK_DIR, first + self.index, first, count)
            caps["uid_drop"] = True
            caps["uid"] = self.uid
        elif not root:
            # RLIMIT_NPROC counts every task of the real uid, the user's own included: offset it
            # by what the user runs now, or a job could not start a single thread.
            self.nproc_base = _tasks_of_uid(os.getuid()) + NPROC_SLACK
            notes.append(f"not root: jobs run as the pool's own uid; RLIMIT_NPROC is offset by the {self.nproc_base} tasks it already runs (+slack)")
        else:
            notes.append("drop_privileges=False as root: jobs run as uid 0 (capabilities dropped) and can write every root-owned file")
        use_ns = self.config.get("namespaces", True)
        caps["userns"] = False
        if use_ns and not root:
            try:
                sandbox_os.enter_user_namespace()
                caps["userns"] = True
            except OSError as exc:
                notes.append(f"user namespace unavailable ({exc}); no network/mount/PID namespaces")
                use_ns = False
        caps["netns"] = self._try(use_ns, "netns", lambda: sandbox_os.unshare(sandbox_os.CLONE_NEWNET))
        caps["mountns"] = self._try(use_ns, "mountns", self._private_mounts)
        caps["private_tmp"] = caps["mountns"]
        caps["hidden_dirs"] = []
        caps["proc_hidepid"] = False
        caps["minimal_dev"] = False
        if caps["mountns"]:
            self._try(True, "hidden_dirs", self._hide_dirs)
            caps["minimal_dev"] = self._try(True, "minimal_dev", self._minimal_dev)
            if root:
                caps["proc_hidepid"] = self._try(True, "proc_hidepid", self._private_proc)
        if caps["userns"]:
            # setns() back to the host's PID namespace needs privileges there; instead become
            # the init of a PID namespace of our own, under which per-job ones can nest.
            self._try(True, "pidns", self._become_pid_namespace_init)
        caps["seccomp"] = self._try(bool(self.config.get("seccomp", True)), "seccomp", self._load_seccomp)
        caps["pidns"] = self._try(use_ns, "pidns", self._check_pidns)
        if not caps["pidns"] and self.uid is None:
            notes.append("no PID namespace and no uid drop: processes that leave the job's process group survive it")
        caps["audit_hook"] = True
        caps["no_new_privs"] = True
        caps["rlimits"] = ["CPU", "AS", "NPROC", "NOFILE", "FSIZE", "CORE=0"]
        caps["cgroup"] = False
        if self.uid is not None and not caps["mountns"]:
            for path in self._exposed_paths():
                if not _world_traversable(path):
                    notes.append(f"{path} is not readable by the job uid: jobs can only use modules the worker preloaded")
        if caps["mountns"]:
            self.base = "/tmp/jobs"
            os.makedirs(self.base, mode=0o755, exist_ok=True)
        else:
            import tempfile

            self.base = tempfile.mkdtemp(prefix=f"execverify-sbx-{self.index}-")
            os.chmod(self.base, 0o711)
            notes.append("no private /tmp: jobs can write to the shared /tmp and /var/tmp (files are capped by RLIMIT_FSIZE)")

    def _try(self, enabled: bool, name: str, fn: Callable[[], None]) -> bool:
        if not enabled:
            return False
        try:
            fn()
            return True
        except OSError as exc:
            self.caps["notes"].append(f"{name} unavailable: {exc}")
            return False

    def _private_mounts(self) -> None:
        sandbox_os.unshare(sandbox_os.CLONE_NEWNS)
        # Private propagation first, or our tmpfs mounts would leak into the host's namespace.
        sandbox_os.mount("none", "/", None, sandbox_os.MS_REC | sandbox_os.MS_PRIVATE)
        size = int(self.config.get("tmpfs_mb", 64))
        for path in PRIVATE_TMP_DIRS:
            if os.path.isdir(path):
                # mode 0755 root: the job may write only inside its own work dir.
                sandbox_os.mount("tmpfs", path, "tmpfs", sandbox_os.MS_NOSUID | sandbox_os.MS_NODEV, f"size={size}m,nr_inodes=16k,mode=0755")

    def _minimal_dev(self) -> None:
        # Build the new /dev aside (inside our private /tmp), then move it over /dev at once.
        stage = "/tmp/.dev"
        os.mkdir(stage, 0o755)
        sandbox_os.mount("tmpfs", stage, "tmpfs", sandbox_os.MS_NOSUID, "size=64k,nr_inodes=64,mode=0755")
        for name in DEV_NODES:
            if os.path.exists(f"/dev/{name}"):
                open(os.path.join(stage, name), "w").close()
                sandbox_os.mount(f"/dev/{name}", os.path.join(stage, name), None, sandbox_os.MS_BIND)
        for name, target in DEV_LINKS.items():
            os.symlink(target, os.path.join(stage, name))
        os.mkdir(os.path.join(stage, "shm"), 0o755)
        size = int(self.config.get("tmpfs_mb", 64))
        sandbox_os.mount("tmpfs", os.path.join(stage, "shm"), "tmpfs", sandbox_os.MS_NOSUID | sandbox_os.MS_NODEV, f"size={size}m,nr_inodes=16k,mode=0755")
        sandbox_os.mount(stage, "/dev", None, sandbox_os.MS_MOVE)
        os.rmdir(stage)

    def _private_proc(self) -> None:
        # A procfs of our own with hidepid=2: the job uid sees only its own processes, not the
        # command lines and states of everything else on the host. Root (the worker) sees all.
        sandbox_os.mount("proc", "/proc", "proc", sandbox_os.MS_NOSUID | sandbox_os.MS_NODEV | sandbox_os.MS_NOEXEC, "hidepid=2")

    def _exposed_paths(self) -> list[str]:
        # The interpreter, the venv and our package only; not the rest of the checkout.
        pkg_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        pkg_root = os.path.dirname(pkg_dir)
        paths = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix), pkg_dir}
        paths.update(os.path.realpath(p) for p in sys.path if p and os.path.isdir(p) and os.path.realpath(p) != pkg_root)
        paths.discard("/")
        return sorted(paths)

    def _hide_dirs(self) -> None:
        exposed = self._exposed_paths()
        stage_root = "/tmp/.stage"
        os.makedirs(stage_root, mode=0o700, exist_ok=True)
        for k, hidden in enumerate(h for h in HIDDEN_DIRS if os.path.isdir(h) and not os.path.islink(h)):
            inside = [p for p in exposed if p == hidden or p.startswith(hidden + "/")]
            if hidden in inside:
                continue  # the interpreter itself lives there; hiding it would break the jobs
            inside = [p for p in inside if not any(q != p and p.startswith(q + "/") for q in inside)]
            staged = []
            for j, path in enumerate(inside):
                stage = os.path.join(stage_root, f"{k}-{j}")
                os.mkdir(stage)
                sandbox_os.mount(path, stage, None, sandbox_os.MS_BIND | sandbox_os.MS_REC)
                staged.append((stage, path))
            sandbox_os.mount("tmpfs", hidden, "tmpfs", sandbox_os.MS_NOSUID | sandbox_os.MS_NODEV, "size=1m,mode=0755")
            for stage, path in staged:
                os.makedirs(path, mode=0o755, exist_ok=True)
                sandbox_os.mount(stage, path, None, sandbox_os.MS_MOVE)
                # Keep the source's nosuid/nodev/noexec: in a user namespace they are locked,
                # and a remount that drops them fails with EPERM.
                kept = os.statvfs(path).f_flag & (os.ST_NOSUID | os.ST_NODEV | os.ST_NOEXEC)
                sandbox_os.mount("none", path, None, sandbox_os.MS_BIND | sandbox_os.MS_REMOUNT | sandbox_os.MS_RDONLY | kept)
                os.rmdir(stage)
            sandbox_os.mount("none", hidden, None, sandbox_os.MS_REMOUNT | sandbox_os.MS_RDONLY | sandbox_os.MS_NOSUID | sandbox_os.MS_NODEV)
            self.caps["hidden_dirs"].append(hidden)
        os.rmdir(stage_root)
        self.caps["exposed_paths"] = exposed

    def _become_pid_namespace_init(self) -> None:
        sandbox_os.unshare(sandbox_os.CLONE_NEWPID)
        pid = os.fork()
        if pid:  # the original process only mirrors the real worker's fate
            _, status = os.waitpid(pid, 0)
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
        sandbox_os.set_parent_death_signal()

    def _load_seccomp(self) -> None:
        program = sandbox_seccomp.build_filter()
        if program is None:
            raise OSError(f"no syscall table for {platform.machine()}")
        filt = sandbox_seccomp.Filter(program)
        # Probe in a throwaway child: the filter must load, deny what it should, allow fork.
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                sandbox_os.set_no_new_privs()
                filt.install()
                try:
                    sandbox_os.unshare(sandbox_os.CLONE_NEWUTS)
                except PermissionError:
                    inner = os.fork()
                    if inner == 0:
                        os._exit(0)
                    code = 0 if os.waitpid(inner, 0)[1] == 0 else 3
                else:
                    code = 2
            finally:
                os._exit(code)
        status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        if status != 0:
            raise OSError(f"the seccomp filter failed its probe (exit {status})")
        self.seccomp = filt

    def _check_pidns(self) -> None:
        self.pidns_fd = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        try:
            sandbox_os.new_pid_namespace_for_children(self.pidns_fd)
        except OSError:
            os.close(self.pidns_fd)
            self.pidns_fd = None
            raise

    # ----------------------------------------------------------------------------- targets
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

    def _workdir(self) -> str:
        """An empty directory owned by the job uid (reused while jobs leave it untouched)."""
        if self._spare_workdir is not None:
            workdir, self._spare_workdir = self._spare_workdir, None
            return workdir
        self.jobs += 1
        workdir = os.path.join(self.base, f"job-{self.jobs}")
        os.mkdir(workdir, 0o700)
        if self.uid is not None:
            os.chown(workdir, self.uid, self.uid)
        return workdir

    def _release_workdir(self, workdir: str) -> None:
        # Most jobs write nothing: keep the dir if it is still empty with its original mode and
        # owner (saves mkdir+chown+rmtree per job); anything else is removed.
        try:
            st = os.lstat(workdir)
            pristine = st.st_mode == 0o40700 and st.st_uid == (self.uid if self.uid is not None else os.getuid())
            if pristine and not os.listdir(workdir):
                self._spare_workdir = workdir
                return
        except OSError:
            pass
        _rmtree(workdir)

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
            run_child(fn, payload, limits, fds, workdir, self.uid)
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


def _tasks_of_uid(uid: int) -> int:
    """Processes+threads whose real uid is `uid` (what RLIMIT_NPROC counts), from /proc."""
    count = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                count += int(fields["Threads"])
        except (OSError, KeyError, ValueError):
            continue
    return count


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


def _world_traversable(path: str) -> bool:
    """True when every directory from / down to `path` lets other users in (o+x)."""
    parts = os.path.abspath(path).split("/")
    for k in range(2, len(parts) + 1):
        try:
            if not os.stat("/".join(parts[:k]) or "/").st_mode & 0o001:
                return False
        except OSError:
            return False
    return True


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
    if worker.seccomp is not None:
        # Once, here: every job inherits it (no per-job cost); the worker no longer needs mounts.
        try:
            sandbox_os.set_no_new_privs()
            worker.seccomp.install()
        except OSError as exc:
            worker.caps["seccomp"] = False
            worker.caps["notes"].append(f"seccomp unavailable: {exc}")
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
