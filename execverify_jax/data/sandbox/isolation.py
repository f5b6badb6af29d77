"""One-time isolation set-up of a sandbox worker: uid, namespaces, mounts, seccomp probe.

Mixed into `sandbox_worker.Worker`; runs in the worker process only, before its first fork.
Every layer is tried; what fails is recorded in `caps["notes"]` and the pool's capabilities
report, never fatal (except the uid lock when root: without a uid of its own a worker would
share RLIMIT_NPROC and signal rights with other pools). See docs/SANDBOX.md for each layer.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any, Callable

from execverify_jax.data.sandbox import oslayer as sandbox_os

from execverify_jax.data.sandbox import seccomp as sandbox_seccomp
from execverify_jax.data.sandbox.child import JobNamespaces, enter_job_namespaces, job_mounts

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # execverify_jax/
UID_LOCK_DIR = "/tmp/execverify-sandbox-uids"
PRIVATE_TMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
# The only device nodes a job gets (no GPU/TPU/kvm/fuse/tty devices: a job must not grab the
# trainer's accelerator memory); /dev becomes a small tmpfs with these bound in.
DEV_NODES = ("null", "zero", "full", "random", "urandom")
DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"}
# Hidden from jobs behind empty read-only tmpfs (home dirs, checkouts, data sets: a job must not
# read expected answers or keys off disk). What the interpreter needs is bound back read-only.
HIDDEN_DIRS = ("/root", "/home", "/work", "/mnt", "/srv", "/media", "/data", "/scratch", "/run")
# Never hidden, whatever the pool's cwd or checkout: the system itself (hiding a dir above or
# below these would break the interpreter's shared libraries, locale, certificates...).
SYSTEM_DIRS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc", "/proc", "/sys", "/dev", "/tmp", "/var/tmp", "/dev/shm", "/opt/conda", "/nix")
NPROC_SLACK = 64  # growth of the user's own task count that non-root jobs tolerate


class IsolationSetup:
    """`setup()` applies every per-worker layer it can and fills `self.caps`.

    The host class provides `index`, `config`, `caps`, `uid`, `pidns_fd`, `seccomp` and
    `nproc_base` (see `sandbox_worker.Worker.__init__`).
    """

    index: int
    config: dict[str, Any]
    caps: dict[str, Any]
    uid: int | None
    pidns_fd: int | None
    seccomp: "sandbox_seccomp.Filter | None"
    nproc_base: int
    base: str

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
            self.nproc_base = tasks_of_uid(os.getuid()) + NPROC_SLACK
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
        self._probe_job_namespaces(use_ns)
        if not caps["pidns"] and self.uid is None:
            notes.append("no PID namespace and no uid drop: processes that leave the job's process group survive it")
        caps["audit_hook"] = True
        caps["no_new_privs"] = True
        caps["rlimits"] = ["CPU", "AS", "NPROC", "NOFILE", "FSIZE", "CORE=0"]
        caps["cgroup"] = False
        if self.uid is not None and not caps["mountns"]:
            for path in self._exposed_paths():
                if not world_traversable(path):
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
        exposed = self._exposed_paths()
        for path in PRIVATE_TMP_DIRS:
            if os.path.isdir(path):
                # The interpreter or virtualenv may live there (e.g. a CI venv in /tmp): hold on
                # to those directories through O_PATH fds and bind them back over the new tmpfs.
                kept = [(p, os.open(p, os.O_PATH | os.O_DIRECTORY)) for p in _outermost_inside(exposed, path)]
                # mode 0755 root: the job may write only inside its own work dir.
                sandbox_os.mount("tmpfs", path, "tmpfs", sandbox_os.MS_NOSUID | sandbox_os.MS_NODEV, f"size={size}m,nr_inodes=16k,mode=0755")
                for inner, fd in kept:
                    try:
                        _bind_read_only(f"/proc/self/fd/{fd}", inner)
                    finally:
                        os.close(fd)

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
        pkg_dir = _PKG_DIR
        pkg_root = os.path.dirname(pkg_dir)
        paths = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix), pkg_dir}
        paths.update(os.path.realpath(p) for p in sys.path if p and os.path.isdir(p) and os.path.realpath(p) != pkg_root)
        paths.discard("/")
        return sorted(paths)

    def _dirs_to_hide(self, exposed: list[str]) -> list[str]:
        """The fixed list, plus wherever the checkout, the pool's cwd and `hide` extras are.

        A checkout can be anywhere (a CI runner clones into its own folder, not under /work or
        /home), so the source tree this package was imported from and the directory the pool was
        started in are hidden too, wherever they are, unless that would hide the system.
        """
        pkg_root = os.path.dirname(_PKG_DIR)
        wanted = list(HIDDEN_DIRS) + [pkg_root, str(self.config.get("parent_cwd") or "/")]
        wanted += [str(p) for p in self.config.get("hide", ())]
        return dirs_to_hide(wanted, exposed)

    def _hide_dirs(self) -> None:
        exposed = self._exposed_paths()
        targets = self._dirs_to_hide(exposed)
        stage_root = "/tmp/.stage"
        os.makedirs(stage_root, mode=0o700, exist_ok=True)
        for k, hidden in enumerate(targets):
            inside = _outermost_inside(exposed, hidden)
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
                _remount_read_only(path)
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

    def _probe_job_namespaces(self, enabled: bool) -> None:
        """Decides what each job sets up for itself (`child.enter_job_namespaces`): a private IPC
        namespace, and in a private mount namespace a procfs of the job's PID namespace and an
        empty /dev/shm. Each part is tried in a throwaway child exactly as a job would (under
        the seccomp filter, in a fresh PID namespace); the parts that work are kept."""
        caps, notes = self.caps, self.caps["notes"]
        caps["ipcns"] = caps["private_proc"] = caps["private_shm"] = caps["ipc_limits"] = False
        if enabled:
            shm_mb = int(self.config.get("tmpfs_mb", 64))
            parts = {
                "ipcns": JobNamespaces(sandbox_os.CLONE_NEWIPC),
                "private_proc": JobNamespaces(sandbox_os.CLONE_NEWNS, job_mounts(True, False, shm_mb)),
                "private_shm": JobNamespaces(sandbox_os.CLONE_NEWNS, job_mounts(False, True, shm_mb)),
            }
            if self.pidns_fd is None:  # a procfs mounted outside a job PID namespace shows the host's
                del parts["private_proc"]
            if not caps["mountns"] or not os.path.isdir("/dev/shm"):
                del parts["private_shm"]
            for name, part in parts.items():
                error = self._probe_in_child(part)
                caps[name] = error is None
                if error:
                    notes.append(f"{name} unavailable: {error}")
            flags = 0
            for name, part in parts.items():
                flags |= part.flags if caps[name] else 0
            mounts = tuple(m for name, part in parts.items() if caps[name] for m in part.mounts)
            if flags:
                self.job_ns = JobNamespaces(flags, mounts)
                error = self._probe_in_child(self.job_ns)
                if error:  # each part works alone but not together: keep none of them
                    notes.append(f"per-job namespaces unavailable together: {error}")
                    self.job_ns = None
                    caps["ipcns"] = caps["private_proc"] = caps["private_shm"] = False
            if self.job_ns is not None and caps["ipcns"]:
                capped = JobNamespaces(self.job_ns.flags, self.job_ns.mounts, cap_ipc=True)
                error = self._probe_in_child(capped)
                caps["ipc_limits"] = error is None
                if error:  # e.g. a read-only /proc/sys
                    notes.append(f"ipc_limits unavailable ({error}): a job's SysV IPC can grow past its memory limit while it runs (it is freed when it ends)")
                else:
                    self.job_ns = capped
        if not caps["ipcns"]:
            notes.append("no IPC namespace per job: SysV IPC objects and POSIX message queues a job creates outlive it, on the host")
        if not caps["private_proc"]:
            notes.append("no procfs of the job's own: /proc lists the host's processes (filtered by uid only with proc_hidepid)")

    def _probe_in_child(self, ns: JobNamespaces) -> str | None:
        """None if a job-like child can enter `ns`, else the error it met."""
        rfd, wfd = os.pipe()
        if self.pidns_fd is not None:
            sandbox_os.new_pid_namespace_for_children(self.pidns_fd)
        pid = os.fork()
        if pid == 0:
            msg = b""
            try:
                os.close(rfd)
                if self.seccomp is not None:  # the filter every job inherits must let it through
                    sandbox_os.set_no_new_privs()
                    self.seccomp.install()
                enter_job_namespaces(ns, 1024)
            except BaseException as exc:  # noqa: BLE001 - reported to the worker
                msg = f"{type(exc).__name__}: {exc}".encode()[:500]
            finally:
                os.write(wfd, msg)
                os._exit(0)
        os.close(wfd)
        with os.fdopen(rfd, "rb") as f:
            msg = f.read()
        status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        if msg or status != 0:
            return msg.decode("utf-8", "replace") or f"probe exited with {status}"
        return None

    # ----------------------------------------------------------------------------- targets


def dirs_to_hide(wanted: list[str], exposed: list[str]) -> list[str]:
    """Existing `wanted` dirs (resolved) that may be hidden, outermost only, shortest first.

    Skipped: exposed paths and dirs inside them (the interpreter lives there; what is exposed
    *inside* a hidden dir is bound back instead), "/" and anything equal to, above or below a system dir.
    """
    out: list[str] = []
    for path in wanted:
        path = os.path.realpath(path)
        inside_exposed = any(path == e or path.startswith(e + "/") for e in exposed)
        if os.path.isdir(path) and path not in out and not inside_exposed and _safe_to_hide(path):
            out.append(path)
    return sorted(_outermost(out), key=len)


def _safe_to_hide(path: str) -> bool:
    """False for "/" and for paths equal to, above or below a system dir."""
    if path == "/":
        return False
    for sys_dir in SYSTEM_DIRS:
        if path == sys_dir or path.startswith(sys_dir + "/") or sys_dir.startswith(path + "/"):
            return False
    return True


def _outermost(paths: list[str]) -> list[str]:
    """`paths` without those nested in another listed one."""
    return [p for p in paths if not any(q != p and p.startswith(q + "/") for q in paths)]


def _outermost_inside(paths: list[str], top: str) -> list[str]:
    """The paths strictly inside `top`, without those nested in another listed one."""
    return _outermost([p for p in paths if p.startswith(top.rstrip("/") + "/")])


def _remount_read_only(path: str) -> None:
    # Keep the source's nosuid/nodev/noexec: in a user namespace they are locked, and a remount
    # that drops them fails with EPERM.
    kept = os.statvfs(path).f_flag & (os.ST_NOSUID | os.ST_NODEV | os.ST_NOEXEC)
    sandbox_os.mount("none", path, None, sandbox_os.MS_BIND | sandbox_os.MS_REMOUNT | sandbox_os.MS_RDONLY | kept)


def _bind_read_only(source: str, path: str) -> None:
    """Bind-mounts `source` (a path or /proc/self/fd/N) read-only at `path`, creating it."""
    os.makedirs(path, mode=0o755, exist_ok=True)
    sandbox_os.mount(source, path, None, sandbox_os.MS_BIND | sandbox_os.MS_REC)
    _remount_read_only(path)


def tasks_of_uid(uid: int) -> int:
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


def world_traversable(path: str) -> bool:
    """True when every directory from / down to `path` lets other users in (o+x)."""
    parts = os.path.abspath(path).split("/")
    for k in range(2, len(parts) + 1):
        try:
            if not os.stat("/".join(parts[:k]) or "/").st_mode & 0o001:
                return False
        except OSError:
            return False
    return True
