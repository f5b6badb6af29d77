"""White-box questions from a trace: prompt messages + structured ground truth (`answer`).

`make_questions(program, trace, cfg, rng)` turns one usable trace (docs/TRACE.md) into question
records `{id, program_id, kind, messages, answer}`, one per layout in `cfg.layouts` that the
program qualifies for. The `answer` schema is the one in docs/ARCHITECTURE.md; docs/QUESTIONS.md
gives every rule and every difference from the paper. In short:

- Occurrence `k` in a question counts executions of line n across the whole call f(args), over
  the frames of `def` functions (entry, helpers, recursion, generators), in execution order:
  "the k-th time line n is executed". The ground truth is taken from that execution's own frame.
  Lines whose executions nest (recursion inside the line) are ambiguous and never asked about.
  Lambda/comprehension/class-body frames are not asked about (their effect is part of the
  enclosing line's after-state) and do not count.
- Next-statement questions are asked where control flow is not sequential: branch and loop
  headers, jumps (return/break/continue/raise), and any step whose successor in its frame is not
  its static sequential successor (loop back edges, skipped else-branches, returns to a caller).
- Value/type questions are asked about variables a step changed (typed structural comparison),
  literal values only; `Nil` questions about unexecuted lines at `cfg.nil_fraction`.
"""

from __future__ import annotations

import ast
import hashlib
import io
import random
import tokenize
from dataclasses import dataclass, field
from typing import Any

from execverify_jax.config_loader import check_choice, check_int, check_range
from execverify_jax.data import prompts, records, safe_codec
from execverify_jax.data.trace.tracer import usable
from execverify_jax.data.trace.structure import BRANCH_KINDS, JUMP_KINDS, ProgramStructure, analyze

DEF_FRAME_KINDS = frozenset({"function", "generator"})
QUESTION_LAYOUTS = ("io_mixed", "oi")


@dataclass(frozen=True)
class QuestionConfig:
    """How many questions of each kind, and which layouts (see docs/QUESTIONS.md)."""

    layouts: tuple[str, ...] = ("io_mixed",)
    max_path: int = 5  # next-statement questions per io_mixed item
    max_state: int = 5  # value/type questions per io_mixed item (Nil ones included)
    nil_fraction: float = 0.2  # expected share of state questions about unexecuted lines (Nil)
    unreached_path_fraction: float = 0.1  # expected share of path questions about unexecuted lines (-1)
    coverage_questions: int = 0  # coverage questions per io_mixed item (0 = the paper's layout)
    strict_indent: bool = False  # next-statement answers must reproduce indentation exactly
    io_mixed_min_lines: int = 5  # io_mixed needs a loop or at least this many non-blank lines
    oi_max_output_chars: int = 150  # oi needs repr(output) at most this long (as the paper)
    max_answer_chars: int = 200  # skip state questions whose answer literal is longer than this
    allowed_kinds: tuple[str, ...] = field(default=("next_statement", "value_type", "coverage"))
    # "full" = the paper's io_mixed prompt; "compact" = the same questions and answer format with
    # one-line rules and no example (prompts.io_mixed_compact), for small policies on CPU.
    io_mixed_prompt: str = "full"

    def __post_init__(self) -> None:
        for name in ("max_path", "max_state", "coverage_questions", "io_mixed_min_lines",
                     "oi_max_output_chars", "max_answer_chars"):
            check_int(name, getattr(self, name), 0)
        for name in ("nil_fraction", "unreached_path_fraction"):
            check_range(name, getattr(self, name), 0.0, 1.0)
        for layout in self.layouts:
            check_choice("layouts", layout, QUESTION_LAYOUTS)
        check_choice("io_mixed_prompt", self.io_mixed_prompt, ("full", "compact"))
        for kind in self.allowed_kinds:
            check_choice("allowed_kinds", kind, ("next_statement", "value_type", "coverage"))


# ----------------------------------------------------------------------------- eligibility
def unusable_reason(trace: dict) -> str | None:
    """Why a trace cannot give questions (None when it can): status, truncation, non-literal output."""
    if not usable(trace):
        return f"trace_{trace.get('truncated_reason') or trace.get('status')}"
    ret = trace.get("return") or {}
    if not ret.get("literal"):
        return "non_literal_output"
    return None


def _has_loop(code: str) -> bool:
    loops = (ast.For, ast.AsyncFor, ast.While, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
    return any(isinstance(n, loops) for n in ast.walk(ast.parse(code)))


def io_mixed_eligible(code: str, cfg: QuestionConfig) -> bool:
    """The paper's rule with `ast` instead of substrings: a loop, or enough non-blank lines."""
    return _has_loop(code) or sum(1 for ln in code.split("\n") if ln.strip()) >= cfg.io_mixed_min_lines


# ----------------------------------------------------------------------------- candidates
@dataclass
class _Ctx:
    trace: dict
    info: ProgramStructure
    lines: list[str]
    run_k: list[int | None]  # per step: global occurrence over def frames (None: not asked about)
    nested: set[int]  # lines with an execution nested inside another one of the same line
    no_comment: dict[int, str]  # lines with a trailing comment -> the line without it

    def text(self, line: int) -> str:
        return self.lines[line - 1]

    def answers(self, line: int) -> list[str]:
        """Acceptable spellings of a line: verbatim, and without its trailing comment (the prompt
        asks for no comments)."""
        return [self.text(line)] + ([self.no_comment[line]] if line in self.no_comment else [])


def _comment_free(code: str) -> dict[int, str]:
    """Line -> the line without its trailing comment, for lines that have one (via tokenize)."""
    out: dict[int, str] = {}
    lines = code.split("\n")
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type == tokenize.COMMENT:
                row, col = tok.start
                text = lines[row - 1][:col].rstrip()
                if text.strip():
                    out[row] = text
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return out


def _context(trace: dict) -> _Ctx:
    frames, steps = trace["frames"], trace["steps"]
    counts: dict[int, int] = {}
    run_k: list[int | None] = []
    for s in steps:
        if frames[s["frame"]]["kind"] in DEF_FRAME_KINDS:
            counts[s["line"]] = counts.get(s["line"], 0) + 1
            run_k.append(counts[s["line"]])
        else:
            run_k.append(None)
    return _Ctx(trace, analyze(trace["code"]), trace["code"].split("\n"), run_k, _nested_lines(trace),
                _comment_free(trace["code"]))


def _nested_lines(trace: dict) -> set[int]:
    """Lines executed again (by recursion) while an earlier execution of them is still running.

    For those, "after line n has been executed for the k-th time" is ambiguous (the k-th to
    start is not the k-th to finish), so no question is asked about them.
    """
    frames, steps = trace["frames"], trace["steps"]
    nested = set()
    for s in steps:
        frame = frames[s["frame"]]
        hops = 0
        while frame["call_step"] is not None and hops < 10_000:
            caller = steps[frame["call_step"]]
            if caller["line"] == s["line"]:
                nested.add(s["line"])
                break
            frame = frames[caller["frame"]]
            hops += 1
    return nested


def _continuation(ctx: _Ctx, step: dict, depth: int = 0) -> list[str] | None:
    """Acceptable answers for "which line runs right after `step`" (None: not well defined)."""
    steps, frames = ctx.trace["steps"], ctx.trace["frames"]
    if depth > 50:
        return None
    if step["end"] == "next" and "yielded" not in step:
        return ctx.answers(steps[step["next"]]["line"])
    if step["end"] != "return":
        return None  # raised out of its frame, or open (suspended/truncated)
    frame = frames[step["frame"]]
    if frame["id"] == 0:
        return ["-1"]  # the call f(args) returns: the program ends
    if frame["kind"] == "generator" or frame["call_step"] is None:
        return None  # a finished generator returns to whoever called next(): not asked
    caller = steps[frame["call_step"]]
    # Returning to the caller: its calling line finishes, then its successor runs. Both readings
    # of "executed immediately after" are accepted.
    rest = _continuation(ctx, caller, depth + 1)
    if rest is None:
        return None
    accept = ctx.answers(caller["line"])
    return accept + [a for a in rest if a not in accept]


def _path_candidates(ctx: _Ctx) -> list[dict]:
    steps = ctx.trace["steps"]
    out = []
    for s, k in zip(steps, ctx.run_k):
        if k is None or s["line"] in ctx.nested:
            continue
        accept = _continuation(ctx, s)
        if accept is None:
            continue
        line = s["line"]
        kind = ctx.info.kind.get(line, "simple")
        if s["end"] == "next":
            nxt_line = steps[s["next"]]["line"]
            if nxt_line == line:
                continue  # a one-line loop re-running itself: the answer would be the question
            interesting = (kind in BRANCH_KINDS or kind in JUMP_KINDS
                           or ctx.info.seq_next.get(line) != nxt_line)
        else:
            interesting = True  # returns: to the caller, or the end of the program
        if interesting:
            out.append({"kind": "next_statement", "line": line, "occurrence": k, "accept": accept,
                        "frame": s["frame"], "frame_occurrence": s["k"]})
    return out


def _statement_lines(ctx: _Ctx) -> list[int]:
    """Statement-start lines inside function bodies (not nested def/class headers)."""
    return sorted(ln for ln, kind in ctx.info.kind.items()
                  if ln in ctx.info.in_function and kind not in ("def", "class"))


def _unexecuted(ctx: _Ctx) -> list[int]:
    counts = ctx.trace["line_counts"]
    return [ln for ln in _statement_lines(ctx) if counts[ln - 1] == 0]


def _unreached_path_candidates(ctx: _Ctx) -> list[dict]:
    return [{"kind": "next_statement", "line": ln, "occurrence": 1, "accept": ["-1"],
             "frame": None, "frame_occurrence": None}
            for ln in _unexecuted(ctx) if ctx.info.kind.get(ln) not in ("except",)]


def _state_candidates(ctx: _Ctx, cfg: QuestionConfig) -> list[dict]:
    out = []
    for s, k in zip(ctx.trace["steps"], ctx.run_k):
        if k is None or s["end"] not in ("next", "return") or s["line"] in ctx.nested:
            continue
        for var, rec in sorted(s["changed"].items()):
            if not rec["literal"]:
                continue  # iterators, functions, objects: no literal answer to check against
            if len(repr(safe_codec.from_jsonable(rec["value"]))) > cfg.max_answer_chars:
                continue
            out.append({"kind": "value_type", "line": s["line"], "occurrence": k, "var": var,
                        "nil": False, "accept": [{"value": rec["value"], "type": rec["type"]}],
                        "frame": s["frame"], "frame_occurrence": s["k"]})
    return out


def _nil_candidates(ctx: _Ctx) -> list[dict]:
    return [{"kind": "value_type", "line": ln, "occurrence": 1, "var": var, "nil": True,
             "accept": [], "frame": None, "frame_occurrence": None}
            for ln in _unexecuted(ctx) for var in ctx.info.binds.get(ln, [])]


def _coverage_candidates(ctx: _Ctx) -> tuple[list[dict], list[dict]]:
    counts = ctx.trace["line_counts"]
    lines = _statement_lines(ctx)
    ran = [{"kind": "coverage", "line": ln, "executed": True} for ln in lines if counts[ln - 1] > 0]
    not_ran = [{"kind": "coverage", "line": ln, "executed": False} for ln in lines if counts[ln - 1] == 0]
    return ran, not_ran


# ----------------------------------------------------------------------------- selection
def _stochastic_round(x: float, rng: random.Random) -> int:
    base = int(x)
    return base + (1 if rng.random() < x - base else 0)


def _sample(items: list[dict], n: int, rng: random.Random) -> list[dict]:
    n = max(0, min(n, len(items)))
    return rng.sample(items, n) if n else []


def _split(regular: list[dict], special: list[dict], total: int, fraction: float,
           rng: random.Random) -> list[dict]:
    """Up to `total` items, about `fraction` of them from `special` (unexecuted-line questions)."""
    n_special = min(len(special), _stochastic_round(fraction * total, rng))
    chosen = _sample(special, n_special, rng)
    chosen += _sample(regular, total - len(chosen), rng)
    rng.shuffle(chosen)
    return chosen


def select_subquestions(trace: dict, cfg: QuestionConfig, rng: random.Random) -> list[dict]:
    """The io_mixed subquestions in prompt order: next-statement, then value/type, then coverage."""
    ctx = _context(trace)
    chosen: list[dict] = []
    if "next_statement" in cfg.allowed_kinds:
        chosen += _split(_path_candidates(ctx), _unreached_path_candidates(ctx), cfg.max_path,
                         cfg.unreached_path_fraction, rng)
    if "value_type" in cfg.allowed_kinds:
        chosen += _split(_state_candidates(ctx, cfg), _nil_candidates(ctx), cfg.max_state,
                         cfg.nil_fraction, rng)
    if "coverage" in cfg.allowed_kinds and cfg.coverage_questions:
        ran, not_ran = _coverage_candidates(ctx)
        chosen += _split(ran, not_ran, cfg.coverage_questions, 0.5, rng)
    for q in chosen:
        if q["kind"] == "next_statement":
            q["strict_indent"] = cfg.strict_indent
    return chosen


def _question_text(q: dict, entry: str, args: str, lines: list[str]) -> str:
    text = lines[q["line"] - 1]
    if q["kind"] == "next_statement":
        return prompts.next_statement_question(entry, args, q["line"], text, q["occurrence"])
    if q["kind"] == "value_type":
        return prompts.value_type_question(entry, args, q["line"], text, q["var"], q["occurrence"])
    return prompts.coverage_question(entry, args, q["line"], text)


# ----------------------------------------------------------------------------- records
def _question_id(program_id: str, layout: str, args: str) -> str:
    digest = hashlib.sha1(args.encode("utf-8")).hexdigest()[:10]
    return f"{program_id}:{layout}:{digest}"


def make_questions(program: dict, trace: dict, cfg: QuestionConfig, rng: random.Random) -> list[dict]:
    """Question records for one (program, traced input); [] when `unusable_reason(trace)` is set.

    `program` is a program record (docs/ARCHITECTURE.md; only `id` is read, plus `code`, which
    must be the traced code). Deterministic given the rng state.
    """
    if unusable_reason(trace) is not None:
        return []
    code, entry, args = trace["code"], trace["entry"], trace["args"]
    if program.get("code", code) != code:
        raise ValueError(f"program {program.get('id')!r}: the trace is of different code")
    program_id = str(program.get("id", "program"))
    output_enc = trace["return"]["value"]
    prog = {"code": code, "entry": entry, "args": args}
    records = []
    for layout in cfg.layouts:
        if layout == "io_mixed":
            if not io_mixed_eligible(code, cfg):
                continue
            subs = select_subquestions(trace, cfg, rng)
            spec = prompts.PromptSpec(
                code=code, entry=entry, args=args,
                questions=tuple(_question_text(q, entry, args, trace["lines"]) for q in subs),
                kinds=frozenset({"next_statement", "value_type"} | {q["kind"] for q in subs}),
                strict_indent=cfg.strict_indent)
            answer = {"layout": "io_mixed", "program": prog, "output": output_enc, "subquestions": subs}
        else:  # oi
            output_repr = repr(safe_codec.from_jsonable(output_enc))
            if len(output_repr) > cfg.oi_max_output_chars:
                continue
            spec = prompts.PromptSpec(code=code, entry=entry, output=output_repr)
            answer = {"layout": "oi", "program": prog, "output": output_enc}
        records.append({"id": _question_id(program_id, layout, args), "program_id": program_id,
                        "kind": layout, "messages": prompts.render(_prompt_layout(layout, cfg), spec),
                        "answer": answer})
    return records


def _prompt_layout(layout: str, cfg: QuestionConfig) -> str:
    return "io_mixed_compact" if layout == "io_mixed" and cfg.io_mixed_prompt == "compact" else layout


def answer_lines(record: dict) -> list[str]:
    """A reference response's answer lines for an io_mixed record (tests, demos, SFT targets)."""
    ans = record["answer"]
    prog = ans["program"]
    out = [f"assert {prog['entry']}({prog['args']}) == {safe_codec.from_jsonable(ans['output'])!r}"]
    for q in ans.get("subquestions", []):
        if q["kind"] == "next_statement":
            a = q["accept"][0]
            out.append(a if q.get("strict_indent") or a == "-1" else a.strip())
        elif q["kind"] == "value_type":
            out.append("Nil" if q["nil"] else
                       f"{safe_codec.from_jsonable(q['accept'][0]['value'])!r}; {q['accept'][0]['type']}")
        else:
            out.append("YES" if q["executed"] else "NO")
    return out


def dumps_record(record: dict) -> str:
    """One JSON line for a question record (records.json_text: never raises on its text)."""
    return records.json_text(record)


def to_prompt_answer(record: dict) -> dict[str, Any]:
    """Convenience view for logs: the user prompt and the reference answer lines."""
    return {"prompt": record["messages"][-1]["content"], "answer": answer_lines(record)}
