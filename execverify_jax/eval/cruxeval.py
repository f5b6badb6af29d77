"""CRUXEval-O / CRUXEval-I and LiveCodeBench code execution (output prediction).

Prompt styles:
- `execverify`: the paper's fill-the-assertion prompt (`data/prompts.cruxeval_messages`,
  reference section 7.1) with `<reasoning>`/`<answer>` tags;
- `official`: CRUXEval's direct prompts (`make_direct_output_prompt` /
  `make_direct_input_prompt` of github.com/facebookresearch/cruxeval `prompts.py`): two
  few-shot examples, `[PYTHON]`/`[ANSWER]` tags, a completion that continues after `[ANSWER]`.
  LiveCodeBench's execution scenario uses the same CRUXEval-derived prompt, with the
  problem's function name in the final assertion.

Grading goes through the hardened rewards whatever the style (a response in either format
parses under either prompt): output prediction takes the literal the model asserts and scores
`assert f(<ground-truth input>) == <literal>` with the io rules of `rewards/whitebox.py`
(Python `==` on literal values, no execution of the model's text); input prediction takes the
model's literal arguments and runs the *ground-truth* function on them in the sandbox
(`rewards/targets.run_ground_truth`), comparing with the ground-truth output in the parent.
That is `--scoring strict` (the training reward's rule).

`--scoring official` (the default) reproduces the official harnesses, which *run* the answer
text: CRUXEval's `evaluation/utils_general.evaluate_score` execs `code + "\nassert <output> ==
<answer>"` (output: the text after `==`; input: the model's `f(...)` call), and the paper's
`crux_lcb/eval.py` runs the ground-truth `f` on the model's argument text. Here the model's
expression (output) or call (input, ground-truth `f` on the model's argument expressions) is
evaluated in the sandbox after the prelude and the ground-truth program, its value comes back
through `safe_codec`, and the parent compares `<ground-truth output> == value` (Python `==`):
the expected value never enters the sandbox. What the harness rejects is rejected the same way
(an output answer containing the ground-truth call `f(<input>)`; an input answer without a call
of `f`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from execverify_jax.data import prompts, safe_codec
from execverify_jax.eval import extract
from execverify_jax.eval.base import GradeContext
from execverify_jax.eval.items import EvalItem, LoadReport, Verdict, read_jsonl_dicts
from execverify_jax.rewards import parse
from execverify_jax.rewards.scorer import Scorer
from execverify_jax.rewards.config import RewardConfig
from execverify_jax.rewards.whitebox import python_equal

# The paper's harness runs this before the ground-truth code (evaluation/crux_lcb/eval.py).
PRELUDE = "from typing import *\nfrom itertools import *\nfrom collections import *\nimport bisect"
_CFG = RewardConfig()
SCORINGS = ("official", "strict")
RUN_CALL = "execverify_jax.data.sandbox.calls:run_call"

OFFICIAL_OUTPUT = (
    "You are given a Python function and an assertion containing an input to the function. Complete the "
    "assertion with a literal (no unsimplified expressions, no function calls) containing the output when "
    "executing the provided code on the given input, even if the function is incorrect or incomplete. Do NOT "
    "output any extra information. Provide the full assertion with the correct output in [ANSWER] and [/ANSWER] "
    "tags, following the examples.\n\n"
    "[PYTHON]\ndef f(n):\n    return n\nassert f(17) == ??\n[/PYTHON]\n[ANSWER]\nassert f(17) == 17\n[/ANSWER]\n\n"
    "[PYTHON]\ndef f(s):\n    return s + \"a\"\nassert f(\"x9j\") == ??\n[/PYTHON]\n[ANSWER]\n"
    "assert f(\"x9j\") == \"x9ja\"\n[/ANSWER]\n\n"
    "[PYTHON]\n{code}\nassert {entry}({input}) == ??\n[/PYTHON]\n[ANSWER]\n"
)
OFFICIAL_INPUT = (
    "You will be given a function f and an output in the form f(??) == output. Find any input such that "
    "executing f on the input leads to the given output. There may be multiple answers, but you should only "
    "output one. In [ANSWER] and [/ANSWER] tags, complete the assertion with one such input that will produce "
    "the output when executing the function.\n\n"
    "[PYTHON]\ndef f(my_list):\n    count = 0\n    for i in my_list:\n        if len(i) % 2 == 0:\n"
    "            count += 1\n    return count\nassert f(??) == 3\n[/PYTHON]\n[ANSWER]\n"
    "assert f([\"mq\", \"px\", \"zy\"]) == 3\n[/ANSWER]\n\n"
    "[PYTHON]\ndef f(s1, s2):\n    return s1 + s2\nassert f(??) == \"banana\"\n[/PYTHON]\n[ANSWER]\n"
    "assert f(\"ba\", \"nana\") == \"banana\"\n[/ANSWER]\n\n"
    "[PYTHON]\n{code}\nassert {entry}(??) == {output}\n[/PYTHON]\n[ANSWER]\n"
)




def lcb_args(entry: str, text: str) -> str:
    """LiveCodeBench inputs are calls (`name(a = 1)`): the argument list without name and parens."""
    text = text.strip()
    if text.startswith(entry):
        text = text[len(entry):].strip()
        if text.startswith("(") and text.endswith(")"):
            text = text[1:-1]
    return text


class CruxEval:
    """CRUXEval-O/-I (`mode` output/input; `source` cruxeval or lcb)."""

    scorings = SCORINGS  # the runner grades with each (the first is the default)

    def __init__(self, name: str, mode: str, source: str = "cruxeval") -> None:
        self.name, self.mode, self.source = name, mode, source
        self.scoring = "official"

    def load(self, data: Path, style: str, limit: int | None) -> LoadReport:
        """Items from a CRUXEval (`code, input, output, id`) or LCB execution-v2 JSONL."""
        report = LoadReport(items=[])
        for rec in read_jsonl_dicts(data, report):
            if limit is not None and len(report.items) >= limit:
                break
            item = self._item(rec, style, report)
            if item is not None:
                report.items.append(item)
        return report

    def _item(self, rec: dict, style: str, report: LoadReport) -> EvalItem | None:
        code, inp, out = rec.get("code"), rec.get("input"), rec.get("output")
        if not all(isinstance(x, str) for x in (code, inp, out)):
            report.skip("missing_code_input_output", str(rec)[:120])
            return None
        if self.source == "lcb":
            entry = rec.get("function_name")
            if not isinstance(entry, str) or not entry.isidentifier():
                report.skip("bad_function_name", str(rec)[:120])
                return None
            args = lcb_args(entry, inp)
            rid = str(rec.get("id") or rec.get("question_id"))
        else:
            entry, args, rid = "f", inp, str(rec.get("id"))
        try:
            value = parse.literal_value(out, _CFG)
        except parse.LiteralError:
            report.skip("output_not_literal", f"{rid}: {out[:80]}")
            return None
        try:
            parse.parse_expr(f"{entry}({args})", _CFG)
        except parse.LiteralError:
            report.skip("input_not_python", f"{rid}: {args[:80]}")
            return None
        if rid in ("None", ""):
            report.skip("missing_id", str(rec)[:120])
            return None
        meta = {"code": code, "entry": entry, "args": args, "output": out,
                "output_enc": safe_codec.to_jsonable(value)}
        if style == "official":
            template = OFFICIAL_OUTPUT if self.mode == "output" else OFFICIAL_INPUT
            text = template.format(code=code, entry=entry, input=args, output=out)
            return EvalItem(rid, [{"role": "user", "content": text}], self.name, meta, raw_prompt=text)
        if self.mode == "output":
            messages = prompts.cruxeval_messages(code, entry, args=args)
        else:
            messages = prompts.cruxeval_messages(code, entry, output=out)
        return EvalItem(rid, messages, self.name, meta)

    def _question(self, it: EvalItem) -> dict:
        m = it.meta
        layout = {"layout": "io_mixed" if self.mode == "output" else "oi",
                  "program": {"code": m["code"], "entry": m["entry"], "args": m["args"]},
                  "output": m["output_enc"]}
        if self.mode == "output":
            layout["subquestions"] = []
        return layout

    def grade(self, items: list[EvalItem], responses: list[list[str]], ctx: GradeContext) -> list[list[Verdict]]:
        """Grades with `self.scoring`: official (harness semantics) or strict (the rewards)."""
        if self.scoring == "official":
            return self._grade_official(items, responses, ctx)
        return self._grade_strict(items, responses, ctx)

    def _answer(self, it: EvalItem, resp: str, cfg: RewardConfig) -> tuple[str | None, str]:
        """(what gets graded, reason): strict, the literal output / literal argument list;
        official, the output expression / the whole call `entry(...)`."""
        span, _ = extract.answer_span(resp, cfg)
        if span is None:
            return None, "no_answer"
        entry = it.meta["entry"]
        if self.scoring == "official":
            return (extract.official_output_expr(span, entry, it.meta["args"], cfg) if self.mode == "output"
                    else extract.official_call(span, entry, cfg))
        return (extract.predicted_output(span, entry, cfg) if self.mode == "output"
                else extract.predicted_call_args(span, entry, cfg))

    def _grade_official(self, items: list[EvalItem], responses: list[list[str]],
                        ctx: GradeContext) -> list[list[Verdict]]:
        """The model's expression (output) or call (input) is evaluated in the sandbox after the
        ground-truth program; the parent compares `<ground-truth output> == value`. A literal
        output answer is compared in the parent directly (evaluating it would give the same value)."""
        cfg = ctx.reward_config(prelude=PRELUDE)
        out: list[list[Verdict | None]] = []
        pending: list[tuple[int, int, str, Any]] = []
        for i, (it, resps) in enumerate(zip(items, responses)):
            row: list[Verdict | None] = []
            expected = safe_codec.from_jsonable(it.meta["output_enc"])
            for j, resp in enumerate(resps):
                expr, reason = self._answer(it, resp, cfg)
                if expr is None:
                    row.append(Verdict(False, None, reason))
                    continue
                if self.mode == "output":
                    try:
                        value = parse.literal_value(expr, cfg)
                    except parse.LiteralError:
                        pass  # not a literal: evaluate it below
                    else:
                        row.append(_official_verdict(expected, value, expr))
                        continue
                row.append(None)
                fut = ctx.pool().submit(RUN_CALL, {"code": PRELUDE + "\n" + it.meta["code"], "call": expr},
                                        ctx.limits())
                pending.append((i, j, expr, fut))
            out.append(row)
        for i, j, expr, fut in pending:
            o = fut.result()
            status = getattr(o.status, "value", o.status)
            if status != "ok":
                out[i][j] = Verdict(False, expr, str(status), 0.0,
                                    {"status": str(status), "error_type": getattr(o, "error_type", None)})
            else:
                out[i][j] = _official_verdict(safe_codec.from_jsonable(items[i].meta["output_enc"]), o.value, expr)
        return out  # type: ignore[return-value]

    def _grade_strict(self, items: list[EvalItem], responses: list[list[str]],
                      ctx: GradeContext) -> list[list[Verdict]]:
        """Extracts each answer (either style), then scores a canonical assertion with the rewards."""
        cfg = ctx.reward_config(prelude=PRELUDE)
        out: list[list[Verdict | None]] = []
        questions, canon, where = [], [], []
        for i, (it, resps) in enumerate(zip(items, responses)):
            row: list[Verdict | None] = []
            for j, resp in enumerate(resps):
                pred, reason = self._answer(it, resp, cfg)
                if pred is None:
                    row.append(Verdict(False, None, reason))
                    continue
                line = (f"assert {it.meta['entry']}({it.meta['args']}) == {pred}" if self.mode == "output"
                        else f"assert {it.meta['entry']}({pred}) == {it.meta['output']}")
                row.append(None)
                questions.append(self._question(it))
                canon.append(extract.canonical_response(line))
                where.append((i, j, pred))
            out.append(row)
        if questions:
            scorer = Scorer(ctx.pool() if self.mode == "input" else None, cfg)
            results = scorer.score_batch(questions, canon)
            for (i, j, pred), res in zip(where, results):
                ok = bool(res.details.get("io"))
                out[i][j] = Verdict(ok, pred, "" if ok else (res.reason or "wrong"), res.reward,
                                    {k: v for k, v in res.details.items() if k in ("status", "error_type")})
        return out  # type: ignore[return-value]

    def summarize(self, items: list[EvalItem], verdicts: list[list[Verdict]]) -> dict[str, Any]:
        """Nothing beyond the runner's accuracy / pass@k."""
        return {}

    def oracle(self, items: list[EvalItem], ctx: GradeContext) -> list[str | None]:
        """Correct responses: the ground-truth output; for input prediction the dataset's own
        argument text under official scoring (the harness runs it), else the ground-truth
        arguments as literals (evaluated in the sandbox when the dataset writes them as
        expressions; None when a value has no literal form, e.g. a lambda)."""
        if self.mode == "output" or self.scoring == "official":
            return [extract.canonical_response(f"assert {it.meta['entry']}({it.meta['args']}) == {it.meta['output']}")
                    for it in items]
        out: list[str | None] = []
        pending = []
        for i, it in enumerate(items):
            try:
                call = parse.parse_expr(f"{it.meta['entry']}({it.meta['args']})", _CFG)
                parse.call_literal_args(call, _CFG)  # type: ignore[arg-type]
                out.append(extract.canonical_response(f"assert {it.meta['entry']}({it.meta['args']}) == {it.meta['output']}"))
            except parse.LiteralError:
                out.append(None)
                pending.append(i)
        if pending:
            pool = ctx.pool()
            futs = [pool.submit("execverify_jax.data.sandbox.calls:run_call",
                                {"code": PRELUDE + "\n" + items[i].meta["code"],
                                 "call": f"(lambda *a, **k: (a, k))({items[i].meta['args']})"}, ctx.limits())
                    for i in pending]
            for i, fut in zip(pending, futs):
                o = fut.result()
                if getattr(o.status, "value", o.status) != "ok" or not safe_codec.is_literal(o.value):
                    continue
                a, k = o.value
                args = ", ".join([repr(x) for x in a] + [f"{n}={v!r}" for n, v in k.items()])
                out[i] = extract.canonical_response(f"assert {items[i].meta['entry']}({args}) == {items[i].meta['output']}")
        return out


def _official_verdict(expected: Any, value: Any, expr: str) -> Verdict:
    """`assert <expected> == <value>` as the harness runs it (Python `==`; opaque values, i.e.
    objects that crossed the sandbox boundary without a literal form, equal nothing)."""
    ok = python_equal(expected, value)
    return Verdict(ok, expr, "" if ok else "wrong", 1.0 if ok else 0.0)
