"""The sandbox pool: run trusted targets on untrusted payloads in confined, forked processes.

```python
with SandboxPool() as pool:
    out = pool.submit("execverify_jax.data.sandbox.calls:run_call",
                      {"code": "def f(x): return x * 2", "call": "f(21)"}).result()
    assert out.status is Status.OK and out.value == 42
```

Parent side only. Each worker is a clean `python -m execverify_jax.data.sandbox.worker` process
(see that module for the isolation layers, docs/SANDBOX.md for what they do and do not stop),
driven by one thread here that feeds it jobs from a shared queue and turns its replies into
`Outcome`s. Replies are plain JSON frames; the job's result inside them was produced by untrusted
code, so it is size-capped and decoded with `safe_codec` only. A worker that dies, hangs or
answers garbage is killed and restarted; its in-flight job gets a `killed` outcome.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Iterable, Sequence

from execverify_jax.data import safe_codec
from execverify_jax.data.sandbox.limits import Limits, Outcome, Status
from execverify_jax.data.sandbox.protocol import ProtocolError, read_frame, write_frame

__all__ = ["SandboxPool", "Limits", "Outcome", "Status", "RUN_CALL", "RUN_CALLS", "RUN_STDIO"]

RUN_CALL = "execverify_jax.data.sandbox.calls:run_call"
RUN_CALLS = "execverify_jax.data.sandbox.calls:run_calls"
RUN_STDIO = "execverify_jax.data.sandbox.calls:run_stdio"

DEFAULT_PRELOAD = (RUN_CALL,)
START_TIMEOUT_S = 60.0
REPLY_GRACE_S = 10.0  # beyond a job's own timeout, before a silent worker counts as hung
ERROR_TEXT_CAP = 4000
_PKG_ROOT = str(Path(__file__).resolve().parents[3])  # the directory holding execverify_jax/


class _Job:
    __slots__ = ("id", "target", "payload", "limits", "future")

    def __init__(self, job_id: int, target: str, payload: Any, limits: Limits, future: Future) -> None:
        self.id, self.target, self.payload, self.limits, self.future = job_id, target, payload, limits, future


class _WorkerProcess:
    """Parent-side handle of one worker process."""

    def __init__(self, index: int, config: dict[str, Any]) -> None:
        cmd = [sys.executable, "-s", "-m", "execverify_jax.data.sandbox.worker", json.dumps(config)]
        # A minimal environment: nothing of the parent's (tokens, keys) reaches the worker.
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": _PKG_ROOT, "PYTHONDONTWRITEBYTECODE": "1"}
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True, start_new_session=True, cwd="/"
        )
        self.index = index
        self.wfd = self.proc.stdin.fileno()
        self.rfd = self.proc.stdout.fileno()
        hello = read_frame(self.rfd, time.monotonic() + START_TIMEOUT_S, max_bytes=1 << 20)
        if not isinstance(hello, dict) or not isinstance(hello.get("hello"), dict):
            raise ProtocolError(f"unexpected hello from worker {index}: {str(hello)[:200]}")
        self.capabilities: dict[str, Any] = hello["hello"]

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        self.close()

    def close(self, timeout: float = 5.0) -> None:
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class SandboxPool:
    """A pool of sandbox workers; thread-safe `submit`/`map` returning `Outcome`s.

    num_workers:     worker processes (default: os.cpu_count()).
    limits:          default `Limits` for jobs submitted without their own.
    preload:         targets imported by every worker at start (others load on first use).
    drop_privileges: when root, run jobs as a per-worker uid (uid_base + k, locked machine-wide).
    namespaces:      use network/mount/PID namespaces when available.
    tmpfs_mb:        size of each worker's private /tmp (and of its job work dirs).
    seccomp:         install the seccomp deny-list in every job (x86_64/aarch64).
    hide:            more directories to hide from jobs (data sets, run dirs), on top of the
                     fixed list, the checkout this package runs from and the pool's cwd.
    unprivileged:    behave as a non-root pool even as root (no uid drop; namespaces through a
                     user namespace). For testing that path; real non-root pools do it anyway.
    """

    def __init__(
        self,
        num_workers: int | None = None,
        *,
        limits: Limits | None = None,
        preload: Sequence[str] = DEFAULT_PRELOAD,
        drop_privileges: bool = True,
        namespaces: bool = True,
        tmpfs_mb: int = 64,
        uid_base: int = 61000,
        uid_count: int = 2000,
        unprivileged: bool = False,
        seccomp: bool = True,
        hide: Sequence[str] = (),
    ) -> None:
        if not sys.platform.startswith("linux"):
            raise RuntimeError(f"the sandbox needs Linux (pidfd, namespaces, prctl); this is {sys.platform}")
        self._owner_pid = os.getpid()
        n = num_workers if num_workers is not None else (os.cpu_count() or 1)
        if n < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers!r}")
        self.num_workers = n
        self.default_limits = limits or Limits()
        self._config = {
            "preload": list(preload),
            "drop_privileges": drop_privileges,
            "namespaces": namespaces,
            "tmpfs_mb": int(tmpfs_mb),
            "uid_base": int(uid_base),
            "uid_count": int(uid_count),
            "unprivileged": bool(unprivileged),
            "seccomp": bool(seccomp),
            # Hidden from jobs besides the fixed list: the dir the pool starts in (a run dir, a
            # checkout) and any data dirs the caller names.
            "parent_cwd": _cwd_or_root(),
            "hide": [os.path.abspath(str(p)) for p in hide],
        }
        self._cond = threading.Condition()
        self._shared: collections.deque[_Job] = collections.deque()
        self._pinned: list[collections.deque[_Job]] = [collections.deque() for _ in range(n)]
        self._closed = False
        self._ids = itertools.count()
        self._workers: list[_WorkerProcess | None] = [None] * n
        self._capabilities: dict[str, Any] | None = None
        self.restarts = 0
        # Start every worker now (in parallel) so start-up errors surface here, not in a job.
        starters = [threading.Thread(target=self._start_worker, args=(i,), daemon=True) for i in range(n)]
        for t in starters:
            t.start()
        for t in starters:
            t.join()
        failed = [i for i in range(n) if self._workers[i] is None]
        if failed:
            self.close()
            raise RuntimeError(f"sandbox workers {failed} failed to start (see stderr)")
        self._threads = [threading.Thread(target=self._drive, args=(i,), name=f"sandbox-driver-{i}", daemon=True) for i in range(n)]
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------------------------ public
    @property
    def capabilities(self) -> dict[str, Any]:
        """Which isolation layers are active (as reported by the workers; see docs/SANDBOX.md)."""
        return dict(self._capabilities or {})

    def submit(self, target: str, payload: Any, limits: Limits | None = None, *, worker: int | None = None) -> "Future[Outcome]":
        """Queues one job; the future resolves to an `Outcome` (never to an exception).

        `worker` pins the job to worker `worker % num_workers` (each worker has its own hash seed;
        the execution filter uses this to run a program twice under different seeds).
        """
        if os.getpid() != self._owner_pid:
            # A forked copy of the pool has no driver threads: its jobs would wait forever.
            raise RuntimeError("this SandboxPool belongs to another process (it was forked); create one per process")
        if not isinstance(target, str) or ":" not in target:
            raise ValueError(f"target must be 'module:function', got {target!r}")
        lim = limits or self.default_limits
        if not isinstance(lim, Limits):
            raise TypeError(f"limits must be a Limits, got {type(lim).__name__}")
        fut: Future = Future()
        job = _Job(next(self._ids), target, payload, lim, fut)
        with self._cond:
            if self._closed:
                raise RuntimeError("the sandbox pool is closed")
            if worker is None:
                self._shared.append(job)
                self._cond.notify()
            else:
                self._pinned[worker % self.num_workers].append(job)
                self._cond.notify_all()
        return fut

    def map(self, target: str, payloads: Iterable[Any], limits: Limits | None = None) -> list[Outcome]:
        """Runs every payload; returns outcomes in input order."""
        futures = [self.submit(target, p, limits) for p in payloads]
        return [f.result() for f in futures]

    def run(self, target: str, payload: Any, limits: Limits | None = None) -> Outcome:
        """Runs one job and waits for it."""
        return self.submit(target, payload, limits).result()

    def close(self) -> None:
        """Stops the workers; queued jobs that did not start get a `killed` outcome."""
        if os.getpid() != getattr(self, "_owner_pid", os.getpid()):
            return  # a forked copy: the workers are not ours to stop
        with self._cond:
            if self._closed:
                return
            self._closed = True
            pending = list(self._shared) + [j for q in self._pinned for j in q]
            self._shared.clear()
            for q in self._pinned:
                q.clear()
            self._cond.notify_all()
        for job in pending:
            if job.future.set_running_or_notify_cancel():
                job.future.set_result(Outcome(Status.KILLED, error_type="PoolClosed", error="the sandbox pool was closed"))
        for t in getattr(self, "_threads", []):
            t.join(timeout=30)
        for i, w in enumerate(self._workers):
            if w is not None:
                w.close()
                self._workers[i] = None

    def __enter__(self) -> "SandboxPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # ---------------------------------------------------------------------------- internals
    def _start_worker(self, index: int) -> _WorkerProcess | None:
        config = dict(self._config, index=index)
        try:
            w = _WorkerProcess(index, config)
        except (OSError, ProtocolError) as exc:
            print(f"sandbox: worker {index} failed to start: {exc}", file=sys.stderr)
            return None
        self._workers[index] = w
        if self._capabilities is None:
            self._capabilities = w.capabilities
        return w

    def _next_job(self, index: int) -> _Job | None:
        with self._cond:
            while True:
                if self._pinned[index]:
                    return self._pinned[index].popleft()
                if self._shared:
                    return self._shared.popleft()
                if self._closed:
                    return None
                self._cond.wait()

    def _drive(self, index: int) -> None:
        while True:
            job = self._next_job(index)
            if job is None:
                return
            if not job.future.set_running_or_notify_cancel():
                continue
            try:
                outcome = self._run_on_worker(index, job)
            except BaseException as exc:  # noqa: BLE001 - a driver must never die with a job
                outcome = Outcome(Status.KILLED, error_type="SandboxError", error=f"{type(exc).__name__}: {exc}")
            job.future.set_result(outcome)

    def _live_worker(self, index: int) -> _WorkerProcess | None:
        w = self._workers[index]
        if w is None or w.proc.poll() is not None:
            if w is not None:
                w.kill()
                self._workers[index] = None
                self.restarts += 1
            w = self._start_worker(index)
        return w

    def _send(self, index: int, frame: dict[str, Any]) -> _WorkerProcess | None:
        """Delivers a job frame; a worker that died while idle is replaced and tried once more."""
        for _ in range(2):
            w = self._live_worker(index)
            if w is None:
                return None
            try:
                write_frame(w.wfd, frame)
                return w
            except OSError:
                w.kill()
                self._workers[index] = None
                self.restarts += 1
        return None

    def _run_on_worker(self, index: int, job: _Job) -> Outcome:
        lim = job.limits
        frame = {"id": job.id, "target": job.target, "payload": job.payload, "limits": dict(lim.to_dict(), cpu_seconds=lim.cpu_seconds)}
        w = self._send(index, frame)
        if w is None:
            return Outcome(Status.KILLED, error_type="WorkerStartError", error="the sandbox worker could not be started")
        try:
            deadline = time.monotonic() + lim.timeout_s + REPLY_GRACE_S
            # JSON escaping can grow text up to 6x (\u0000); anything beyond that is not our worker.
            reply = read_frame(w.rfd, deadline, max_bytes=6 * (lim.result_bytes + 2 * lim.output_bytes) + (1 << 20))
            if not isinstance(reply, dict) or reply.get("id") != job.id:
                raise ProtocolError("reply does not match the job")
        except (OSError, ProtocolError, TypeError, ValueError) as exc:
            # Dead, hung or confused worker: replace it; the job gets a typed outcome.
            w.kill()
            self._workers[index] = None
            self.restarts += 1
            return Outcome(Status.KILLED, error_type="WorkerDied", error=f"the sandbox worker failed during the job: {exc}")
        if reply.get("fatal"):  # the worker retired itself after an internal failure
            w.close()
            self._workers[index] = None
            self.restarts += 1
        return outcome_from_reply(reply)


def _text(x: Any, cap: int = ERROR_TEXT_CAP) -> str | None:
    return None if x is None else str(x)[:cap]


def outcome_from_reply(reply: dict[str, Any]) -> Outcome:
    """Builds an Outcome from a worker reply; the embedded child result is untrusted data."""
    common = {
        "stdout": str(reply.get("stdout", "")),
        "stderr": str(reply.get("stderr", "")),
        "duration_s": float(reply.get("duration_s", 0.0)),
    }
    status = reply.get("status")
    if status != "result":
        try:
            st = Status(status)
        except ValueError:
            st = Status.KILLED
        return Outcome(st, error_type=_text(reply.get("error_type"), 200), error=_text(reply.get("error")), **common)
    try:
        msg = json.loads(reply["result"])
        if not isinstance(msg, dict):
            raise ValueError("result is not an object")
        if msg.get("status") == "ok":
            value = safe_codec.from_jsonable(msg.get("value"))
            value_repr = msg.get("repr")
            if not isinstance(value_repr, str):
                raise ValueError("repr is not a string")
            return Outcome(Status.OK, value=value, value_repr=value_repr, **common)
        if msg.get("status") == "error":
            etype = _text(msg.get("type"), 200) or "Exception"
            st = Status.MEMORY if etype == "MemoryError" else Status.ERROR
            return Outcome(st, error_type=etype, error=_text(msg.get("message")) or "", **common)
        raise ValueError(f"unknown result status {str(msg.get('status'))[:50]!r}")
    except (ValueError, TypeError, KeyError, RecursionError, safe_codec.CodecError) as exc:
        return Outcome(Status.KILLED, error_type="BadResult", error=f"the job sent a malformed result: {exc}", **common)


def _cwd_or_root() -> str:
    try:
        return os.getcwd()
    except FileNotFoundError:  # the cwd was deleted: nothing there to hide
        return "/"
