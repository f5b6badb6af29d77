"""Built-in SFT targets: a step-by-step "chain of execution" written from the tracer's steps.

The paper distils rationales from a teacher model (reference §2.7) and keeps those whose answers
are right, which still lets wrong intermediate steps through. Here the rationale is rendered from
the trace of the very call being asked about, so every line number, statement and value in it is
true by construction, and no teacher is needed. The answer block is the reference answer
(`questions.answer_lines` for io_mixed; the assertion with the true arguments for oi), so the SFT
target scores the maximum reward under `rewards/` (tested).

    <reasoning>
    Call f(3).
    Step 1, line 2: s = 0  ->  s = 0
    ...
    f(3) returns 3.
    </reasoning>
    <answer>
    assert f(3) == 3
    ...
    </answer>
"""

from __future__ import annotations

from typing import Any, Sequence

from execverify_jax.data import safe_codec
from execverify_jax.data.questions import answer_lines

MAX_VALUE_CHARS = 60


def _value(enc: dict) -> str:
    if not enc.get("literal", False):
        return f"<{enc.get('type', 'object')}>"
    text = repr(safe_codec.from_jsonable(enc["value"]))
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "..."


def chain_of_execution(trace: dict, max_steps: int = 40) -> str:
    """The reasoning text of a usable trace: one line per executed statement with the values it
    changed, then the return value. Longer traces are cut after `max_steps` steps (said so);
    `max_steps=0` gives only the call and its return value."""
    entry, args = trace["entry"], trace["args"]
    if max_steps == 0:  # the shortest true rationale: the call and its result
        return f"{entry}({args}) returns {_value(trace['return'])}."
    out = [f"Call {entry}({args})."]
    steps = trace["steps"]
    for n, step in enumerate(steps[:max_steps]):
        src = trace["lines"][step["line"] - 1].strip()
        changed = ", ".join(f"{k} = {_value(v)}" for k, v in sorted(step.get("changed", {}).items()))
        depth = trace["frames"][step["frame"]].get("depth", 0)
        where = "" if depth == 0 else f" (in {trace['frames'][step['frame']]['func']})"
        out.append(f"Step {n + 1}, line {step['line']}{where}: {src}" + (f"  ->  {changed}" if changed else ""))
    if len(steps) > max_steps:
        out.append(f"... {len(steps) - max_steps} more steps ...")
    out.append(f"{entry}({args}) returns {_value(trace['return'])}.")
    return "\n".join(out)


def reference_answer(record: dict) -> str:
    """The answer block content of a question record (io_mixed or oi)."""
    ans = record["answer"]
    if ans["layout"] == "io_mixed":
        return "\n".join(answer_lines(record))
    if ans["layout"] == "oi":
        prog = ans["program"]
        out = repr(safe_codec.from_jsonable(ans["output"]))
        return f"```python\nassert {prog['entry']}({prog['args']}) == {out}\n```"
    raise ValueError(f"no built-in rationale for layout {ans['layout']!r}")


def sft_response(record: dict, trace: dict, max_steps: int = 40) -> str:
    """The full assistant message: reasoning from the trace, then the reference answer."""
    return ("<reasoning>\n" + chain_of_execution(trace, max_steps) + "\n</reasoning>\n<answer>\n"
            + reference_answer(record) + "\n</answer>")


def build_examples(questions: Sequence[dict], pool: Any, max_steps: int = 40,
                   limits: Any = None) -> tuple[list[list[dict]], dict[str, int]]:
    """(conversations, counts): each question's messages + the traced rationale as the assistant
    turn. Traces run in the sandbox pool; calls whose trace is unusable are skipped and counted."""
    from execverify_jax.data.trace.tracer import trace_many_in_sandbox, usable

    keep = [q for q in questions if q.get("answer", {}).get("layout") in ("io_mixed", "oi")]
    items = [(q["answer"]["program"]["code"], q["answer"]["program"]["entry"], q["answer"]["program"]["args"])
             for q in keep]
    traces = trace_many_in_sandbox(pool, items, limits=limits) if items else []
    convs, counts = [], {"examples": 0, "skipped_layout": len(questions) - len(keep), "skipped_trace": 0}
    for q, tr in zip(keep, traces):
        if not usable(tr):
            counts["skipped_trace"] += 1
            continue
        convs.append(list(q["messages"]) + [{"role": "assistant", "content": sft_response(q, tr, max_steps)}])
        counts["examples"] += 1
    return convs, counts
