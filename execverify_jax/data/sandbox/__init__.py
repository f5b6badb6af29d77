"""The sandbox: long-lived workers, one fork per job, layered isolation (docs/SANDBOX.md).

pool.py       the parent side: `SandboxPool`, typed `Outcome`s, job submission
worker.py     a worker process (started clean, imports targets once, forks one child per job)
child.py      what a child does before it runs the target: limits, isolation, the reply
isolation.py  namespaces, private /tmp and /proc, hidden directories, uid drop
limits.py     `Limits` (time, memory, output) and their rlimits
seccomp.py    the syscall filter;  oslayer.py  the ctypes system calls the others use
protocol.py   the parent <-> worker wire format
calls.py      trusted code run inside the sandbox: one or several calls of a program, a script
"""

from execverify_jax.data.sandbox.limits import Limits
from execverify_jax.data.sandbox.pool import RUN_CALL, RUN_CALLS, RUN_STDIO, Outcome, SandboxPool, Status

__all__ = ["Limits", "Outcome", "RUN_CALL", "RUN_CALLS", "RUN_STDIO", "SandboxPool", "Status"]
