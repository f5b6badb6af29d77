"""Linux isolation primitives for the sandbox worker, via ctypes (Python 3.11 has no os.unshare).

Every function returns/raises plainly; the worker decides what to do when one is unavailable and
reports it in the pool's `capabilities`. Nothing here runs in the parent process.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import signal

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
# The exact flags of the two mounts a job's child makes in its own mount namespace (a procfs for
# its PID namespace, a tmpfs on /dev/shm). The seccomp filter lets mount(2) through with exactly
# these flags and no others (see seccomp.py).
PROC_MOUNT_FLAGS = MS_NOSUID | MS_NODEV | MS_NOEXEC
TMPFS_MOUNT_FLAGS = MS_NOSUID | MS_NODEV

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38

_libc = ctypes.CDLL(None, use_errno=True)
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    """unshare(2)."""
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int) -> None:
    """setns(2)."""
    _check(_libc.setns(fd, nstype), "setns")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    """mount(2)."""
    _check(
        _libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def prctl(option: int, arg: int) -> None:
    """prctl(2) with one argument."""
    _check(_libc.prctl(option, arg, 0, 0, 0), "prctl")


def prctl_args(option: int, arg2: int, arg3: int) -> None:
    """prctl(2) with two arguments."""
    _check(_libc.prctl(option, arg2, arg3, 0, 0), "prctl")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def drop_capabilities() -> None:
    """capset(2) to nothing: effective, permitted and inheritable all empty (irreversible)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def set_no_new_privs() -> None:
    """After this, execve of set-uid binaries (su, sudo, ping...) cannot gain privileges."""
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def set_parent_death_signal() -> None:
    """The job gets SIGKILL when its worker dies. Must be set after setuid (which clears it)."""
    prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))


def new_pid_namespace_for_children(own_pidns_fd: int) -> None:
    """Makes the next fork() start a fresh PID namespace (the child becomes its init, PID 1).

    unshare(CLONE_NEWPID) only changes where *future* children go and refuses to nest while a
    previous one is pending, so first point pid_for_children back at our own namespace.
    """
    setns(own_pidns_fd, CLONE_NEWPID)
    unshare(CLONE_NEWPID)


def enter_user_namespace() -> None:
    """Unprivileged fallback: a user namespace where our uid maps to itself.

    Gives CAP_SYS_ADMIN *inside* it, so network/mount/PID namespaces work without root.
    """
    uid, gid = os.getuid(), os.getgid()
    unshare(CLONE_NEWUSER)
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"{gid} {gid} 1")


def acquire_uid(lock_dir: str, start: int, first: int, count: int) -> tuple[int, int]:
    """Locks a free uid in [first, first+count), trying `start` first; returns (uid, lock fd).

    The flock lives as long as the worker (it is released when the process dies), so concurrent
    pools on one machine never share a uid: RLIMIT_NPROC and signal permissions stay per worker.
    """
    os.makedirs(lock_dir, mode=0o700, exist_ok=True)
    for k in range(count):
        uid = first + (start - first + k) % count
        fd = os.open(os.path.join(lock_dir, f"{uid}.lock"), os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                continue
            raise
        return uid, fd
    raise OSError(errno.EBUSY, f"no free sandbox uid in [{first}, {first + count})")
