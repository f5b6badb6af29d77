"""`RealStages`: the pipeline's stages bound to the project's synthesis, sandbox, tracer and questions.

Nothing here imports jax; the stage modules are imported lazily, when a stage first runs.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any, Iterator

from execverify_jax.data.pipeline.chunk import CellInfo
from execverify_jax.data.pipeline.config import DataConfig

# --------------------------------------------------------------------------------- real stages
class RealStages:
    """Binds the pipeline to the project's synthesis, sandbox, execution filter, tracer and questions.

    Imports are lazy so that planning, tests with fake stages and `--help` stay cheap.
    """

    def cells(self, cfg: DataConfig) -> list[Any]:
        from execverify_jax.data.synth import grid

        return grid.build_grid(levels=cfg.levels, groups=cfg.groups, methods=cfg.methods)

    def shard(self, cells: list[Any], shard_index: int, num_shards: int) -> list[Any]:
        from execverify_jax.data.synth import grid

        return grid.shard(cells, shard_index, num_shards)

    def cell_info(self, cell: Any) -> CellInfo:
        return CellInfo(key=cell.key, level=int(cell.level), group=cell.group, method=cell.method)

    @contextlib.contextmanager
    def pool(self, cfg: DataConfig) -> Iterator[Any]:
        from execverify_jax.data.trace import tracer as trace_mod
        from execverify_jax.data.sandbox import RUN_CALLS, SandboxPool

        preload = [RUN_CALLS, trace_mod.TARGET]
        with SandboxPool(num_workers=cfg.workers, limits=cfg.limits, preload=preload) as pool:
            yield pool

    def synthesize(self, cell: Any, seed: int, cfg: DataConfig) -> dict | None:
        from execverify_jax.data.synth import builder

        # Extra candidates let the pipeline keep the inputs whose outputs differ (signal.py).
        return builder.synthesize(cell, seed, cfg.inputs_per_program + cfg.signal.extra_inputs,
                                  cfg.synth)

    def check(self, cand: dict) -> list[str]:
        from execverify_jax.data.synth import checker

        return list(checker.check(cand["code"], cand["entry"], cand.get("constraint")))

    def execute(self, pool: Any, cands: list[dict], cfg: DataConfig) -> list[list[tuple[Any, str | None]]]:
        self._traces: dict[tuple[str, str, str], dict] = {}
        if not cfg.fused_filter_trace:
            return _execute(pool, cands, cfg.limits)
        # Fused path: each (program, input) is traced twice on two workers; identical, usable
        # traces with a literal, repr-round-tripping value are kept, and the trace is reused.
        from execverify_jax.data.trace import batch as trace_batch

        limits = cfg.limits
        items = [(c["code"], c["entry"], a) for c in cands for a in c["inputs"]]
        results = trace_batch.trace_filter(pool, items, batch_size=cfg.trace_batch_size, limits=limits,
                                           item_timeout_s=float(limits.timeout_s),
                                           max_steps=cfg.trace.max_steps, max_value_chars=cfg.trace.max_value_chars)
        from execverify_jax.data import safe_codec

        out: list[list[tuple[Any, str | None]]] = []
        pos = 0
        for c in cands:
            mine = results[pos:pos + len(c["inputs"])]
            pos += len(c["inputs"])
            for r in mine:
                if r.kept:
                    self._traces[(r.code, r.entry, r.args)] = r.trace
            out.append([(safe_codec.to_jsonable(r.value), None) if r.kept else (None, r.reason or "unknown")
                        for r in mine])
        return out

    def rerun(self, pool: Any, progs: list[dict], cfg: DataConfig) -> list[list[tuple[Any, str | None]]]:
        """For `verify`: always the plain execution filter (no tracer), independent of `execute`."""
        return _execute(pool, progs, cfg.limits)

    def trace(self, pool: Any, progs: list[dict], cfg: DataConfig) -> list[tuple[list | None, str | None]]:
        from execverify_jax.data.trace import tracer as trace_mod

        items = [(p["code"], p["entry"], a) for p in progs for a in p["inputs"]]
        cached = getattr(self, "_traces", {})
        missing = [it for it in items if it not in cached]
        fresh = dict(zip(missing, trace_mod.trace_many_in_sandbox(
            pool, missing, limits=cfg.limits, max_steps=cfg.trace.max_steps,
            max_value_chars=cfg.trace.max_value_chars))) if missing else {}
        traces = [cached[it] if it in cached else fresh[it] for it in items]
        out: list[tuple[list | None, str | None]] = []
        pos = 0
        for p in progs:
            mine = traces[pos:pos + len(p["inputs"])]
            pos += len(p["inputs"])
            bad = next((t for t in mine if not trace_mod.usable(t)), None)
            if bad is not None:
                reason = bad.get("status", "unknown")
                if bad.get("truncated"):
                    reason = f"truncated:{bad.get('truncated_reason') or bad.get('reason') or ''}"
                out.append((None, str(reason)))
            else:
                out.append((mine, None))
        return out

    def questions(self, prog: dict, traces: list, cfg: DataConfig, rng: random.Random) -> list[dict]:
        from execverify_jax.data import questions

        qcfg = cfg.questions
        out: list[dict] = []
        for tr in traces:  # one trace per input, in input order
            out.extend(questions.make_questions(prog, tr, qcfg, rng))
        return out

    def versions(self) -> dict[str, str]:
        out = {}
        try:
            from execverify_jax.data.trace import tracer as trace_mod

            out["trace_format"] = trace_mod.TRACE_FORMAT
        except ImportError:
            pass
        return out


def _execute(pool: Any, cands: list[dict], limits: Any) -> list[list[tuple[Any, str | None]]]:
    """Runs every (program, input) through the execution filter (data/exec_filter.py).

    Returns, per program and input, (output as a safe_codec jsonable, None) when kept, else
    (None, rejection reason). (A kept output may itself be None: the program returned None.)
    """
    from execverify_jax.data import exec_filter

    flat = [exec_filter.Candidate(code=c["code"], entry=c["entry"], args=a) for c in cands for a in c["inputs"]]
    results = exec_filter.filter_programs(pool, flat, limits=limits)
    out: list[list[tuple[Any, str | None]]] = []
    pos = 0
    for c in cands:
        mine = results[pos:pos + len(c["inputs"])]
        pos += len(c["inputs"])
        out.append([(r.output, None) if r.kept else (None, r.reason or "unknown") for r in mine])
    return out
