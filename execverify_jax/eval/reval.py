"""REval (DREval): coverage, path, state, output and the incremental-consistency (IC) score.

Data: `DREval_data.jsonl` (programs) and `DREval_tasks.jsonl` (questions), schema in the
reference section 7.3. Ground truth is not stored: it is recomputed here, per (program, input),
by the project tracer in the sandbox pool (`targets.reval_ground_truth`; state values with
REval's next-state rule by default, or the tracer's same-frame rule). HumanEval-derived items
trace `entry(*input)`; ClassEval-derived items trace the class code while the item's unittest
method runs after `setUp` (the traced lines are those of the class code, as in REval).

Grading follows REval's definitions (docs/EVAL.md lists where and why we differ):
- coverage: predicted YES iff "YES" is in the uppercased answer; accuracy, precision, recall, F1;
- path: "-1" -> -1, empty -> -2, else every line whose stripped text equals the answer;
  correct iff any of them is in the ground-truth set of next lines;
- state: `value; type` split at the last `;` with REval's type-name mapping; the value is a
  literal (parsed, never evaluated); floats within 1e-6; Nil when the line is not executed;
- output: the answer must be the test snippet with every `??` replaced by a literal (compared as
  ASTs); the filled snippet then runs in the sandbox (class items inside their TestCase);
- IC: REval's +1 / +0.5 / +0.25 / +0.125 chain per (program, input, question).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

from tqdm import tqdm

from execverify_jax.data import safe_codec
from execverify_jax.eval import extract, metrics, reval_prompts
from execverify_jax.eval.base import GradeContext
from execverify_jax.eval.items import EvalItem, LoadReport, Verdict, read_jsonl_dicts
from execverify_jax.eval.reval_grading import (_CFG, _HOLE, _oracle_fill, _oracle_state, _wrap, fill_template,
                                             grade_coverage, grade_path, grade_state, record_holes)
from execverify_jax.eval.sandboxed import REVAL_TARGET, SNIPPET_TARGET

TASKS = ("coverage", "path", "state", "output")
# `reval`: REval's own rule (the value is read in the next state of the global state list);
# `frame`: the tracer's rule (the next event in the same frame). See docs/EVAL.md.
STATE_SEMANTICS = ("reval", "frame")
DATA_FILE, TASKS_FILE = "DREval_data.jsonl", "DREval_tasks.jsonl"


# --------------------------------------------------------------------------------------------
# Data


def data_paths(data: Path) -> tuple[Path, Path]:
    """(programs file, tasks file) from the folder holding both (or one of the two files)."""
    folder = data if data.is_dir() else data.parent
    return folder / DATA_FILE, folder / TASKS_FILE


def class_tests(program: dict) -> list[dict] | None:
    """The ClassEval test classes of a program in definition order, REval-style: classes named
    `{entry}Test...` deriving from TestCase, each with its first `test*` method and its `setUp`
    body. None when the test code does not parse."""
    try:
        tree = ast.parse(program["test"])
    except SyntaxError:
        return None
    lines = program["test"].split("\n")
    out = []
    for node in tree.body:
        if not isinstance(node, ast.ClassDef) or not re.match(f"{re.escape(program['entry_point'])}Test", node.name):
            continue
        bases = [ast.unparse(b) for b in node.bases]
        if not any(b.endswith("TestCase") for b in bases):
            continue
        methods = [n for n in node.body if isinstance(n, ast.FunctionDef)]
        tests = [n for n in methods if n.name.startswith("test")]
        if not tests:
            continue
        setup = next((n for n in methods if n.name == "setUp"), None)
        setup_body = lines[setup.lineno:setup.end_lineno] if setup is not None else []
        out.append({"test_class": node.name, "test_method": tests[0].name, "setup": setup_body})
    return out


def invocation(program: dict, input_idx: int, tests: list[dict] | None) -> tuple[str, str]:
    """(invocation text, its short name) as REval shows them under the code."""
    raw = program["inputs"][input_idx]
    if not program.get("test"):
        call = f"{program['entry_point']}{raw[:-2]})" if raw.endswith(",)") else f"{program['entry_point']}{raw}"
        return call, call
    return _setup_comment(tests[input_idx]) + "\n" + raw.rstrip(), "the above test code"  # type: ignore[index]


def _setup_comment(test: dict) -> str:
    # REval prints the setUp body as comments under "# setup code executed previously".
    if not test["setup"]:
        return ""
    return "\n# setup code executed previously\n# " + "\n# ".join(test["setup"])


class REval:
    """The REval benchmark; `tasks` selects coverage/path/state/output (all four for IC)."""

    def __init__(self, tasks: tuple[str, ...], name: str, state_semantics: str = "reval") -> None:
        if state_semantics not in STATE_SEMANTICS:
            raise ValueError(f"state_semantics must be one of {STATE_SEMANTICS}, got {state_semantics!r}")
        self.tasks = tasks
        self.name = name
        self.state_semantics = state_semantics
        self.programs: dict[int, dict] = {}
        self.tests: dict[int, list[dict] | None] = {}
        self._gt: dict[tuple[int, int], dict] = {}
        self._questions: dict[tuple[int, int], list] = {}

    # ---------------------------------------------------------------------------- loading
    def load(self, data: Path, style: str, limit: int | None) -> LoadReport:
        """Items of the selected tasks; `limit` caps the number of (program, input) pairs."""
        report = LoadReport(items=[])
        prog_path, task_path = data_paths(data)
        for p in (prog_path, task_path):
            if not p.is_file():
                raise FileNotFoundError(f"REval needs {DATA_FILE} and {TASKS_FILE} in one folder; missing {p}")
        for rec in read_jsonl_dicts(prog_path, report):
            tid = rec.get("task_id")
            if not (isinstance(tid, str) and tid.startswith("DREval/") and isinstance(rec.get("code"), str)
                    and isinstance(rec.get("inputs"), list) and isinstance(rec.get("entry_point"), str)):
                report.skip("bad_program", str(rec)[:120])
                continue
            idx = int(tid.split("/")[1])
            self.programs[idx] = rec
            self.tests[idx] = class_tests(rec) if rec.get("test") else None
        pairs = 0
        for rec in read_jsonl_dicts(task_path, report):
            idx = rec.get("idx")
            prog = self.programs.get(idx) if isinstance(idx, int) else None
            if prog is None or not isinstance(rec.get("tasks"), list):
                report.skip("task_without_program", str(rec)[:120])
                continue
            for pair in rec["tasks"]:
                if limit is not None and pairs >= limit:
                    break
                made = self._pair_items(idx, prog, pair, style, report)
                if made:
                    pairs += 1
                    report.items.extend(made)
        return report

    def _pair_items(self, idx: int, prog: dict, pair: Any, style: str, report: LoadReport) -> list[EvalItem]:
        try:
            k = int(pair["input_idx"])
            questions = [(int(q["lineno"]), str(q["var"])) for q in pair["task"]]
            output_pred = str(pair["output_pred"])
            prog["inputs"][k]
        except (KeyError, TypeError, ValueError, IndexError):
            report.skip("bad_task_pair", str(pair)[:120])
            return []
        tests = self.tests.get(idx)
        if prog.get("test") and (tests is None or k >= len(tests)):
            report.skip("no_test_class", f"{prog['task_id']} input {k}")
            return []
        code = prog["code"]
        codelines = code.split("\n")
        inv, abbr = invocation(prog, k, tests)
        base = {"pid": idx, "input_idx": k}
        system = [{"role": "system", "content": reval_prompts.EXECVERIFY_SYSTEM}] if style == "execverify" else []
        items = []
        for q, (line, var) in enumerate(questions):
            if not 1 <= line <= len(codelines):
                report.skip("line_out_of_range", f"{prog['task_id']} line {line}")
                continue
            for task in ("coverage", "path", "state"):
                if task not in self.tasks:
                    continue
                shown = code if task != "path" else "".join(f"{i + 1}\t{c}\n" for i, c in enumerate(codelines))
                text = reval_prompts.render(style, task, code=shown, invocation=inv, invocation_abbr=abbr,
                                            line=line, codeline=codelines[line - 1], var=var)
                items.append(EvalItem(id=f"{prog['task_id']}:{k}:{q}:{task}", task=f"reval-{task}",
                                      messages=system + [{"role": "user", "content": text}],
                                      meta={**base, "q": q, "line": line, "var": var},
                                      raw_prompt=text if style == "official" else None))
        if "output" in self.tasks:
            if prog.get("test"):
                prelude = "\n# Test code starts here. Only write the completed test code in your answer.\n"
                out_inv = _setup_comment(tests[k]) + prelude + output_pred  # type: ignore[index]
            else:
                out_inv = "\n" + output_pred
            text = reval_prompts.render(style, "output", code=code, invocation=out_inv)
            items.append(EvalItem(id=f"{prog['task_id']}:{k}:output", task="reval-output",
                                  messages=system + [{"role": "user", "content": text}],
                                  meta={**base, "n_questions": len(questions), "template": output_pred},
                                  raw_prompt=text if style == "official" else None))
        return items

    # ---------------------------------------------------------------------------- ground truth
    def _payload(self, idx: int, k: int) -> dict:
        prog = self.programs[idx]
        payload: dict[str, Any] = {"code": prog["code"], "questions": self._questions.get((idx, k), []),
                                   "state_semantics": self.state_semantics}
        if prog.get("test"):
            t = self.tests[idx][k]  # type: ignore[index]
            payload.update(kind="class", test_code=prog["test"], test_class=t["test_class"],
                           test_method=t["test_method"])
        else:
            payload.update(kind="function", entry=prog["entry_point"], args=prog["inputs"][k])
        return payload

    def ground_truth(self, items: list[EvalItem], ctx: GradeContext) -> dict[tuple[int, int], dict]:
        """Traces every (program, input) pair the items need (cached); returns the GT records."""
        need: dict[tuple[int, int], dict[int, tuple[int, str]]] = {}
        for it in items:
            key = (it.meta["pid"], it.meta["input_idx"])
            qs = need.setdefault(key, {})
            if "q" in it.meta:
                qs[it.meta["q"]] = (it.meta["line"], it.meta["var"])
        todo = []
        for key, qs in need.items():
            if key in self._gt:
                continue
            n = max(qs) + 1 if qs else 0
            self._questions[key] = [list(qs.get(i, (1, "_"))) for i in range(n)]
            todo.append(key)
        if todo:
            pool = ctx.pool()
            limits = ctx.limits(ctx.trace_timeout_s, memory_mb=2048)
            payloads = [self._payload(*key) for key in todo]
            futures = [pool.submit(REVAL_TARGET, p, limits) for p in payloads]
            for key, fut in tqdm(list(zip(todo, futures)), desc="REval ground truth", unit="pair", leave=False):
                out = fut.result()
                status = getattr(out.status, "value", out.status)
                gt: dict = {"status": f"sandbox_{status}", "questions": []}
                if status == "ok" and isinstance(out.value, str):
                    try:
                        gt = json.loads(out.value)
                    except ValueError:
                        gt = {"status": "bad_json", "questions": []}
                elif out.error:
                    gt["error"] = f"{out.error_type}: {out.error}"[:300]
                self._gt[key] = gt
        return {key: self._gt[key] for key in need}

    # ---------------------------------------------------------------------------- grading
    def grade(self, items: list[EvalItem], responses: list[list[str]], ctx: GradeContext) -> list[list[Verdict]]:
        """Verdicts per response; output-task snippets run in the sandbox in one batch."""
        gts = self.ground_truth(items, ctx)
        out: list[list[Verdict]] = []
        snippet_jobs: list[tuple[int, int, dict]] = []
        for i, (it, resps) in enumerate(zip(items, responses)):
            gt = gts[(it.meta["pid"], it.meta["input_idx"])]
            row: list[Verdict] = []
            for j, resp in enumerate(resps):
                if gt.get("status") != "ok":
                    row.append(Verdict(False, None, "ground_truth_failed", 0.0, {"gt_status": gt.get("status")}))
                    continue
                task = it.task.split("-", 1)[1]
                if task == "output":
                    verdict, payload = self._grade_output(it, resp)
                    if payload is not None:
                        snippet_jobs.append((i, j, payload))
                    row.append(verdict)
                else:
                    qgt = gt["questions"][it.meta["q"]]
                    row.append({"coverage": grade_coverage, "path": self._grade_path,
                                "state": grade_state}[task](it, resp, qgt))  # type: ignore[operator]
            out.append(row)
        if snippet_jobs:
            pool = ctx.pool()
            futs = [pool.submit(SNIPPET_TARGET, p, ctx.limits()) for _, _, p in snippet_jobs]
            for (i, j, _), fut in zip(snippet_jobs, futs):
                o = fut.result()
                ok = getattr(o.status, "value", o.status) == "ok" and o.value is True
                v = out[i][j]
                reason = "" if ok else (o.error_type or str(getattr(o.status, "value", o.status)))
                out[i][j] = Verdict(ok, v.parsed, reason, 1.0 if ok else 0.0, v.details)
        return out

    def _grade_path(self, it: EvalItem, resp: str, qgt: dict) -> Verdict:
        codelines = self.programs[it.meta["pid"]]["code"].split("\n")
        return grade_path(resp, qgt, codelines)

    def _grade_output(self, it: EvalItem, resp: str) -> tuple[Verdict, dict | None]:
        span, _ = extract.answer_span(resp, _CFG)
        if span is None:
            return Verdict(False, None, "no_answer"), None
        filled, reason = fill_template(it.meta["template"], span)
        if filled is None:
            return Verdict(False, None, reason), None
        prog = self.programs[it.meta["pid"]]
        payload: dict[str, Any] = {"code": prog["code"], "snippet": filled}
        if prog.get("test"):
            t = self.tests[it.meta["pid"]][it.meta["input_idx"]]  # type: ignore[index]
            payload.update(kind="class", test_code=prog["test"], test_class=t["test_class"],
                           test_method=t["test_method"])
        else:
            payload["kind"] = "function"
        return Verdict(False, filled, "pending"), payload

    # ---------------------------------------------------------------------------- metrics
    def summarize(self, items: list[EvalItem], verdicts: list[list[Verdict]]) -> dict[str, Any]:
        """Per-task REval metrics (first sample of each item) and, with all four tasks, IC."""
        out: dict[str, Any] = {}
        by_task: dict[str, list[tuple[EvalItem, Verdict]]] = {}
        gt_failed = 0
        for it, vs in zip(items, verdicts):
            if not vs:
                continue
            if vs[0].reason == "ground_truth_failed":
                gt_failed += 1
                continue
            by_task.setdefault(it.task, []).append((it, vs[0]))
        if "reval-coverage" in by_task:
            rows = by_task["reval-coverage"]
            out["reval-coverage"] = metrics.binary_scores([v.details.get("pred", False) for _, v in rows],
                                                          [v.details.get("gold", False) for _, v in rows])
        for task in ("reval-path", "reval-state", "reval-output"):
            if task in by_task:
                out[task] = {"acc": metrics.accuracy(v.correct for _, v in by_task[task])}
        if all(f"reval-{t}" in by_task for t in TASKS):
            out["reval-ic"] = {"ic_score": self.ic(items, verdicts)}
        out["ground_truth_failed_items"] = gt_failed
        unans = sum(1 for it, vs in zip(items, verdicts) if vs and vs[0].details.get("unanswerable"))
        if unans:
            out["literal_unanswerable_items"] = unans
        return out

    @staticmethod
    def ic(items: list[EvalItem], verdicts: list[list[Verdict]]) -> float:
        """IC score over the (program, input, question) items that have all three question tasks;
        the output verdict of their (program, input) pair completes each row."""
        qv: dict[tuple, dict[str, bool]] = {}
        ov: dict[tuple, bool] = {}
        for it, vs in zip(items, verdicts):
            if not vs or vs[0].reason == "ground_truth_failed":
                continue
            key = (it.meta["pid"], it.meta["input_idx"])
            task = it.task.split("-", 1)[1]
            if task == "output":
                ov[key] = vs[0].correct
            else:
                qv.setdefault((*key, it.meta["q"]), {})[task] = vs[0].correct
        rows = [(d["coverage"], d["state"], d["path"], ov[k[:2]]) for k, d in qv.items()
                if len(d) == 3 and k[:2] in ov]
        return metrics.ic_score(rows)

    # ---------------------------------------------------------------------------- oracle
    def oracle(self, items: list[EvalItem], ctx: GradeContext) -> list[str | None]:
        """Correct responses from the ground truth (None where no literal answer exists)."""
        gts = self.ground_truth(items, ctx)
        out: list[str | None] = []
        fills: list[tuple[int, dict]] = []
        for i, it in enumerate(items):
            gt = gts[(it.meta["pid"], it.meta["input_idx"])]
            if gt.get("status") != "ok":
                out.append(None)
                continue
            task = it.task.split("-", 1)[1]
            if task == "coverage":
                out.append(_wrap("YES" if gt["questions"][it.meta["q"]]["covered"] else "NO"))
            elif task == "path":
                nxt = gt["questions"][it.meta["q"]]["next"][0]
                lines = self.programs[it.meta["pid"]]["code"].split("\n")
                out.append(_wrap("-1" if nxt == -1 else lines[nxt - 1].strip()))
            elif task == "state":
                out.append(_oracle_state(gt["questions"][it.meta["q"]]["state"]))
            else:
                out.append(None)
                job = self._oracle_output_job(it, gt)
                if job is not None and job["kind"] == "direct":
                    out[i] = _wrap(job["filled"])
                elif job is not None:
                    fills.append((i, job))
        if fills:
            pool = ctx.pool()
            futs = [pool.submit(SNIPPET_TARGET, job, ctx.limits()) for _, job in fills]
            for (i, job), fut in zip(fills, futs):
                o = fut.result()
                if getattr(o.status, "value", o.status) == "ok" and isinstance(o.value, dict):
                    out[i] = _oracle_fill(items[i].meta["template"], o.value)
        return out

    def _oracle_output_job(self, it: EvalItem, gt: dict) -> dict | None:
        prog = self.programs[it.meta["pid"]]
        template = it.meta["template"]
        if not prog.get("test"):
            ret = gt.get("return")
            if ret is None or not ret.get("literal"):
                return None
            value = safe_codec.from_jsonable(ret["value"])
            filled = _HOLE.sub(lambda m: repr(value), template, count=1)
            return {"kind": "direct", "filled": filled}
        # Class items: take the expression the template replaced by `??` from the original test
        # snippet and record its value while the snippet runs in its TestCase.
        source = prog["inputs"][it.meta["input_idx"]]
        probe = record_holes(template, source)
        if probe is None:
            return None
        t = self.tests[it.meta["pid"]][it.meta["input_idx"]]  # type: ignore[index]
        return {"kind": "class", "code": prog["code"], "test_code": prog["test"], "test_class": t["test_class"],
                "test_method": t["test_method"], "snippet": probe, "record": True}
