"""Every prompt template of the project, in one module, as a registry keyed by layout name.

Layouts (docs/QUESTIONS.md shows rendered examples):
- `io_mixed`: the paper's Stage-I white-box prompt (reference section 4.4): numbered program
  (`{n}\\t{line}`), `assert f(args) == ????`, Question1 = fill the assertion, then next-statement
  questions, then value/type questions (then coverage questions, our addition), answer rules,
  and the `<reasoning>`/`<answer>` response format, after a format-only example.
- `oi`: input prediction (reference section 4.5): the CRUXEval-style prompt with
  `assert f(????) == output`; the stray leading quote of the original is gone.
- `cruxeval_output` / `cruxeval_input`: the CRUXEval eval prompts (section 7.1), same template.

A layout is a function `PromptSpec -> messages` registered with `@register(name)`; messages are
chat messages `[{"role": "system", ...}, {"role": "user", ...}]`. One system message everywhere
(reference section 9 item 17): `SYSTEM_PROMPT`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

SYSTEM_PROMPT = "You are a programming expert."

Messages = list[dict[str, str]]
LAYOUTS: dict[str, Callable[["PromptSpec"], Messages]] = {}


@dataclass(frozen=True)
class PromptSpec:
    """What a layout needs. `args`/`output` are source text (`output` is a repr); `????` marks
    the hidden side. `questions` are white-box question texts in order (Question2...);
    `kinds` says which answer-rule blocks to include (next_statement, value_type, coverage)."""

    code: str
    entry: str
    args: str = "????"
    output: str = "????"
    questions: tuple[str, ...] = ()
    kinds: frozenset[str] = frozenset({"next_statement", "value_type"})
    strict_indent: bool = False


def register(name: str) -> Callable:
    """Decorator: adds a layout function to `LAYOUTS` under `name`."""

    def deco(fn: Callable[[PromptSpec], Messages]) -> Callable[[PromptSpec], Messages]:
        if name in LAYOUTS:
            raise ValueError(f"layout {name!r} registered twice")
        LAYOUTS[name] = fn
        return fn

    return deco


def render(layout: str, spec: PromptSpec) -> Messages:
    """Renders `spec` with the named layout; unknown names are an error listing the known ones."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown prompt layout {layout!r}; known: {sorted(LAYOUTS)}")
    return LAYOUTS[layout](spec)


def chat(user: str) -> Messages:
    """The two-message chat every layout produces."""
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


# ----------------------------------------------------------------------------- text pieces
def ordinal(k: int) -> str:
    """1 -> '1st', 2 -> '2nd', 11 -> '11th', 23 -> '23rd'."""
    if 10 <= k % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def number_lines(text: str, start: int = 1) -> str:
    """`{n}\\t{line}` for every non-blank line; blank lines stay empty but keep their number."""
    out = []
    for i, line in enumerate(text.split("\n"), start=start):
        out.append(f"{i}\t{line}" if line.strip() else "")
    return "\n".join(out)


def program_text(code: str, assertion: str) -> str:
    """The program as the model sees it: code, one blank line, the assertion (trace line numbers
    are unchanged because the code comes first)."""
    return code.rstrip() + "\n\n" + assertion


def call_text(entry: str, args: str) -> str:
    """`f(args)` as shown in questions."""
    return f"{entry}({args})"


def next_statement_question(entry: str, args: str, line: int, line_text: str, k: int) -> str:
    """The path question (reference 4.2 wording, with an ordinal and the stripped line text)."""
    return (f"While executing {call_text(entry, args)}, which line of code is executed immediately "
            f"after line {line}: {line_text.strip()} has been executed for the {ordinal(k)} time?")


def value_type_question(entry: str, args: str, line: int, line_text: str, var: str, k: int) -> str:
    """The state question (reference 4.3 wording, with an ordinal and the stripped line text)."""
    return (f"Is line {line}: {line_text.strip()} executed when {call_text(entry, args)} is called? "
            f"If so, what are the value and type of the variable '{var}' after line {line} has been "
            f"executed for the {ordinal(k)} time?")


def coverage_question(entry: str, args: str, line: int, line_text: str) -> str:
    """REval-style coverage question (our addition to io_mixed)."""
    return f"Is line {line}: {line_text.strip()} executed when {call_text(entry, args)} is called?"


# ----------------------------------------------------------------------------- io_mixed
_IO_MIXED_INTRO = (
    "You are a programming expert. You will be given a Python program and several questions "
    "about its execution. Answer them by simulating the execution of the program step by step "
    "in your head, without running any code.\n"
    "WARNING: the example below is for format reference only. Do not execute it and do not "
    "answer its questions."
)
_EXAMPLE_CODE = (
    "def f(a, b):\n"
    "    ans = a + b\n"
    "    if ans > 3:\n"
    "        ans = int(a)\n"
    "    else:\n"
    "        ans = b\n"
    "    return ans"
)


def _example(strict_indent: bool) -> str:
    q2 = value_type_question("f", "1.1, 2", 4, "        ans = int(a)", "ans", 1)
    q3 = next_statement_question("f", "1.1, 2", 4, "        ans = int(a)", 1)
    nxt = "    return ans" if strict_indent else "return ans"
    return (
        "[EXAMPLE]\n"
        "Here is the code content:\n"
        + number_lines(program_text(_EXAMPLE_CODE, "assert(f(1.1, 2)) == ????")) + "\n\n"
        "Question1: Fill the assertion statement.\n"
        f"Question2: {q2}\n"
        f"Question3: {q3}\n\n"
        "<reasoning>\n(your reasoning)\n</reasoning>\n"
        f"<answer>\nassert(f(1.1, 2)) == 1\n1; int\n{nxt}\n</answer>\n"
        "[/EXAMPLE]"
    )


def _rules(spec: PromptSpec) -> str:
    blocks = []
    if "next_statement" in spec.kinds:
        indent = ("Copy the line exactly as it appears in the program, including its indentation: "
                  "the leading whitespace must match exactly." if spec.strict_indent else
                  "Copy the line as it appears in the program; leading whitespace (indentation) is "
                  "ignored when your answer is checked.")
        blocks.append(
            "Guidelines for the next-statement questions (\"which line of code is executed "
            "immediately after ...\"):\n"
            "- Answer with the line of code that is executed next.\n"
            "- Answer -1 if the line is never executed, or if the program terminates right after it.\n"
            f"- {indent} Do not include the line number, quotes, backticks or comments.\n"
            "- If several lines are possible, give any one of them.")
    if "value_type" in spec.kinds:
        blocks.append(
            "Guidelines for the value and type questions:\n"
            "- Answer Nil if the line is not executed.\n"
            "- Otherwise answer exactly in the format `value; type`: the value written as a Python "
            "literal, one semicolon, one space, then the name of its Python type.\n"
            "- The type is a Python type name: int, float, bool, complex, str, list, tuple, dict, "
            "set, NoneType, etc.\n"
            "- Examples: 1; int    'abc'; str    {'a', 'd'}; set    [1, 2]; list")
    if "coverage" in spec.kinds:
        blocks.append(
            "Guidelines for the coverage questions (\"Is line ... executed when ... is called?\"):\n"
            "- Answer YES if the line is executed at least once during the call, otherwise NO.")
    blocks.append(
        "Absolute format rules:\n"
        "- The answer to Question1 is the complete assertion statement, e.g. "
        f"assert {spec.entry}(...) == <value>.\n"
        "- A next-statement answer is only the line of code.\n"
        "- A value and type answer is exactly `value; type`.\n"
        "- Write exactly one answer per line, in the order of the questions, with no bullets, "
        "numbering or extra text.")
    return "\n\n".join(blocks)


_ANSWER_FORMAT = (
    "Respond in the following format:\n"
    "<reasoning>\n"
    "Your step-by-step simulation of the program.\n"
    "</reasoning>\n"
    "<answer>\n"
    "One answer per line, in the order of the questions.\n"
    "</answer>"
)


@register("io_mixed")
def io_mixed(spec: PromptSpec) -> Messages:
    """The paper's white-box layout: assertion first, then path, then state questions."""
    assertion = f"assert {call_text(spec.entry, spec.args)} == ????"
    questions = ["Question1: Fill the assertion statement."]
    questions += [f"Question{i + 2}: {q}" for i, q in enumerate(spec.questions)]
    user = "\n\n".join([
        _IO_MIXED_INTRO,
        _example(spec.strict_indent),
        "Here is the code content:\n" + number_lines(program_text(spec.code, assertion)),
        "Answer the following questions in the listed order.\n" + "\n".join(questions),
        _rules(spec),
        _ANSWER_FORMAT,
    ])
    return chat(user)


_COMPACT_RULES = {
    "next_statement": "next statement: the line of code executed next, as written (-1 if none)",
    "value_type": "value/type: `value; type` (e.g. [1, 2]; list), or Nil if the line is not executed",
    "coverage": "coverage: YES or NO",
}


@register("io_mixed_compact")
def io_mixed_compact(spec: PromptSpec) -> Messages:
    """The io_mixed questions and answer format with one-line rules and no example (~1/4 of the
    tokens): for small policies and CPU budgets (`questions.io_mixed_prompt: compact`). Scored
    exactly like `io_mixed`."""
    assertion = f"assert {call_text(spec.entry, spec.args)} == ????"
    questions = ["Question1: Fill the assertion statement."]
    questions += [f"Question{i + 2}: {q}" for i, q in enumerate(spec.questions)]
    rules = ["Question1: the complete assertion"] + [
        _COMPACT_RULES[k] for k in ("next_statement", "value_type", "coverage") if k in spec.kinds]
    user = "\n".join([
        "Simulate this Python program without running it and answer the questions in order.",
        number_lines(program_text(spec.code, assertion)),
        *questions,
        "Answers, one per line: " + "; ".join(rules) + ".",
        "Respond as <reasoning>...</reasoning> then <answer> with one answer per line </answer>.",
    ])
    return chat(user)


# ----------------------------------------------------------------------------- CRUXEval / oi
def cruxeval_user(code: str, assertion: str) -> str:
    """The CRUXEval-style fill-the-assertion user message (reference 7.1), no stray quote."""
    return (
        "Fill in the missing assertion. Try to find out the ???? in the following code.\n"
        "Here is the provided code:\n"
        "```python\n" + code.rstrip() + "\n" + assertion + "\n```\n"
        "Output the complete test case in the following format:\n"
        "```python\n<Your code>\n```\n\n"
        "Respond in the following format:\n"
        "<reasoning>\n"
        "Your step-by-step reasoning.\n"
        "</reasoning>\n"
        "<answer>\n"
        "```python\n"
        "The complete assertion, with ???? filled in.\n"
        "```\n"
        "</answer>"
    )


@register("oi")
def oi(spec: PromptSpec) -> Messages:
    """Input prediction: `assert f(????) == output`."""
    return chat(cruxeval_user(spec.code, f"assert {spec.entry}(????) == {spec.output}"))


@register("cruxeval_input")
def cruxeval_input(spec: PromptSpec) -> Messages:
    """CRUXEval-I (same template as `oi`)."""
    return oi(spec)


@register("cruxeval_output")
def cruxeval_output(spec: PromptSpec) -> Messages:
    """CRUXEval-O: `assert f(args) == ????`."""
    return chat(cruxeval_user(spec.code, f"assert {call_text(spec.entry, spec.args)} == ????"))


def cruxeval_messages(code: str, entry: str, *, args: str | None = None,
                      output: str | None = None) -> Messages:
    """CRUXEval prompt: give `args` for output prediction, or `output` (a repr) for input
    prediction (exactly one of them)."""
    if (args is None) == (output is None):
        raise ValueError("give exactly one of args (output prediction) or output (input prediction)")
    if args is not None:
        return cruxeval_output(PromptSpec(code=code, entry=entry, args=args))
    return cruxeval_input(PromptSpec(code=code, entry=entry, output=output))


# --------------------------------------------------------------------------------- stage II
# One stage-II prompt for training and evaluation alike (the original used different system
# prompts and wordings per phase, reference section 6.4 / 9 item 17).
STAGE2_SYSTEM = "\nYou are a programming expert.\n"  # the paper's stage-II system prompt, verbatim
CODE_ANSWER_FORMAT = (
    "Respond in the following format:\n<reasoning>\nYour step-by-step reasoning.\n</reasoning>\n"
    "<answer>\n```python\nThe generated code.\n```\n</answer>"
)


def stage2_user(problem: str) -> str:
    """The paper's stage-II code-generation instruction around a problem statement."""
    return ("Try to generate code to solve the problem: \n" + problem.strip() +
            "\n\nValidate your generated code by the provided input and output pairs.\n\n" + CODE_ANSWER_FORMAT)


def stage2_messages(problem: str) -> Messages:
    """System + user messages of a stage-II problem (used by `rl.tasks` and `eval.codegen`)."""
    return [{"role": "system", "content": STAGE2_SYSTEM}, {"role": "user", "content": stage2_user(problem)}]
