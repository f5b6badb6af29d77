"""A seccomp-BPF deny-list for sandbox jobs: shrink the kernel surface a job can reach.

Denied with EPERM: debugging other processes (ptrace, process_vm_*), namespace and mount
operations (unshare except with only CLONE_NEWPID/CLONE_NEWNS/CLONE_NEWIPC, setns except with
exactly CLONE_NEWPID, mount except with exactly the flags of the job's own procfs and /dev/shm
mounts: the worker and each job's first moments need those, and a job, once it has dropped its
privileges, is refused them by the kernel; umount2, the new mount API, pivot_root, chroot; clone
with any CLONE_NEW*),
io_uring, bpf, perf_event_open, userfaultfd, the key store, module/kexec/reboot/swap/clock
administration, and every x32 syscall on x86_64. clone3 gets ENOSYS (its flags live in memory
the filter cannot read) so glibc falls back to clone, whose flags are checked. Everything else is
allowed: this is a deny-list that leaves normal programs alone, in the spirit of Docker's default
profile, not a whitelist.

Only x86_64 and aarch64 are supported (syscall numbers from <asm/unistd_64.h> and
<asm-generic/unistd.h>; tests check them against the headers when present). Elsewhere
`build_filter` returns None and the worker reports `seccomp: False`.

The worker installs the filter on itself once, after its own namespace and mount set-up, so
every job inherits it for free (installing per job would cost ~0.3 ms: the kernel JIT-compiles
each new filter).
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

from execverify_jax.data.sandbox import oslayer as sandbox_os

DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "unshare", "setns", "mount", "umount2",
    "pivot_root", "chroot", "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key",
    "request_key", "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "reboot", "swapon", "swapoff", "acct", "syslog", "iopl", "ioperm", "io_uring_setup",
    "io_uring_enter", "io_uring_register", "open_by_handle_at", "name_to_handle_at", "fsopen",
    "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr", "quotactl",
    "vhangup", "settimeofday", "clock_settime", "adjtimex", "clock_adjtime", "sethostname",
    "setdomainname", "lookup_dcookie",
)  # fmt: skip

SYSCALLS = {
    "x86_64": {
        "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "unshare": 272, "setns": 308,
        "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "bpf": 321, "perf_event_open": 298,
        "userfaultfd": 323, "keyctl": 250, "add_key": 248, "request_key": 249, "kexec_load": 246,
        "kexec_file_load": 320, "init_module": 175, "finit_module": 313, "delete_module": 176, "reboot": 169,
        "swapon": 167, "swapoff": 168, "acct": 163, "syslog": 103, "iopl": 172, "ioperm": 173,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "open_by_handle_at": 304,
        "name_to_handle_at": 303, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
        "move_mount": 429, "open_tree": 428, "mount_setattr": 442, "quotactl": 179, "vhangup": 153,
        "settimeofday": 164, "clock_settime": 227, "adjtimex": 159, "clock_adjtime": 305, "sethostname": 170,
        "setdomainname": 171, "lookup_dcookie": 212, "clone": 56, "clone3": 435,
    },
    "aarch64": {
        "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "unshare": 97, "setns": 268,
        "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51, "bpf": 280, "perf_event_open": 241,
        "userfaultfd": 282, "keyctl": 219, "add_key": 217, "request_key": 218, "kexec_load": 104,
        "kexec_file_load": 294, "init_module": 105, "finit_module": 273, "delete_module": 106, "reboot": 142,
        "swapon": 224, "swapoff": 225, "acct": 89, "syslog": 116, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "open_by_handle_at": 265, "name_to_handle_at": 264, "fsopen": 430,
        "fsconfig": 431, "fsmount": 432, "fspick": 433, "move_mount": 429, "open_tree": 428,
        "mount_setattr": 442, "quotactl": 60, "vhangup": 58, "settimeofday": 170, "clock_settime": 112,
        "adjtimex": 171, "clock_adjtime": 266, "sethostname": 161, "setdomainname": 162, "lookup_dcookie": 18,
        "clone": 220, "clone3": 435,
    },
}  # fmt: skip
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
X32_SYSCALL_BIT = 0x40000000
CLONE_NS_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000

# BPF opcodes and seccomp constants (linux/filter.h, linux/seccomp.h).
_LD_W_ABS = 0x00 | 0x00 | 0x20
_JEQ_K = 0x05 | 0x10 | 0x00
_JGE_K = 0x05 | 0x30 | 0x00
_JSET_K = 0x05 | 0x40 | 0x00
_RET_K = 0x06 | 0x00
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
# struct seccomp_data offsets; args are u64, we read their low 32 bits (little endian).
_OFF_NR, _OFF_ARCH, _OFF_ARG0, _OFF_ARG1, _OFF_ARG3 = 0, 4, 16, 24, 40
CLONE_NEWPID = sandbox_os.CLONE_NEWPID
# What unshare may ask for: a PID namespace for the next job (the worker), a mount and an IPC
# namespace for the job itself (its first step, before it drops its privileges).
UNSHARE_ALLOWED = sandbox_os.CLONE_NEWPID | sandbox_os.CLONE_NEWNS | sandbox_os.CLONE_NEWIPC


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _assemble(prog: list[tuple]) -> bytes:
    """Packs (code, jt, jf, k) instructions into a sock_filter array.

    jt/jf are 0 or a label name; ("label", name) entries mark targets. BPF jumps are relative
    and forward only, at most 255 instructions.
    """
    targets, pos = {}, 0
    for ins in prog:
        if ins[0] == "label":
            targets[ins[1]] = pos
        else:
            pos += 1
    real = [ins for ins in prog if ins[0] != "label"]
    out = []
    for index, (code, jt, jf, k) in enumerate(real):
        rel = [targets[j] - index - 1 if isinstance(j, str) else j for j in (jt, jf)]
        if any(r < 0 or r > 255 for r in rel):
            raise ValueError(f"BPF jump out of range at instruction {index}")
        out.append(struct.pack("=HBBI", code, rel[0], rel[1], k))
    return b"".join(out)


def build_filter(arch: str | None = None) -> bytes | None:
    """The filter program for `arch` (default: this machine), or None if unsupported."""
    arch = arch or platform.machine()
    if arch not in SYSCALLS:
        return None
    nr = SYSCALLS[arch]
    prog: list[tuple] = [
        (_LD_W_ABS, 0, 0, _OFF_ARCH),
        (_JEQ_K, 0, "deny", AUDIT_ARCH[arch]),  # another ABI (i386 int 0x80...): deny all
        (_LD_W_ABS, 0, 0, _OFF_NR),
    ]
    if arch == "x86_64":
        prog.append((_JGE_K, "deny", 0, X32_SYSCALL_BIT))
    # The worker itself runs under this filter (installed once, inherited by every job) and
    # still needs a fresh PID namespace per job (setns/unshare with CLONE_NEWPID); each job, as
    # its first step, takes a mount and an IPC namespace of its own and mounts a procfs and a
    # /dev/shm there (unshare with CLONE_NEWNS|CLONE_NEWIPC, mount with exactly those flags).
    # The job's code gains nothing from them: without CAP_SYS_ADMIN (no user namespaces: denied
    # below) the kernel refuses all three.
    prog += [
        (_JEQ_K, "unshare", 0, nr["unshare"]),
        (_JEQ_K, "setns", 0, nr["setns"]),
        (_JEQ_K, "mount", 0, nr["mount"]),
    ]
    for name in DENIED:
        if name in nr and name not in ("unshare", "setns", "mount"):
            prog.append((_JEQ_K, "deny", 0, nr[name]))
    prog += [
        (_JEQ_K, "enosys", 0, nr["clone3"]),
        (_JEQ_K, "clone", 0, nr["clone"]),
        (_RET_K, 0, 0, RET_ALLOW),
        ("label", "clone"),
        (_LD_W_ABS, 0, 0, _OFF_ARG0),
        (_JSET_K, "deny", 0, CLONE_NS_FLAGS),
        (_RET_K, 0, 0, RET_ALLOW),
        ("label", "unshare"),
        (_LD_W_ABS, 0, 0, _OFF_ARG0),
        (_JSET_K, "deny", "allow_ns", ~UNSHARE_ALLOWED & 0xFFFFFFFF),
        ("label", "setns"),
        (_LD_W_ABS, 0, 0, _OFF_ARG1),
        (_JEQ_K, "allow_ns", "deny", CLONE_NEWPID),
        ("label", "mount"),
        (_LD_W_ABS, 0, 0, _OFF_ARG3),
        (_JEQ_K, "allow_ns", 0, sandbox_os.PROC_MOUNT_FLAGS),
        (_JEQ_K, "allow_ns", "deny", sandbox_os.TMPFS_MOUNT_FLAGS),
        ("label", "allow_ns"),
        (_RET_K, 0, 0, RET_ALLOW),
        ("label", "deny"),
        (_RET_K, 0, 0, RET_ERRNO | errno.EPERM),
        ("label", "enosys"),
        (_RET_K, 0, 0, RET_ERRNO | errno.ENOSYS),
    ]
    return _assemble(prog)


class Filter:
    """A built filter kept in memory, installable (in a forked job) with one prctl."""

    def __init__(self, program: bytes) -> None:
        self._buf = ctypes.create_string_buffer(program, len(program))
        self._prog = _SockFprog(len(program) // 8, ctypes.addressof(self._buf))

    def install(self) -> None:
        """Applies the filter to this process and its future children (needs no_new_privs)."""
        sandbox_os.prctl_args(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(self._prog))
