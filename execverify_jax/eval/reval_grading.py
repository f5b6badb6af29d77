"""REval's pure graders (coverage, path, state) and the output task's template holes.

Split from eval/reval.py (the benchmark class); the grading rules are listed in its docstring
and in docs/EVAL.md.
"""

from __future__ import annotations

import ast
import itertools
import math
import re
from typing import Any

from execverify_jax.data import safe_codec
from execverify_jax.eval import extract
from execverify_jax.eval.items import EvalItem, Verdict
from execverify_jax.rewards import parse
from execverify_jax.rewards.config import RewardConfig
from execverify_jax.rewards.whitebox import python_equal


_HOLE = re.compile(r"\?\?")
_HOLE_NAME = "__dreval_hole_{}__"
_HOLE_RE = re.compile(r"^__dreval_hole_(\d+)__$")
_CFG = RewardConfig()
_BUILTIN_TYPES: dict[str, type] = {
    "int": int, "float": float, "str": str, "bool": bool, "list": list, "tuple": tuple, "dict": dict,
    "set": set, "frozenset": frozenset, "complex": complex, "bytes": bytes, "NoneType": type(None),
    "range": range, "type": type,
}
_TYPE_ALIASES = {"string": "str", "integer": "int", "none": "NoneType", "nonetype": "NoneType"}
NIL = "Nil"


def _wrap(answer: str) -> str:
    return f"<reasoning>\noracle\n</reasoning>\n<answer>\n{answer}\n</answer>"


# --------------------------------------------------------------------------------------------
# Coverage / path / state graders (pure)


def grade_coverage(it: EvalItem, resp: str, qgt: dict) -> Verdict:
    """REval: predicted executed iff "YES" is in the uppercased answer."""
    span, _ = extract.answer_span(resp, _CFG)
    text = (span or "").upper()
    pred = "YES" in text
    gold = bool(qgt["covered"])
    parsed = None if span is None or ("YES" not in text and "NO" not in text) else ("YES" if pred else "NO")
    return Verdict(pred == gold, parsed, "" if pred == gold else "wrong_coverage", float(pred == gold),
                   {"pred": pred, "gold": gold})


def grade_path(resp: str, qgt: dict, codelines: list[str]) -> Verdict:
    """REval: the answer maps to -1, -2 (empty / no such line) or the matching line numbers."""
    span, _ = extract.answer_span(resp, _CFG)
    if span is None:
        return Verdict(False, None, "no_answer")
    ans = "\n".join(parse.answer_lines(span)).strip()
    if ans == "-1":
        mapped = [-1]
    elif not ans:
        mapped = [-2]
    else:
        mapped = [i + 1 for i, c in enumerate(codelines) if c.strip() == ans] or [-2]
    ok = any(m in qgt["next"] for m in mapped)
    return Verdict(ok, ans, "" if ok else "wrong_path", float(ok), {"mapped": mapped[:10]})


def parse_state_answer(text: str) -> tuple[str, Any, str] | None:
    """REval's `value; type` parsing on a literal value: (`nil`|`value`, value, type name) or None.

    Type names: `<class 'x'>` -> x, `x[...]` -> x, string/integer/none aliases, anything with a
    comma or "tuple" -> tuple. The value goes through the bounded literal parser (never eval);
    `type` answers accept a builtin type name as the value (e.g. `str; type`).
    """
    resp = text.strip()
    if resp.capitalize() == NIL or resp == "[Nil]":
        return ("nil", None, "")
    semi = resp.rfind(";")
    if semi < 0:
        return None
    val_str, type_str = resp[:semi].strip(), resp[semi + 1:].strip().lower().rstrip(".")
    if val_str.capitalize() == NIL:
        return ("nil", None, "")
    m = re.match(r"<class '(.*)'>", type_str)
    if m:
        type_str = m.group(1)
    m = re.match(r"(.*)\[.*\]", type_str)
    if m:
        type_str = m.group(1)
    type_str = _TYPE_ALIASES.get(type_str, type_str)
    if "," in type_str or "tuple" in type_str:
        type_str = "tuple"
    if val_str == "None" or type_str == "NoneType":
        return ("value", None, "NoneType")
    if type_str not in _BUILTIN_TYPES:
        return None
    if type_str == "type":
        m = re.match(r"^<class '(\w+)'>$", val_str)
        name = m.group(1) if m else val_str
        return ("value", f"<class '{name}'>", "type") if name in _BUILTIN_TYPES else None
    try:
        return ("value", parse.literal_value(val_str, _CFG), type_str)
    except parse.LiteralError:
        return None


def state_matches(ans: tuple[str, Any, str], state: dict) -> bool:
    """REval's state equality of a parsed answer against the ground-truth value list."""
    if ans[0] == "nil" or state["nil"]:
        return ans[0] == "nil" and bool(state["nil"])
    _, val, tname = ans
    actual = [(v["type"], safe_codec.from_jsonable(v["value"])) for v in state["values"]]
    if tname == "type":  # builtin type objects travel as opaque values with their repr
        return any(t == "type" and isinstance(a, safe_codec.Opaque) and a.repr == val for t, a in actual)
    want = _BUILTIN_TYPES[tname]
    # REval requires some ground-truth value to be an instance of the answered type (it skips
    # None values there, so a None label could never be matched: we let NoneType match None).
    if not any(isinstance(a, want) for _, a in actual):
        return False
    if type(val) is not want:
        return False
    if want is float:
        return any(type(a) is float and (abs(val - a) < 1e-6 or (math.isnan(val) and math.isnan(a)))
                   for _, a in actual)
    return any(python_equal(val, a) for _, a in actual)


def grade_state(it: EvalItem, resp: str, qgt: dict) -> Verdict:
    """A state answer against the traced values of the question's expression."""
    state = qgt["state"]
    unanswerable = not state["nil"] and not any(
        safe_codec.is_literal(safe_codec.from_jsonable(v["value"])) or v["type"] == "type" for v in state["values"])
    details = {"unanswerable": True} if unanswerable else {}
    span, _ = extract.answer_span(resp, _CFG)
    if span is None:
        return Verdict(False, None, "no_answer", 0.0, details)
    text = "\n".join(parse.answer_lines(span)).strip()
    ans = parse_state_answer(text)
    if ans is None:
        return Verdict(False, None, "unparsable_state", 0.0, details)
    ok = state_matches(ans, state)
    return Verdict(ok, text, "" if ok else "wrong_state", float(ok), details)


def _oracle_state(state: dict) -> str | None:
    if state["nil"]:
        return _wrap(NIL)
    for v in state["values"]:
        value = safe_codec.from_jsonable(v["value"])
        if v["type"] == "type" and isinstance(value, safe_codec.Opaque):
            return _wrap(f"{value.repr.split(chr(39))[1]}; type")
        if safe_codec.is_literal(value):
            return _wrap(f"{value!r}; {v['type']}")
    return None


# --------------------------------------------------------------------------------------------
# Output task: `??` templates


def _hole_source(template: str) -> str:
    counter = itertools.count()
    return _HOLE.sub(lambda m: _HOLE_NAME.format(next(counter)), template)


def _match(t: Any, a: Any, holes: dict[int, ast.expr], literal_holes: bool) -> bool:
    if isinstance(t, ast.Name) and _HOLE_RE.match(t.id):
        if not isinstance(a, ast.expr):
            return False
        if literal_holes:
            try:
                parse.literal_from_node(a, _CFG)
            except parse.LiteralError:
                return False
        holes[int(_HOLE_RE.match(t.id).group(1))] = a  # type: ignore[union-attr]
        return True
    if isinstance(t, list):
        return isinstance(a, list) and len(t) == len(a) and all(_match(x, y, holes, literal_holes) for x, y in zip(t, a))
    if isinstance(t, ast.AST):
        if type(t) is not type(a):
            return False
        for f in t._fields:
            if f in ("ctx", "type_comment", "kind"):
                continue
            if not _match(getattr(t, f, None), getattr(a, f, None), holes, literal_holes):
                return False
        return True
    return type(t) is type(a) and t == a


def fill_template(template: str, span: str) -> tuple[str | None, str]:
    """(filled snippet, reason): the answer must be the template with each `??` replaced by a
    literal. Answers shorter than the template are right-aligned onto it (REval); `self.assert`
    is read as `assert` (REval writes the snippet without `self.`)."""
    body = extract.code_body(span).replace("self.assert", "assert")
    in_lines, res_lines = template.strip().split("\n"), body.strip().split("\n")
    if len(res_lines) < len(in_lines):
        body = "\n".join(in_lines[:len(in_lines) - len(res_lines)] + res_lines)
    try:
        t_tree = ast.parse(_hole_source(template.strip()))
        a_tree = ast.parse(body.strip())
    except parse.PARSE_ERRORS:
        return None, "answer_not_python"
    holes: dict[int, ast.expr] = {}
    if not _match(t_tree.body, a_tree.body, holes, literal_holes=True):
        return None, "answer_differs_from_template"
    return ast.unparse(a_tree), ""


def record_holes(template: str, source: str) -> str | None:
    """The template with each `??` replaced by `__rec__(k, <the expression the original test
    snippet has there>)` (for the oracle), or None when the two do not align."""
    try:
        t_tree = ast.parse(_hole_source(template.strip()))
        s_tree = ast.parse(source.replace("self.assert", "assert").strip())
    except SyntaxError:
        return None
    holes: dict[int, ast.expr] = {}
    if not _match(t_tree.body, s_tree.body, holes, literal_holes=False):
        return None
    src = _hole_source(template.strip())
    for k, node in holes.items():
        src = src.replace(_HOLE_NAME.format(k), f"__rec__({k}, {ast.unparse(node)})", 1)
    return src


def _oracle_fill(template: str, recorded: dict) -> str | None:
    values = recorded.get("values", {})
    src = _hole_source(template.strip())
    for k in range(len(_HOLE.findall(template))):
        if str(k) not in values:
            return None
        value = safe_codec.from_jsonable(values[str(k)])
        if not safe_codec.is_literal(value):
            return None
        src = src.replace(_HOLE_NAME.format(k), repr(value), 1)
    return _wrap(src)
