"""Stage-I rewards: output prediction with white-box questions (`io_mixed`) and input prediction (`oi`).

Pure functions of (answer record, response text, RewardConfig). Nothing the model wrote is
executed: the assertion is parsed with `ast`, its right side must be a literal, and white-box
answers are compared with the structured ground truth of the question record. Input prediction
needs one sandboxed run of the *ground-truth* program on the model's literal arguments; this
module builds that request (`parse_oi`) and grades the outcome (`grade_oi`), and
`rewards/scorer.py` runs it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from execverify_jax.data import safe_codec
from execverify_jax.rewards import parse
from execverify_jax.rewards.config import RewardConfig
from execverify_jax.rewards.result import RewardResult

_LABEL_RE = re.compile(r"^\s*(?:[*#]+\s*)?question\s*(\d+)\s*(?:[*]+)?\s*[:.)]\s?(.*)$", re.IGNORECASE)
SUBQUESTION_KINDS = ("next_statement", "value_type", "coverage")


class RecordError(ValueError):
    """A question record does not follow the `answer` schema (docs/ARCHITECTURE.md)."""


# --------------------------------------------------------------------------------------------
# Value comparison


def typed_equal(a: Any, b: Any, tol: float = 0.0, _depth: int = 0) -> bool:
    """Equality that also requires identical types at every level (so 1 != 1.0 != True).

    Floats compare exactly when `tol == 0` (nan equals nan: both are the label "nan"), else
    within `tol * max(1, |b|)`. Sets and dict keys are matched by Python equality, then their
    members compared typed.
    """
    if _depth > 200:
        return False
    ta = type(a)
    if ta is not type(b):
        return False
    d = _depth + 1
    if ta is float:
        return _float_eq(a, b, tol)
    if ta is complex:
        return _float_eq(a.real, b.real, tol) and _float_eq(a.imag, b.imag, tol)
    if ta in (list, tuple):
        return len(a) == len(b) and all(typed_equal(x, y, tol, d) for x, y in zip(a, b))
    if ta in (set, frozenset):
        if len(a) != len(b):
            return False
        b_members = {x: x for x in b}
        return all(x in b_members and typed_equal(x, b_members[x], tol, d) for x in a)
    if ta is dict:
        if len(a) != len(b):
            return False
        b_keys = {k: k for k in b}
        for k, v in a.items():
            if k not in b_keys:
                return False
            kb = b_keys[k]
            if not typed_equal(k, kb, tol, d) or not typed_equal(v, b[kb], tol, d):
                return False
        return True
    if ta is safe_codec.Opaque:
        return False  # a non-literal label can never be matched by a literal answer
    try:
        return bool(a == b)
    except Exception:  # builtin literals only reach here; defensive for exotic values
        return False


def _float_eq(a: float, b: float, tol: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if a == b:
        return True
    return tol > 0 and math.isfinite(b) and abs(a - b) <= tol * max(1.0, abs(b))


def python_equal(a: Any, b: Any) -> bool:
    """The original harness's `==` (1 == 1.0 == True), but never True for Opaque values."""
    if not safe_codec.is_literal(a) or not safe_codec.is_literal(b):
        return False
    try:
        return bool(a == b)
    except Exception:  # RecursionError on pathological nesting
        return False


def decode(encoded: Any, what: str) -> Any:
    """Decodes a safe_codec ground-truth value; raises RecordError naming `what`."""
    try:
        return safe_codec.from_jsonable(encoded)
    except safe_codec.CodecError as exc:
        raise RecordError(f"{what}: {exc}") from None


# --------------------------------------------------------------------------------------------
# Sub-question graders (one answer line each)


def grade_next_statement(line: str, sub: dict, cfg: RewardConfig) -> bool:
    """Next-statement answer: one of `accept` (verbatim lines or "-1"); stripped comparison
    unless `cfg.strict_indent` or the sub-question's own `strict_indent` flag is set."""
    accept = sub.get("accept") or []
    # The question record may demand exact indentation (its prompt then says so).
    if cfg.strict_indent or sub.get("strict_indent") is True:
        got = line.rstrip()
        return any(got == a.rstrip() if a.strip() != "-1" else got.strip() == "-1" for a in accept)
    got = line.strip()
    return any(got == a.strip() for a in accept)


def _parse_value_answer(value_src: str, cfg: RewardConfig) -> tuple[bool, Any]:
    try:
        return True, parse.literal_value(value_src, cfg)
    except parse.LiteralError:
        return False, None


def grade_value_type(line: str, sub: dict, cfg: RewardConfig) -> bool:
    """Value/type answer `value; type` (split at the last `;`), or `Nil` for an unexecuted line."""
    text = line.strip()
    if sub.get("nil"):
        return text.rstrip(".").lower() == "nil"
    if ";" not in text:
        return False
    value_src, type_src = text.rsplit(";", 1)
    type_name = type_src.strip().strip("`").rstrip(".")
    value_src = value_src.strip()
    parsed_ok, value = _parse_value_answer(value_src, cfg)
    for acc in sub.get("accept") or []:
        if type_name != acc.get("type"):
            continue
        gt = decode(acc.get("value"), "value_type.accept.value")
        if parsed_ok:
            if cfg.typed_values:
                if typed_equal(value, gt, cfg.float_tol) and type(gt).__name__ == type_name:
                    return True
            elif python_equal(value, gt):
                return True
        # The paper's labels were str(value) for strings; accept the unquoted form too.
        if cfg.accept_unquoted_str and type_name == "str" and type(gt) is str and value_src == gt:
            return True
    return False


def grade_coverage(line: str, sub: dict, cfg: RewardConfig) -> bool:
    """Coverage answer: YES when the line executes, NO otherwise (case-insensitive)."""
    got = line.strip().rstrip(".").upper()
    if got not in ("YES", "NO"):
        return False
    return (got == "YES") == bool(sub.get("executed"))


_GRADERS = {"next_statement": grade_next_statement, "value_type": grade_value_type,
            "coverage": grade_coverage}


# --------------------------------------------------------------------------------------------
# io_mixed


def check_program(answer: dict) -> tuple[str, str, str]:
    """(code, entry, args) of an answer record; raises RecordError."""
    prog = answer.get("program")
    if not isinstance(prog, dict):
        raise RecordError("answer.program missing")
    code, entry, args = prog.get("code"), prog.get("entry"), prog.get("args")
    if not isinstance(code, str) or not isinstance(entry, str) or not isinstance(args, str):
        raise RecordError("answer.program needs string code, entry and args")
    return code, entry, args


def validate_io_mixed(answer: dict) -> None:
    """Raises RecordError when an io_mixed answer record is malformed."""
    check_program(answer)
    if "output" not in answer:
        raise RecordError("io_mixed answer lacks 'output'")
    decode(answer["output"], "output")
    subs = answer.get("subquestions", [])
    if not isinstance(subs, list):
        raise RecordError("subquestions must be a list")
    for i, sub in enumerate(subs):
        if not isinstance(sub, dict) or sub.get("kind") not in SUBQUESTION_KINDS:
            raise RecordError(f"subquestions[{i}] has unknown kind {sub!r:.80}")
        if sub["kind"] == "next_statement" and not (
                isinstance(sub.get("accept"), list) and all(isinstance(a, str) for a in sub["accept"])):
            raise RecordError(f"subquestions[{i}].accept must be a list of strings")
        if sub["kind"] == "value_type":
            acc = sub.get("accept", [])
            if not isinstance(acc, list) or not all(isinstance(a, dict) and "type" in a and "value" in a
                                                    for a in acc):
                raise RecordError(f"subquestions[{i}].accept must be a list of {{value, type}}")
            if not sub.get("nil") and not acc:
                raise RecordError(f"subquestions[{i}] is neither nil nor has accepted values")
            for a in acc:
                decode(a["value"], f"subquestions[{i}].accept.value")


def _label_lines(lines: list[str]) -> tuple[dict[int, str], int]:
    """({K: text after `QuestionK:`}, number of labelled lines). The first occurrence of a label
    wins, and a repeated label makes the line count mismatch, so repeating cannot hedge."""
    out: dict[int, str] = {}
    n = 0
    for line in lines:
        m = _LABEL_RE.match(line)
        if m:
            n += 1
            out.setdefault(int(m.group(1)), m.group(2))
    return out, n


def _label_segments(lines: list[str], n_q: int) -> list[int]:
    """Stepwise segment of each answer line under label alignment: the K of the first line
    labelled `QuestionK:` (1 = the assertion, K >= 2 = white-box question K - 2) for
    1 <= K <= n_q + 1, else 0 (unlabelled, repeated or out-of-range lines)."""
    seen: set[int] = set()
    out = []
    for line in lines:
        m = _LABEL_RE.match(line)
        k = int(m.group(1)) if m else 0
        out.append(k if 1 <= k <= n_q + 1 and k not in seen else 0)
        seen.add(k)
    return out


def _step_spans(response: str | bytes | None, segments: list[int], cfg: RewardConfig) -> list[list[int]]:
    """[[start, end, segment], ...]: the response characters of each answer line that answers a
    question (segment 1 = the assertion, k + 2 = white-box question k), for stepwise credit.
    Lines beyond the questions (or unlabelled ones) are left out: their tokens take the
    sequence's advantage; questions without a line have no tokens."""
    spans = parse.answer_line_spans(response, cfg)
    if spans is None or len(spans) != len(segments):
        return []
    return [[a, b, seg] for (a, b), seg in zip(spans, segments) if seg > 0]


def _weight(kind: str, cfg: RewardConfig) -> float:
    return {"next_statement": cfg.path_weight, "value_type": cfg.state_weight,
            "coverage": cfg.coverage_weight}[kind]


def score_io_mixed(answer: dict, response: str | bytes | None, cfg: RewardConfig) -> RewardResult:
    """Scores an output-prediction answer with its white-box questions (no execution).

    Default (paper): 0 unless the assertion is correct; then 2.0 with no questions, 1.0 when the
    number of white-box answer lines differs from the number of questions, else
    2 * ((1 - alpha) + alpha * wb_acc). See docs/REWARDS.md for every rule.
    """
    code, entry, args = check_program(answer)
    subs = answer.get("subquestions", []) or []
    n_q = len(subs)
    # shaping: the format bonus inside `reward` (GRPO's tie-break shaping separates it again);
    # step_rewards / step_spans: what stepwise credit needs (see `_step_credit`).
    base = {"io": False, "n_questions": n_q, "n_answers": 0, "correct": [], "wb_acc": 0.0,
            "question_kinds": [s.get("kind") for s in subs],
            "question_nil": [bool(s.get("nil")) for s in subs], "shaping": 0.0,
            "step_rewards": [0.0] * (n_q + 1), "step_spans": []}

    text = parse.extract_answer(response, cfg)
    if text is None:
        return RewardResult(0.0, "io_mixed", False, "no_answer", base)
    if text.count("\n") > 16 * cfg.max_answer_lines:  # cheap reject before splitting
        return RewardResult(0.0, "io_mixed", False, "too_many_lines", base)
    lines = parse.answer_lines(text)
    if not lines:
        return RewardResult(0.0, "io_mixed", False, "empty_answer", base)
    if len(lines) > cfg.max_answer_lines:
        return RewardResult(0.0, "io_mixed", False, "too_many_lines", {**base, "n_answers": len(lines)})

    if cfg.align == "label":
        labelled, n_labelled = _label_lines(lines)
        segments = _label_segments(lines, n_q)
        assertion = labelled.get(1, "")
        wb_lines: list[str | None] = [labelled.get(i + 2) for i in range(n_q)]
        n_answers = len(lines) - (1 if 1 in labelled else 0)
        # Every line labelled, each of Question1..Question{n+1} exactly once.
        count_ok = n_labelled == len(lines) == n_q + 1 and sorted(labelled) == list(range(1, n_q + 2))
    else:
        assertion = lines[0]
        rest = lines[1:]
        n_answers = len(rest)
        count_ok = n_answers == n_q
        wb_lines = [rest[i] if i < len(rest) else None for i in range(n_q)]
        segments = [i + 1 if i <= n_q else 0 for i in range(len(lines))]
    base["n_answers"] = n_answers

    io_ok, reason, shape_ok = _grade_assertion(assertion, entry, args, answer["output"], cfg)
    format_ok = shape_ok and count_ok
    # Shaping (reported in details["shaping"], so `grpo.format_shaping: tiebreak` keeps it below
    # correctness): the format bonus, and the call bonus when the assertion's call is the question's.
    fmt = (cfg.format_reward if format_ok else 0.0) + (cfg.call_reward if io_ok or reason == "wrong_output" else 0.0)

    correct: list[bool] = []
    if not (cfg.forfeit_on_count_mismatch and not count_ok):
        for sub, line in zip(subs, wb_lines):
            correct.append(line is not None and _GRADERS[sub["kind"]](line, sub, cfg))
    else:
        correct = [False] * n_q
    total_w = sum(_weight(s["kind"], cfg) for s in subs)
    wb_acc = (sum(_weight(s["kind"], cfg) for s, c in zip(subs, correct) if c) / total_w) if total_w else 0.0
    details = {**base, "io": io_ok, "correct": correct, "wb_acc": wb_acc, "shaping": fmt,
               "step_rewards": [float(io_ok)] + [float(c and (io_ok or not cfg.gated)) for c in correct],
               "step_spans": _step_spans(response, segments, cfg)}

    if not io_ok and cfg.gated:
        return RewardResult(fmt, "io_mixed", format_ok, reason, details)
    if n_q == 0:
        reward = cfg.scale * (1.0 if io_ok else 0.0)
    else:
        reward = cfg.scale * ((1.0 - cfg.alpha) * (1.0 if io_ok else 0.0) + cfg.alpha * wb_acc)
    if not reason and not count_ok:
        reason = "count_mismatch"
    elif not reason and not all(correct):
        reason = "wrong_whitebox"
    return RewardResult(reward + fmt, "io_mixed", format_ok, reason, details)


def _grade_assertion(line: str, entry: str, args: str, output_enc: Any,
                     cfg: RewardConfig) -> tuple[bool, str, bool]:
    """(correct, reason, well_formed) for the `assert f(args) == literal` line."""
    if not line:
        return False, "no_assert", False
    try:
        pa = parse.parse_assert(line, cfg)
    except parse.AssertError:
        return False, "bad_assert", False
    try:
        value = parse.literal_from_node(pa.rhs, cfg)
    except parse.LiteralError:
        return False, "rhs_not_literal", False
    if pa.func != entry or not parse.call_matches(pa.call, entry, args):
        return False, "wrong_call", True
    gt = decode(output_enc, "output")
    ok = typed_equal(value, gt) if cfg.io_typed else python_equal(value, gt)
    return ok, "" if ok else "wrong_output", True


# --------------------------------------------------------------------------------------------
# oi (input prediction)


@dataclass(frozen=True)
class OiRequest:
    """What to run in the sandbox for an input-prediction answer: the ground truth on literal args."""

    code: str
    entry: str
    args: tuple[str, ...]
    kwargs: tuple[tuple[str, str], ...]
    format_ok: bool

    def call(self) -> dict:
        """One call of `targets:run_ground_truth_many` (never holds the expected output)."""
        return {"code": self.code, "entry": self.entry,
                "args": list(self.args), "kwargs": [list(kv) for kv in self.kwargs]}

    def key(self, prelude: str) -> tuple:
        """Cache key: identical (program, canonical args) runs share one sandbox job."""
        return (prelude, self.code, self.entry, self.args, self.kwargs)


def validate_oi(answer: dict) -> None:
    """Raises RecordError when an oi answer record is malformed."""
    check_program(answer)
    if "output" not in answer:
        raise RecordError("oi answer lacks 'output'")
    decode(answer["output"], "output")


def parse_oi(answer: dict, response: str | bytes | None, cfg: RewardConfig) -> OiRequest | RewardResult:
    """The sandbox request for an input-prediction answer, or a final 0 RewardResult.

    Only the argument list of the first `assert` line is used (in the last ```python block of
    the answer when there is one). A rewritten function, the asserted right side and any other
    code in the answer are ignored: the ground-truth function runs on the model's literal
    arguments and its value is compared with the ground-truth output in the parent.
    """
    code, entry, _ = check_program(answer)
    details = {"io": False}
    text = parse.extract_answer(response, cfg)
    if text is None:
        return RewardResult(0.0, "oi", False, "no_answer", details)
    block = parse.last_code_block(text)
    body = block if block is not None else text
    line = parse.first_assert_line(body)
    if line is None:
        return RewardResult(0.0, "oi", False, "no_assert", details)
    try:
        pa = parse.parse_assert(line, cfg)
    except parse.AssertError:
        return RewardResult(0.0, "oi", False, parse.placeholder_or(line, "bad_assert"), details)
    if pa.func != entry:
        return RewardResult(0.0, "oi", False, "wrong_function", details)
    try:
        pos, kws = parse.call_literal_args(pa.call, cfg)
    except parse.LiteralError:
        return RewardResult(0.0, "oi", False, "args_not_literal", details)
    return OiRequest(code=code, entry=entry, args=tuple(pos), kwargs=tuple(kws), format_ok=True)


def grade_oi(answer: dict, req: OiRequest, outcome: Any, cfg: RewardConfig) -> RewardResult:
    """Grades the sandbox outcome of the ground-truth run against the ground-truth output."""
    status = getattr(getattr(outcome, "status", None), "value", getattr(outcome, "status", None))
    fmt = cfg.format_reward if req.format_ok else 0.0
    details: dict[str, Any] = {"io": False, "status": str(status), "shaping": fmt}
    if status != "ok":
        details["error_type"] = getattr(outcome, "error_type", None)
        return RewardResult(fmt, "oi", req.format_ok, str(status or "sandbox_error"), details)
    gt = decode(answer["output"], "output")
    ok = typed_equal(outcome.value, gt) if cfg.io_typed else python_equal(outcome.value, gt)
    details["io"] = ok
    return RewardResult((cfg.oi_reward if ok else 0.0) + fmt, "oi", req.format_ok,
                        "" if ok else "wrong_args", details)
