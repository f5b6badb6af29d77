"""Held-out questions of our own synthesis (`execverify synth` output), scored with the stage-I
rewards, with metrics per question kind and per program level.

`--data` is a synth output folder (its `questions.jsonl`, else the ArrayRecord files listed in
`manifest.json`; program levels come from the programs of the same folder) or one question file
(JSONL or ArrayRecord). When the records carry a `split`, only `heldout` ones are used (if any).
"""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any, Iterator

from execverify_jax.data import records, safe_codec
from execverify_jax.eval.base import GradeContext
from execverify_jax.eval.items import EvalItem, LoadReport, Verdict
from execverify_jax.rewards.scorer import Scorer, validate
from execverify_jax.rewards.whitebox import RecordError


def _files(data: Path, kind: str) -> list[Path]:
    """The record files of `kind` (program | question) in a synth output folder (or the file
    itself): the JSONL export when present, else the ArrayRecord shards listed in `manifest.json`
    (records carry their split; `load` keeps the held-out ones)."""
    if data.is_file():
        return [data] if kind == "question" else []
    jsonl = data / f"{kind}s.jsonl"
    if jsonl.is_file():
        return [jsonl]
    manifest = data / "manifest.json"
    if manifest.is_file():
        files = json.loads(manifest.read_text()).get("files", {})
        by_split = files.get("arrayrecord", {}).get(f"{kind}s", {}) if isinstance(files, dict) else {}
        if isinstance(by_split, dict) and by_split:
            return [data / f for fs in by_split.values() for f in fs]
    return sorted(data.glob(f"{kind}s-*.arrayrecord"))


def _read(paths: list[Path], report: LoadReport) -> Iterator[dict]:
    errors: collections.Counter = collections.Counter()
    for p in paths:
        yield from records.read_records(p, None, errors)
    report.bad_lines += sum(errors.values())


class Synthetic:
    """Stage-I questions (io_mixed / oi) from our synthesis."""

    name = "synthetic"

    def load(self, data: Path, style: str, limit: int | None) -> LoadReport:
        """Question records (held-out split when present), with their program's level."""
        report = LoadReport(items=[])
        levels: dict[str, Any] = {}
        if data.is_dir():
            for prog in _read(_files(data, "program"), report):  # levels live in the program records
                if isinstance(prog, dict) and "id" in prog:
                    levels[str(prog["id"])] = prog.get("level")
        qs = [q for q in _read(_files(data, "question"), report) if isinstance(q, dict)]
        if any(q.get("split") == "heldout" for q in qs):
            qs = [q for q in qs if q.get("split") == "heldout"]
        elif any("split" in q for q in qs):
            report.examples.append("no held-out questions in the data: every split is evaluated")
        for q in qs:
            if limit is not None and len(report.items) >= limit:
                break
            try:
                answer = validate(q)
            except RecordError as exc:
                report.skip("bad_question", str(exc))
                continue
            msgs = q.get("messages")
            if not isinstance(msgs, list) or not msgs or answer["layout"] == "codegen":
                report.skip("no_messages" if answer["layout"] != "codegen" else "codegen_question", str(q.get("id")))
                continue
            level = q.get("level", levels.get(str(q.get("program_id"))))
            report.items.append(EvalItem(str(q.get("id")), msgs, answer["layout"],
                                         {"answer": answer, "level": level}))
        return report

    def grade(self, items: list[EvalItem], responses: list[list[str]], ctx: GradeContext) -> list[list[Verdict]]:
        """Stage-I rewards; correct = fully correct (no failure reason)."""
        needs_pool = any(it.meta["answer"]["layout"] == "oi" for it in items)
        scorer = Scorer(ctx.pool() if needs_pool else None, ctx.reward_config())
        qs, rs, where = [], [], []
        for i, (it, resps) in enumerate(zip(items, responses)):
            for j, r in enumerate(resps):
                qs.append(it.meta["answer"])
                rs.append(r)
                where.append((i, j))
        results = scorer.score_batch(qs, rs)
        out: list[list[Verdict]] = [[None] * len(r) for r in responses]  # type: ignore[list-item]
        for (i, j), res in zip(where, results):
            ok = res.reason == ""
            parsed = None if res.reason in ("no_answer", "empty_answer") else "answer"
            keep = {k: res.details[k] for k in ("io", "wb_acc") if k in res.details}
            out[i][j] = Verdict(ok, parsed, res.reason, res.reward, keep)
        return out

    def summarize(self, items: list[EvalItem], verdicts: list[list[Verdict]]) -> dict[str, Any]:
        """Accuracy, io accuracy, mean white-box accuracy and mean reward per kind and per level."""
        groups: dict[str, list[Verdict]] = collections.defaultdict(list)
        for it, vs in zip(items, verdicts):
            if not vs:
                continue
            groups[f"kind={it.task}"].append(vs[0])
            groups[f"kind={it.task},level={it.meta.get('level')}"].append(vs[0])
        out = {}
        for key, vs in sorted(groups.items()):
            m = {"count": len(vs), "accuracy": sum(v.correct for v in vs) / len(vs),
                 "io_accuracy": sum(bool(v.details.get("io")) for v in vs) / len(vs),
                 "mean_reward": sum(v.score for v in vs) / len(vs)}
            wb = [v.details["wb_acc"] for v in vs if "wb_acc" in v.details]
            if wb:
                m["mean_wb_acc"] = sum(wb) / len(wb)
            out[key] = m
        return out

    def oracle(self, items: list[EvalItem], ctx: GradeContext) -> list[str | None]:
        """Responses built from each record's structured answer."""
        return [oracle_response(it.meta["answer"]) for it in items]


def oracle_response(answer: dict) -> str | None:
    """A fully correct response for an io_mixed / oi answer record (None if not expressible)."""
    prog = answer["program"]
    out_val = safe_codec.from_jsonable(answer["output"])
    if not safe_codec.is_literal(out_val):
        return None
    lines = [f"assert {prog['entry']}({prog['args']}) == {out_val!r}"]
    if answer["layout"] == "oi":
        return f"<answer>\n```python\n{lines[0]}\n```\n</answer>"
    for sub in answer.get("subquestions", []):
        if sub["kind"] == "next_statement":
            lines.append(sub["accept"][0])
        elif sub["kind"] == "coverage":
            lines.append("YES" if sub.get("executed") else "NO")
        elif sub.get("nil"):
            lines.append("Nil")
        else:
            acc = sub["accept"][0]
            lines.append(f"{safe_codec.from_jsonable(acc['value'])!r}; {acc['type']}")
    return "<answer>\n" + "\n".join(lines) + "\n</answer>"
