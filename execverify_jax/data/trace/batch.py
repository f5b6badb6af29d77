"""Fused execution filter + tracer: the trace is the filter's run, batched per sandbox job.

`exec_filter.filter_programs` + `trace_many_in_sandbox` costs three sandbox jobs per program (two
filter runs, one trace). Here each program is traced twice, on two different workers (different
hash seeds), and the two *whole traces* must be identical: a stronger determinism check than
comparing return values. The kept value must also pass the execution filter's literal and
`repr` round-trip checks (`exec_filter.repr_round_trips`), so both paths keep the same programs
(except that this one also rejects programs whose trace hits a limit, and ones whose intermediate
states differ between the two runs).

Batching: one sandbox job traces `batch_size` programs. With isolation (`trace_filter`'s
`isolation`, default: the kept run) each program runs in its own process forked inside the job
(own process group, killed on its per-program deadline), under all of the sandbox's layers
(namespaces, uid drop, rlimits, audit hook, inherited) and in its own address space; programs of
one batch share the job's private working directory. If a whole batch job fails (e.g. a program
flooded the job's stdout or hung in C code), its programs are retried one job each, so one bad
program cannot reject its batch-mates.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import select
import signal
import time
from dataclasses import dataclass
from typing import Any, Sequence

from execverify_jax.data import safe_codec
from execverify_jax.data.trace.tracer import TARGET, base_trace, trace_from_outcome, trace_payload, trace_target, usable

BATCH_TARGET = "execverify_jax.data.trace.batch:trace_batch_target"
DEFAULT_ITEM_TIMEOUT_S = 2.0
ITEM_RESULT_CAP = 8 * 1024 * 1024


def _failure(item: dict, status: str, message: str) -> str:
    out = base_trace(item["code"], item["entry"], item["args"], {})
    out.update(status=status, error={"type": status, "message": message})
    return json.dumps(out)


def digest(trace_json: str) -> str:
    """The determinism fingerprint of a trace JSON text."""
    return "sha256:" + hashlib.sha256(trace_json.encode("utf-8")).hexdigest()


def _run_isolated(item: dict, timeout_s: float, as_digest: bool) -> str:
    """Traces one item in a forked process of its own; returns the trace JSON (or a failure),
    or only its digest when `as_digest` (the second, determinism-check run)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the program's own process: never returns
        code = 1
        try:
            os.close(r)
            os.setpgid(0, 0)  # its own group, so anything it forks dies with it
            text = trace_target(item)
            data = (digest(text) if as_digest else text).encode("utf-8")
            view = memoryview(data)
            while view:
                view = view[os.write(w, view):]
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    buf = bytearray()
    status = None
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                status = "sandbox_timeout"
                break
            if not select.select([r], [], [], left)[0]:
                continue
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            buf += chunk
            if len(buf) > ITEM_RESULT_CAP:
                status = "sandbox_killed"
                break
    finally:
        os.close(r)
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        _, wstatus = os.waitpid(pid, 0)
    if status == "sandbox_timeout":
        return _failure(item, status, f"wall-clock limit of {timeout_s} s exceeded")
    if status is None and os.WIFEXITED(wstatus) and os.WEXITSTATUS(wstatus) == 0 and buf:
        return buf.decode("utf-8", "replace")
    return _failure(item, "sandbox_killed", "the traced process died without a result")


def _run_shared(item: dict, timeout_s: float, as_digest: bool) -> str:
    """Traces one item in the job's own process (`isolate: false`): the tracer's Python-level
    time limit is the only per-item limit (a C-level hang times the whole batch out)."""
    text = trace_target(item)
    return digest(text) if as_digest else text


def trace_batch_target(payload: dict) -> list[str]:
    """Sandbox target: `{"items": [trace payloads], "item_timeout_s": s, "digest": bool,
    "isolate": bool, "reverse": bool}` -> one trace JSON string (or its `sha256:` digest, when
    `digest`) per item, in item order. `isolate` (default true) forks one process per item;
    `reverse` runs the items in reverse order (so order-dependent leakage between items that
    share a process shows up as a determinism failure)."""
    timeout_s = float(payload.get("item_timeout_s", DEFAULT_ITEM_TIMEOUT_S))
    as_digest = bool(payload.get("digest", False))
    isolate = bool(payload.get("isolate", True))
    # Both modes give the tracer the same time limit, so isolated and shared runs of one item
    # produce identical traces (the digest comparison depends on it); the forked process gets a
    # little longer so the tracer's own limit usually fires first.
    items = [{**item, "max_seconds": item.get("max_seconds") or timeout_s} for item in payload["items"]]
    order = list(range(len(items)))[:: -1 if payload.get("reverse") else 1]
    if isolate:
        gc.freeze()  # keep the collector from touching (and so copying) inherited pages in each fork
    out: list[str] = [""] * len(items)
    for i in order:
        if isolate:
            out[i] = _run_isolated(items[i], timeout_s + 0.5, as_digest)
        else:
            out[i] = _run_shared(items[i], timeout_s, as_digest)
    return out


# ----------------------------------------------------------------------------- parent side
@dataclass(frozen=True)
class TracedProgram:
    """The verdict for one `(code, entry, args)`: kept programs carry their trace and value."""

    code: str
    entry: str
    args: str
    kept: bool
    reason: str | None = None
    trace: dict | None = None
    value: Any = None
    detail: str | None = None


def _reason(trace: dict) -> str:
    status = trace.get("status")
    if status == "exception":
        return f"error:{trace['exception']['type']}"
    if status == "truncated":
        return f"truncated:{trace['truncated_reason']}"
    if status == "setup_error":
        return f"setup_error:{(trace.get('error') or {}).get('type')}"
    return str(status).removeprefix("sandbox_")


def judge(code: str, entry: str, args: str, first: dict, second: dict | str,
          first_text: str | None = None) -> TracedProgram:
    """Keeps a program when both traces are usable and identical and its value is a literal
    whose repr round-trips (the execution filter's rules). `second` is the second run's trace,
    or the digest of its JSON text (then `first_text` is the first run's JSON text)."""
    from execverify_jax.data.exec_filter import repr_round_trips

    if not usable(first):
        return TracedProgram(code, entry, args, False, _reason(first), detail=str(first.get("error") or first.get("exception")))
    value = safe_codec.from_jsonable(first["return"]["value"])
    if not first["return"]["literal"]:
        return TracedProgram(code, entry, args, False, "not_literal")
    if not repr_round_trips(value, repr(value)):
        return TracedProgram(code, entry, args, False, "repr_roundtrip", detail=repr(value)[:200])
    if isinstance(second, str):
        same = first_text is not None and digest(first_text) == second
    else:
        same = first == second
    if not same:
        detail = second[:200] if isinstance(second, str) else f"second run: {second.get('status')}"
        return TracedProgram(code, entry, args, False, "nondeterministic", detail=detail)
    return TracedProgram(code, entry, args, True, None, trace=first, value=value)


ISOLATION_MODES = ("each", "first", "none")


def trace_filter(pool: Any, items: Sequence[tuple[str, str, str]], *, batch_size: int = 32,
                 isolation: str = "first", limits: Any = None,
                 item_timeout_s: float = DEFAULT_ITEM_TIMEOUT_S, progress: bool = False,
                 **trace_opts: Any) -> list[TracedProgram]:
    """Filters and traces `(code, entry, args)` items (input order); see the module docstring.

    `isolation` says which of the two runs fork one process per program inside the batch job:
    - `"each"`: both runs;
    - `"first"` (default): the first run, whose trace is kept; the second, digest-only run
      executes the batch in the job's process in reverse order. Kept traces are as clean as
      with "each": a batch-mate can only make the digest differ (a false rejection), never
      make a wrong trace pass;
    - `"none"`: both runs share the job's process (the second in reverse order, so
      order-dependent leakage shows up as a mismatch), fastest, but a program could tamper with
      a later batch-mate in both runs alike; only for trusted-enough candidates.
    Every mode runs everything inside the sandbox.
    """
    if isolation not in ISOLATION_MODES:
        raise ValueError(f"isolation must be one of {ISOLATION_MODES}, got {isolation!r}")
    from execverify_jax.data.exec_filter import Candidate, _static_reason
    from execverify_jax.data.sandbox import Limits

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    static = [_static_reason(Candidate(c, e, a)) for c, e, a in items]
    todo = [i for i, reason in enumerate(static) if reason is None]
    payloads = {i: trace_payload(*items[i], **trace_opts) for i in todo}
    batches = [todo[k:k + batch_size] for k in range(0, len(todo), batch_size)]
    base = limits or Limits(timeout_s=item_timeout_s, memory_mb=512, output_bytes=16 * 1024)
    batch_limits = Limits(**{**base.to_dict(), "timeout_s": item_timeout_s * batch_size + 5.0,
                             "cpu_s": item_timeout_s * batch_size + 5.0})
    futures = []
    for b, idx in enumerate(batches):
        batch = [payloads[i] for i in idx]
        # The second run (another worker, so another hash seed) only sends digests back.
        first = {"items": batch, "item_timeout_s": item_timeout_s, "isolate": isolation != "none"}
        second = {"items": batch, "item_timeout_s": item_timeout_s, "isolate": isolation == "each",
                  "digest": True, "reverse": isolation != "each"}
        futures.append((idx, pool.submit(BATCH_TARGET, first, batch_limits, worker=2 * b),
                        pool.submit(BATCH_TARGET, second, batch_limits, worker=2 * b + 1)))
    verdicts: dict[int, TracedProgram] = {}
    it: Any = futures
    if progress:
        from tqdm import tqdm

        it = tqdm(futures, desc="trace filter", unit="batch")
    for idx, fa, fb in it:
        first, second = fa.result(), fb.result()
        if all(o.ok and isinstance(o.value, list) and len(o.value) == len(idx) for o in (first, second)):
            for pos, i in enumerate(idx):
                text = first.value[pos]
                verdicts[i] = judge(*items[i], json.loads(text), _digest_or_trace(second.value[pos]), text)
            continue
        # A whole batch failed: one job per program, pinned to two workers (two hash seeds).
        singles = [(i, pool.submit(TARGET, payloads[i], base, worker=2 * i),
                    pool.submit(TARGET, payloads[i], base, worker=2 * i + 1)) for i in idx]
        for i, f1, f2 in singles:
            verdicts[i] = judge(*items[i], trace_from_outcome(f1.result(), payloads[i]),
                                trace_from_outcome(f2.result(), payloads[i]))
    results = []
    for i, (code, entry, args) in enumerate(items):
        if static[i] is not None:
            results.append(TracedProgram(code, entry, args, False, static[i]))
        else:
            results.append(verdicts[i])
    return results


def _digest_or_trace(value: str) -> dict | str:
    # A run that failed sends its failure trace instead of a digest.
    return value if value.startswith("sha256:") else json.loads(value)
