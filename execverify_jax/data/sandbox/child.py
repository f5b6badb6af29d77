"""The forked job process: confine itself, run the target, send back its result, `_exit`.

Runs only in a child freshly forked from a sandbox worker. Order matters: session, the job's own
IPC/mount namespaces and mounts (they need the privileges dropped next), fds, then limits and
the privilege drop (after which nothing can be undone), then the untrusted code.
What every job shares (scrubbed environment, SIGXCPU handler, audit hook, no_new_privs, seccomp)
is set once in the worker and inherited: each Python-level step here costs the child
copy-on-write page faults, the largest part of a job's fixed cost. The result goes to fd 3 as one JSON object; the worker forwards it untouched and the parent
decodes it with safe_codec. The untrusted code can write to fd 3 itself, so the result is only as
trustworthy as the code: expected answers therefore never enter the sandbox.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from typing import Any, Callable

from execverify_jax.data import safe_codec

from execverify_jax.data.sandbox import oslayer as sandbox_os

RESULT_FD = 3
REPR_CAP = 100_000
EXIT_SETUP_FAILED = 70
EXIT_RESULT_FAILED = 71
EXIT_CPU_LIMIT = 72
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
_BLOCKED_EVENTS = ("socket.", "_socket.")
# No fd of the worker can be above its soft RLIMIT_NOFILE. (A bound, not 2**31: without the
# close_range syscall Python closes fds one by one.)
_MAX_FD = max(int(os.sysconf("SC_OPEN_MAX")), 256)


class ResultEncodeError(Exception):
    """The target returned, but its value could not be encoded (hostile __lt__, huge repr...)."""


def audit_hook(event: str, args: tuple) -> None:
    # Defence in depth behind the network namespace; bypassable via ctypes (see docs/SANDBOX.md).
    if event.startswith(_BLOCKED_EVENTS) and event != "socket.gethostname":
        raise PermissionError(f"network access is disabled in the sandbox ({event})")


def on_cpu_limit(signum: int, frame: Any) -> None:
    os._exit(EXIT_CPU_LIMIT)


class JobNamespaces:
    """What each job's child sets up for itself before dropping privileges (decided by the
    worker's probe, `IsolationSetup._probe_job_namespaces`): `flags` for one unshare(2), then
    `mounts` as mount(2) argument tuples in that new mount namespace, then (`cap_ipc`) the IPC
    limits of its new IPC namespace (`ipc_sysctls`)."""

    __slots__ = ("flags", "mounts", "cap_ipc")

    def __init__(self, flags: int = 0, mounts: tuple[tuple[str, str, str, int, str | None], ...] = (), cap_ipc: bool = False) -> None:
        self.flags, self.mounts, self.cap_ipc = flags, mounts, cap_ipc


def ipc_sysctls(memory_mb: int) -> tuple[tuple[str, bytes], ...]:
    """The limits a job's fresh IPC namespace gets (a new one starts with the kernel's defaults,
    which are practically unlimited): SysV shared memory in all at most the job's memory limit
    (detached segments are outside RLIMIT_AS), 16 message queues (16 KiB each), 16 semaphore
    sets of at most 250 (1024 semaphores in all). Only what bounds memory: each write costs."""
    return (
        ("/proc/sys/kernel/shmall", str((int(memory_mb) << 20) // os.sysconf("SC_PAGE_SIZE")).encode()),
        ("/proc/sys/kernel/msgmni", b"16"),
        ("/proc/sys/kernel/sem", b"250 1024 32 16"),
    )


def job_mounts(proc: bool, shm: bool, shm_mb: int) -> tuple[tuple[str, str, str, int, str | None], ...]:
    """The per-job mounts: a procfs of the job's own PID namespace (it lists only the job's
    processes; it must be mounted from inside that namespace, i.e. by the job's init) and an
    empty /dev/shm (POSIX shared memory and semaphores die with the job)."""
    out: list[tuple[str, str, str, int, str | None]] = []
    if proc:
        out.append(("proc", "/proc", "proc", sandbox_os.PROC_MOUNT_FLAGS, None))
    if shm:
        out.append(("tmpfs", "/dev/shm", "tmpfs", sandbox_os.TMPFS_MOUNT_FLAGS, f"size={shm_mb}m,nr_inodes=4k,mode=1777"))
    return tuple(out)


def enter_job_namespaces(ns: JobNamespaces, memory_mb: int) -> None:
    """A private IPC namespace (SysV objects and POSIX queues are freed when the job's last
    process exits; their total size capped by `ipc_sysctls`) and a private mount namespace
    holding the job's procfs and /dev/shm."""
    if ns.flags:
        sandbox_os.unshare(ns.flags)
    for source, target, fstype, flags, data in ns.mounts:
        sandbox_os.mount(source, target, fstype, flags, data)
    if ns.cap_ipc:  # /proc/sys/kernel/{shm,msg,sem}* belong to the writer's IPC namespace
        for path, value in ipc_sysctls(memory_mb):
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, value)
            finally:
                os.close(fd)


def _set_limits(limits: dict[str, Any]) -> None:
    mb = 1024 * 1024
    cpu = int(limits["cpu_seconds"])
    # Soft limit -> SIGXCPU, caught below (the job is PID 1 of its namespace, and init ignores
    # default-action signals); the hard limit one second later is a SIGKILL nothing can catch.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    mem = int(limits["memory_mb"]) * mb
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_NPROC, (int(limits["nproc"]),) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (int(limits["nofile"]),) * 2)
    fsize = int(limits["fsize_mb"]) * mb
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


_os_write = os.write  # bound at import, before any job could replace os.write


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[_os_write(fd, view) :]


def _encode_result(value: Any, cap: int) -> bytes:
    try:
        text = repr(value)
        if not isinstance(text, str):
            text = "<repr returned a non-str>"
    except Exception as exc:  # a hostile __repr__ must not hide the value's type
        text = f"<repr failed: {type(exc).__name__}>"
    msg = {"status": "ok", "value": safe_codec.to_jsonable(value), "repr": text[:REPR_CAP]}
    data = json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")
    if len(data) > cap:
        msg = {
            "status": "error",
            "type": "ResultTooLarge",
            "message": f"the encoded result is {len(data)} bytes, over the cap of {cap}",
        }
        data = json.dumps(msg).encode()
    return data


def _encode_error(exc: BaseException) -> bytes:
    name = type(exc).__name__
    try:
        message = str(exc)
    except Exception:  # a hostile __str__
        message = "<str failed>"
    if isinstance(exc, SystemExit):
        message = f"the program called sys.exit({exc.code!r}) before returning a value"
    msg = {"status": "error", "type": name[:200], "message": message[:4000]}
    return json.dumps(msg, ensure_ascii=False).encode("utf-8", "replace")


def run_child(
    fn: Callable[[Any], Any],
    payload: Any,
    limits: dict[str, Any],
    fds: dict[str, int],
    workdir: str,
    uid: int | None,
    namespaces: JobNamespaces | None = None,
) -> None:
    """Confines this process, runs `fn(payload)` and exits. Never returns."""
    try:
        os.setsid()
        if namespaces is not None:
            enter_job_namespaces(namespaces, int(limits["memory_mb"]))
        # Std streams -> the worker's capture pipes; result -> fd 3; every other fd is closed
        # (the worker's protocol pipes, the uid lock, the namespace fd...).
        os.dup2(fds["devnull"], 0)
        os.dup2(fds["out"], 1)
        os.dup2(fds["err"], 2)
        os.dup2(fds["res"], RESULT_FD)
        os.closerange(RESULT_FD + 1, _MAX_FD)
        os.chdir(workdir)
        _set_limits(limits)
        # Inherited from the worker (Worker.confine_worker): the scrubbed environment, the
        # SIGXCPU handler, the audit hook, no_new_privs and the seccomp filter.
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)  # from root to another uid: clears every capability
        else:
            # Same uid as the worker (non-root pool, or drop_privileges=False): still shed every
            # capability (in a user namespace the worker holds them all, e.g. to unmount).
            sandbox_os.drop_capabilities()
        sandbox_os.set_parent_death_signal()  # after setuid, which clears it
        if "random" in sys.modules:  # the worker's seeded state would repeat in every job
            sys.modules["random"].seed()
        max_result = int(limits["result_bytes"])
    except BaseException as exc:  # noqa: BLE001 - report any setup failure and die
        try:
            os.write(2, f"sandbox setup failed: {type(exc).__name__}: {exc}\n".encode())
        finally:
            os._exit(EXIT_SETUP_FAILED)

    exit_ = os._exit  # our own reference: the job may replace `os._exit`
    try:
        try:
            value = fn(payload)
            try:
                data = _encode_result(value, max_result)
            except MemoryError:
                raise
            except BaseException as exc:  # noqa: BLE001 - not the program's error: say so
                data = _encode_error(ResultEncodeError(f"{type(exc).__name__}: {exc}"))
        except MemoryError:
            value = None  # free what we can before encoding
            data = b'{"status":"error","type":"MemoryError","message":"out of memory"}'
        except BaseException as exc:  # noqa: BLE001 - every exception is a typed outcome
            data = _encode_error(exc)
        _flush_std_streams()
        _write_all(RESULT_FD, data)
    except BaseException:  # noqa: BLE001
        exit_(EXIT_RESULT_FAILED)
    exit_(0)


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:  # the job may have closed or replaced them
            pass
