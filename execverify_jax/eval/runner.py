"""One evaluation run: load a benchmark, get responses, grade, aggregate, write the results.

Responses come from a JSONL file (`{"id", "response"}` per line, or `"responses": [...]` for
several samples; repeated ids append samples), from the model (`generation.py`, imported only
then), or from the ground truth itself (`oracle`, a harness self-check). Bad lines, unknown ids,
items without a response and unparsable responses are counted and reported, never fatal.
"""

from __future__ import annotations

import collections
import datetime as dt
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from execverify_jax.config_loader import ConfigError, check_choice, check_int, check_range
from execverify_jax.data import records
from execverify_jax.eval import metrics, registry
from execverify_jax.eval.base import STYLES, GradeContext
from execverify_jax.eval.items import EvalItem, LoadReport, Verdict
from execverify_jax.jsonl import read_jsonl
from execverify_jax.shared_config import GenerationConfig

GT_FAILED = "ground_truth_failed"
_RATE_KEYS = frozenset({"acc", "accuracy", "precision", "recall", "f1", "io_accuracy", "mean_wb_acc",
                        "mean_pass_rate"})


@dataclass(frozen=True)
class EvalConfig:
    """Everything one run needs: `execverify eval --config FILE --set k=v` or its flags."""

    benchmark: str
    data: str = ""  # required except for humaneval (checked by the command)
    style: str = "execverify"
    limit: int | None = None
    out: str | None = None
    responses: str | None = None
    model: str | None = None
    tokenizer: str | None = None
    oracle: bool = False
    write_prompts: str | None = None
    timeout_s: float = 3.0
    workers: int | None = None
    reval_state: str = "reval"
    scoring: str | None = None  # official | strict (CRUXEval/LCB; None: the benchmark's default)
    generation: GenerationConfig = field(default_factory=GenerationConfig)

    def __post_init__(self) -> None:
        check_choice("benchmark", self.benchmark, registry.BENCHMARKS)
        check_choice("style", self.style, STYLES)
        if self.limit is not None:
            check_int("limit", self.limit, 1)
        check_choice("reval_state", self.reval_state, ("reval", "frame"))
        check_range("timeout_s", self.timeout_s, 0.0, lo_open=True)
        if self.scoring is not None:
            _scoring_order(registry.make(self.benchmark), self.scoring)  # raises naming the value
        sources = sum(x is not None and x is not False for x in (self.responses, self.model, self.oracle or None))
        if sources > 1:
            raise ConfigError("give at most one of --model, --responses, --oracle")
        if sources == 0 and not self.write_prompts:
            raise ConfigError("give --model, --responses or --oracle (or --write-prompts alone)")


@dataclass
class ResponseStats:
    """What reading a responses file skipped."""

    bad_lines: int = 0
    unknown_ids: int = 0
    missing_items: int = 0


def read_responses(path: Path, items: list[EvalItem]) -> tuple[list[list[str]], ResponseStats]:
    """Samples per item from a JSONL file; items without any get one empty response."""
    stats = ResponseStats()
    by_id: dict[str, list[str]] = collections.defaultdict(list)
    known = {it.id for it in items}
    bad: collections.Counter = collections.Counter()  # lines that are not JSON objects
    for _, rec in read_jsonl(path, bad):
        if not isinstance(rec.get("id"), (str, int)):
            stats.bad_lines += 1
            continue
        rid = str(rec["id"])
        resps = rec.get("responses", [rec.get("response")]) if "responses" in rec else [rec.get("response")]
        if not isinstance(resps, list) or not all(isinstance(r, str) for r in resps):
            stats.bad_lines += 1
            continue
        if rid not in known:
            stats.unknown_ids += 1
            continue
        by_id[rid].extend(resps)
    stats.bad_lines += sum(bad.values())
    out = []
    for it in items:
        if not by_id.get(it.id):
            stats.missing_items += 1
            out.append([""])
        else:
            out.append(by_id[it.id])
    return out, stats


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Writes JSON lines atomically (creating the folder): every row, whatever its text
    (records.json_text escapes what UTF-8 cannot hold)."""
    records.write_jsonl(path, rows)


def task_metrics(items: list[EvalItem], verdicts: list[list[Verdict]]) -> dict[str, dict[str, Any]]:
    """Per task: items, samples, accuracy (mean fraction correct), pass@k, unparsable, reasons."""
    groups: dict[str, list[list[Verdict]]] = collections.defaultdict(list)
    for it, vs in zip(items, verdicts):
        groups[it.task].append(vs)
    out = {}
    for task, all_rows in sorted(groups.items()):
        # Items whose ground truth could not be computed are excluded (and counted), not failed.
        rows = [vs for vs in all_rows if not (vs and vs[0].reason == GT_FAILED)]
        counts = [(len(vs), sum(v.correct for v in vs)) for vs in rows if vs]
        n_min = min((n for n, _ in counts), default=1)
        reasons = collections.Counter(v.reason for vs in rows for v in vs if not v.correct)
        m: dict[str, Any] = {
            "items": len(rows), "excluded_no_ground_truth": len(all_rows) - len(rows),
            "samples": sum(n for n, _ in counts),
            "accuracy": sum(c / n for n, c in counts) / len(counts) if counts else 0.0,
            "unparsable": sum(v.unparsable for vs in rows for v in vs),
            "reasons": dict(reasons.most_common()),
        }
        for k in metrics.ks_for(n_min):
            m[f"pass@{k}"] = metrics.mean_pass_at_k(counts, k)
        out[task] = m
    return out


def markdown_table(results: dict[str, Any]) -> str:
    """The end-of-run table: one row per task, then the benchmark-specific metrics."""
    lines = ["| task | items | samples | accuracy | pass@k | unparsable |", "|---|---|---|---|---|---|"]
    for task, m in results["tasks"].items():
        ks = ", ".join(f"@{k[5:]}={100 * v:.1f}" for k, v in m.items() if k.startswith("pass@"))
        n_items = f"{m['items']} (+{m['excluded_no_ground_truth']} without ground truth)" \
            if m.get("excluded_no_ground_truth") else str(m["items"])
        lines.append(f"| {task} | {n_items} | {m['samples']} | {100 * m['accuracy']:.2f} | {ks} | {m['unparsable']} |")
    extra = results.get("benchmark_metrics") or {}
    if extra:
        lines += ["", "| metric | value |", "|---|---|"]
        for k, v in extra.items():
            if isinstance(v, dict):
                for kk, vv in v.items():
                    if isinstance(vv, float):  # rates print as percentages, other floats as they are
                        vv = f"{100 * vv:.2f}" if kk in _RATE_KEYS else f"{vv:.2f}" if kk == "ic_score" else f"{vv:.4g}"
                    lines.append(f"| {k}.{kk} | {vv} |")
            else:
                lines.append(f"| {k} | {v} |")
    return "\n".join(lines)


def _scoring_order(bench: Any, requested: str | None) -> tuple[str, ...]:
    """The benchmark's scoring rules, the one to report first (`requested` or its default);
    () for benchmarks with a single rule, where asking for one is an error."""
    known = tuple(getattr(bench, "scorings", ()))
    if requested is None:
        return known
    if not known:
        raise ValueError(f"scoring {requested!r}: benchmark {bench.name!r} has a single grading rule "
                         f"(docs/EVAL.md); --scoring applies to cruxeval-o, cruxeval-i and lcb-exec")
    if requested not in known:
        raise ValueError(f"scoring must be one of {known}, got {requested!r}")
    return (requested, *[k for k in known if k != requested])


def run(cfg: EvalConfig, print_fn=print) -> dict[str, Any]:
    """Runs one evaluation; returns the results dict (also written to OUT/results.json)."""
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    bench = registry.make(cfg.benchmark)
    if hasattr(bench, "state_semantics"):
        bench.state_semantics = cfg.reval_state
    scorings = _scoring_order(bench, cfg.scoring)
    if scorings:
        bench.scoring = scorings[0]
    report: LoadReport = bench.load(Path(cfg.data), cfg.style, cfg.limit)
    items = report.items
    if report.bad_lines or report.skipped:
        print_fn(f"[eval] skipped while loading: {report.bad_lines} bad lines, {report.skipped}")
    if cfg.write_prompts:
        write_jsonl(Path(cfg.write_prompts), [it.prompt_record() for it in items])
        print_fn(f"[eval] wrote {len(items)} prompts to {cfg.write_prompts}")
        if not (cfg.responses or cfg.model or cfg.oracle):
            return {"benchmark": cfg.benchmark, "prompts": len(items)}
    ctx = GradeContext(timeout_s=cfg.timeout_s, workers=cfg.workers)
    rstats = ResponseStats()
    gen_s = 0.0
    try:
        if cfg.responses:
            responses, rstats = read_responses(Path(cfg.responses), items)
        elif cfg.model:
            from execverify_jax.eval import generation

            g0 = time.perf_counter()
            responses = generation.generate(items, cfg.model, cfg.tokenizer, cfg.generation)
            gen_s = time.perf_counter() - g0
        else:
            responses = [[r or ""] for r in bench.oracle(items, ctx)]
        g1 = time.perf_counter()
        verdicts = bench.grade(items, responses, ctx)
        by_scoring = {bench.scoring: verdicts} if scorings else {}
        for other in scorings[1:] if scorings else ():  # every other rule too, for results.json
            bench.scoring = other
            by_scoring[other] = bench.grade(items, responses, ctx)
        if scorings:
            bench.scoring = scorings[0]
        grade_s = time.perf_counter() - g1
    finally:
        ctx.close()
    results: dict[str, Any] = {
        "benchmark": cfg.benchmark,
        "model": cfg.model or (f"responses:{cfg.responses}" if cfg.responses else "oracle"),
        "config": {k: v for k, v in asdict(cfg).items()},
        "started": started.isoformat(), "finished": dt.datetime.now(dt.timezone.utc).isoformat(),
        "seconds": {"total": time.perf_counter() - t0, "generation": gen_s, "grading": grade_s},
        "data": {"items": len(items), "bad_lines": report.bad_lines, "skipped": report.skipped,
                 "skip_examples": report.examples},
        "responses": asdict(rstats),
        "tasks": task_metrics(items, verdicts),
        "benchmark_metrics": bench.summarize(items, verdicts),
    }
    if scorings:
        # Both numbers: `official` is comparable with published results, `strict` is the
        # training reward's literal-only rule.
        results["scoring"] = {"used": scorings[0], "accuracy": {
            name: {task: m["accuracy"] for task, m in task_metrics(items, vs).items()}
            for name, vs in by_scoring.items()}}
    if cfg.out:
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        records.write_json(out / "results.json", results)
        rows = []
        for i, (it, resps, vs) in enumerate(zip(items, responses, verdicts)):
            for k, (r, v) in enumerate(zip(resps, vs)):
                row = {"id": it.id, "task": it.task, "sample": k, "prompt": it.messages,
                       "response": r, **v.to_dict()}
                if len(by_scoring) > 1:
                    row["correct_by_scoring"] = {name: alt[i][k].correct for name, alt in by_scoring.items()}
                rows.append(row)
        write_jsonl(out / "samples.jsonl", rows)
    if rstats.bad_lines or rstats.unknown_ids or rstats.missing_items:
        print_fn(f"[eval] responses: {rstats.bad_lines} bad lines, {rstats.unknown_ids} unknown ids, "
                 f"{rstats.missing_items} items without a response (scored as empty)")
    print_fn(markdown_table(results))
    if scorings:
        print_fn("[eval] accuracy by scoring (official = the official harness's rule, strict = the training "
                 "reward's): " + "; ".join(f"{name} " + ", ".join(f"{t} {100 * a:.2f}" for t, a in acc.items())
                                           for name, acc in results["scoring"]["accuracy"].items()))
    return results
