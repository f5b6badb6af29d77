"""LLM-prompted synthesis, the paper's path (reference §2.3-2.4), from the same grid cells.

* `generation_prompt(cell, seed)`: the generation prompt (task, hard requirements, four
  guideline bullets chosen by the cell's flags and a control-flow chain drawn from the seed,
  output format) as chat messages with the system message "You are a code generator.".
* `mutation_prompt(program, seed)`: the input-mutation prompt with fresh reference values drawn
  exactly as the paper does (L = randint(5, 15) once; L ints randint(5, 20); L strings: 50%
  alphanumeric of length randint(5, 10), 40% one random character repeated randint(5, 15)
  times, 10% alphanumeric+punctuation of length randint(5, 10)).
* `Generator`: `generate(prompts, sampling) -> list[str]`. `OpenAIGenerator` talks to an
  OpenAI-compatible `/v1/chat/completions` server the user runs (vLLM, SGLang), with stdlib
  urllib, a thread pool, retries and timeouts. A backend on our own JAX sampler implements the
  same protocol (the RL side plugs it in; nothing here imports jax).
* `parse_completion(text, cell_constraint)`: first (or last) fenced python block -> program
  code (function defs + module imports, which the paper dropped: defect §9.10), entry name and
  args text of the single `print(entry(args))` call, found with `ast`; then
  `checker.check` decides whether the program meets its constraint.
"""

from __future__ import annotations

import ast
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import random
import re
import string
import time
import urllib.error
import urllib.request
from typing import Protocol, Sequence

from execverify_jax.data.synth import checker
from execverify_jax.data.synth.grid import CF_KINDS, Cell

SYSTEM_GENERATE = "You are a code generator."
GEN_SAMPLING = {"temperature": 0.8, "top_p": 0.9, "max_tokens": 4096, "repetition_penalty": 1.0}
MUTATE_SAMPLING = {"temperature": 0.4, "top_p": 0.9, "max_tokens": 4096, "repetition_penalty": 1.05}
_CF_TEXT = {"if": "an if statement", "for": "a for loop", "while": "a while loop",
            "if-elif": "an if-elif statement"}


def draw_chain(cell: Cell, seed: int) -> list[str]:
    """The control-flow chain for this prompt: cf_depth items drawn uniformly, independently."""
    rng = random.Random(f"llm|{cell.key}|{seed}")
    return [rng.choice(CF_KINDS) for _ in range(cell.cf_depth)]


def _chain_text(chain: list[str]) -> str:
    if not chain:
        return "Do not use any control flow: no if/for/while/elif."
    parts = [f"include {_CF_TEXT[chain[0]]}"]
    prev = chain[0]
    for item in chain[1:]:
        parts.append(f"nest {_CF_TEXT[item]} inside the {prev}")
        prev = item
    return "Use control flow with nesting depth " + str(len(chain)) + ": " + ", then ".join(parts) + "."


def generation_prompt(cell: Cell, seed: int) -> tuple[list[dict], dict]:
    """(chat messages, constraint record) of the paper's generation prompt for this cell."""
    chain = draw_chain(cell, seed)
    bullets = [
        ("Use nested calls of the tested method, with depth >= 2, and call it several times."
         if cell.nested else "Avoid nested calls of the tested method."),
        ("Use at least one more built-in method (preferably of str, list, set or tuple)."
         if cell.other_methods else "Do not use any other methods."),
        ("Define exactly two functions: a helper function A and an entry function B, where B calls A."
         if cell.helper else "Define exactly one function."),
        _chain_text(chain),
    ]
    user = (
        f"Write Python code that tests the `{cell.method}` method of the `{cell.group}` type.\n\n"
        "Hard requirements:\n"
        "- Do not write any comments.\n"
        "- Write exactly one print(...) statement, outside of any function, that calls the entry "
        "function exactly once, like print(f(...)).\n"
        "- Do not use default parameter values.\n"
        "- Every function takes at least one argument.\n\n"
        "Guidelines:\n" + "\n".join(f"- {b}" for b in bullets) + "\n\n"
        "Output format: a single fenced code block, ```python ... ```."
    )
    constraint = {"group": cell.group, "method": cell.method, "level": cell.level, "cf_chain": chain,
                  "helper": cell.helper, "nested": cell.nested, "other_methods": cell.other_methods}
    return [{"role": "system", "content": SYSTEM_GENERATE}, {"role": "user", "content": user}], constraint


def reference_values(rng: random.Random) -> tuple[list[int], list[str]]:
    """The paper's reference values: L ints and L strings, L = randint(5, 15) drawn once."""
    n = rng.randint(5, 15)
    ints = [rng.randint(5, 20) for _ in range(n)]
    alnum = string.ascii_letters + string.digits
    anything = string.ascii_letters + string.digits + string.punctuation + " \t"
    strs = []
    for _ in range(n):
        u = rng.random()
        if u < 0.5:
            strs.append("".join(rng.choice(alnum) for _ in range(rng.randint(5, 10))))
        elif u < 0.9:
            strs.append(rng.choice(anything) * rng.randint(5, 15))
        else:
            strs.append("".join(rng.choice(alnum + string.punctuation) for _ in range(rng.randint(5, 10))))
    return ints, strs


def mutation_prompt(program: str, seed: int) -> list[dict]:
    """The paper's input-mutation prompt for a full program (defs + print call)."""
    ints, strs = reference_values(random.Random(f"mutate|{seed}"))
    user = (
        "Here is a Python program:\n```python\n" + program.strip() + "\n```\n\n"
        "Rewrite the arguments of the entry function call inline (do not introduce variables), "
        "using some of the reference values below. Arguments of type str, dict, list or set must "
        "have length greater than 5. You may adapt the code so that it works with the new values. "
        "The program must print exactly one call of the entry function.\n\n"
        f"integer values: {', '.join(map(str, ints))}\n"
        f"string values: {' '.join(repr(s) for s in strs)}\n\n"
        "Output format: a single fenced code block, ```python ... ```."
    )
    return [{"role": "system", "content": SYSTEM_GENERATE}, {"role": "user", "content": user}]


class Generator(Protocol):
    """Anything that turns chat prompts into completions (one per prompt, input order)."""

    def generate(self, prompts: Sequence[list[dict]], sampling: dict) -> list[str]: ...


@dataclasses.dataclass(frozen=True)
class OpenAIConfig:
    """OpenAI-compatible server settings; env defaults EXECVERIFY_LLM_BASE_URL/_MODEL/_API_KEY."""

    base_url: str = dataclasses.field(default_factory=lambda: os.environ.get("EXECVERIFY_LLM_BASE_URL", "http://127.0.0.1:8000"))
    model: str = dataclasses.field(default_factory=lambda: os.environ.get("EXECVERIFY_LLM_MODEL", "default"))
    api_key: str = dataclasses.field(default_factory=lambda: os.environ.get("EXECVERIFY_LLM_API_KEY", "EMPTY"))
    timeout_s: float = 300.0
    retries: int = 3
    backoff_s: float = 1.0
    workers: int = 16


class OpenAIGenerator:
    """`/v1/chat/completions` client (vLLM, SGLang); failed prompts yield "" after retries."""

    def __init__(self, cfg: OpenAIConfig | None = None):
        self.cfg = cfg or OpenAIConfig()
        self.errors: list[str] = []

    def _one(self, messages: list[dict], sampling: dict) -> str:
        body = {"model": self.cfg.model, "messages": messages, **sampling}
        url = self.cfg.base_url.rstrip("/") + "/v1/chat/completions"
        last = ""
        for attempt in range(self.cfg.retries + 1):
            req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {self.cfg.api_key}"})
            try:
                with urllib.request.urlopen(req, timeout=self.cfg.timeout_s) as resp:
                    data = json.loads(resp.read().decode())
                return data["choices"][0]["message"]["content"] or ""
            except (urllib.error.URLError, TimeoutError, OSError, KeyError, IndexError, ValueError) as e:
                last = f"{type(e).__name__}: {e}"
                if attempt < self.cfg.retries:
                    time.sleep(self.cfg.backoff_s * (2 ** attempt))
        self.errors.append(last)
        return ""

    def generate(self, prompts: Sequence[list[dict]], sampling: dict) -> list[str]:
        """Completions in prompt order; requests run concurrently on a thread pool."""
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.cfg.workers) as pool:
            return list(pool.map(lambda m: self._one(m, sampling), prompts))


_FENCE = re.compile(r"```python[ \t]*\n(.*?)```", re.S)


def extract_code(text: str, which: str = "first") -> str | None:
    """The first (paper) or last fenced ```python block of a completion, or None."""
    blocks = _FENCE.findall(text)
    if not blocks:
        return None
    return blocks[0] if which == "first" else blocks[-1]


def split_program(code: str) -> tuple[str, str, str] | None:
    """(program code, entry name, args text) from a full program, or None if malformed.

    Requires exactly one module-level `print(name(args))` call and at least one def; keeps
    function defs and import statements (the paper dropped imports, §9.10); drops other
    module-level code.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    prints = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
              and n.func.id == "print"]
    top = [s for s in tree.body if isinstance(s, ast.Expr) and s.value in prints]
    if len(prints) != 1 or len(top) != 1:
        return None
    call = top[0].value
    if len(call.args) != 1 or call.keywords or not isinstance(call.args[0], ast.Call):
        return None
    inner = call.args[0]
    if not isinstance(inner.func, ast.Name) or inner.keywords:
        return None
    keep = [s for s in tree.body if isinstance(s, (ast.FunctionDef, ast.Import, ast.ImportFrom))]
    if not any(isinstance(s, ast.FunctionDef) for s in keep):
        return None
    if inner.func.id not in {s.name for s in keep if isinstance(s, ast.FunctionDef)}:
        return None
    prog = ast.unparse(ast.Module(body=keep, type_ignores=[]))
    args = ", ".join(ast.unparse(a) for a in inner.args)
    return prog, inner.func.id, args


def parse_completion(text: str, constraint: dict, seed: int, which: str = "first") -> tuple[dict | None, str]:
    """(candidate record, "") or (None, reason). The record has the builder's schema."""
    code = extract_code(text, which)
    if code is None:
        return None, "no python block"
    parts = split_program(code)
    if parts is None:
        return None, "no single print(entry(args)) call"
    prog, entry, args = parts
    # ast.unparse drops comments, so the no-comment rule is checked on the raw block.
    violations = checker.check(prog, entry, constraint)
    if not checker.no_comments(code):
        violations.append("comments are not allowed")
    if violations:
        return None, "; ".join(violations)
    cid = hashlib.sha256(f"llm|{constraint['group']}|{constraint['method']}|{constraint['level']}|{seed}|{prog}".encode()).hexdigest()[:16]
    cons = dict(constraint, entry=entry)
    return {"id": cid, "code": prog, "entry": entry, "inputs": [args], "level": constraint["level"],
            "group": constraint["group"], "method": constraint["method"], "constraint": cons,
            "seed": seed}, ""


def synthesize_llm(cells: Sequence[Cell], seeds: Sequence[int], gen: Generator, which: str = "first",
                   mutate: bool = False) -> tuple[list[dict], dict[str, int]]:
    """Generate (and optionally mutate) one program per (cell, seed); returns candidates that
    pass extraction and the constraint check, plus counts of rejection reasons."""
    prompts, cons = [], []
    for cell, seed in zip(cells, seeds):
        msgs, c = generation_prompt(cell, seed)
        prompts.append(msgs)
        cons.append((c, seed))
    outs = gen.generate(prompts, GEN_SAMPLING)
    kept, reasons = [], {}
    for text, (c, seed) in zip(outs, cons):
        cand, why = parse_completion(text, c, seed, which)
        if cand is None:
            reasons[why.split(";")[0]] = reasons.get(why.split(";")[0], 0) + 1
        else:
            kept.append(cand)
    if mutate and kept:
        full = [f"{c['code']}\n\nprint({c['entry']}({c['inputs'][0]}))" for c in kept]
        mouts = gen.generate([mutation_prompt(p, c["seed"]) for p, c in zip(full, kept)], MUTATE_SAMPLING)
        for text, c in zip(mouts, kept):
            m, why = parse_completion(text, c["constraint"], c["seed"], which)
            if m is None:
                reasons["mutation: " + why.split(";")[0]] = reasons.get("mutation: " + why.split(";")[0], 0) + 1
            elif m["entry"] == c["entry"]:
                c["inputs"].append(m["inputs"][0])
    return kept, reasons
