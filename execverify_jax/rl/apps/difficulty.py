"""Difficulty filter: keep questions by the policy's own pass rate (reference §2.6).

For every question, sample n completions (paper: n = 10, T = 1) and count the ones that solve
the underlying task, judged by the reward parser (rewards/), not the paper's substring test (§9:
a response that merely mentions the value passed):
  io_mixed / oi   output prediction of the question's call, asked with the CRUXEval-O prompt the
                  paper's filter used ("Fill in the missing assertion", `assert f(args) == ????`)
                  and graded as an io_mixed assertion without sub-questions (AST-checked call,
                  literal right side, Python ==)
                  (`prompt="question"` asks the question's own prompt and grades its output part)
  codegen         the record's own prompt; solved = every test passes
Keep items with min_pass_rate <= pass rate <= max_pass_rate (default 0 .. 0.3: pass_cnt <= 3
of 10, never-solved items kept, as the paper); always-solved items are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from execverify_jax.config_loader import ConfigError, check_choice, check_int
from execverify_jax.data import prompts
from execverify_jax.shared_config import MeshConfig, SamplingConfig


@dataclass(frozen=True)
class DifficultyConfig(SamplingConfig):
    """n samples per item (the shared sampling knobs: T, top_p, top_k, max_new_tokens); keep pass
    rates in [min, max]."""

    max_new_tokens: int = 4096
    temperature: float = 1.0
    top_p: float | None = 1.0  # the paper's vLLM run used 0.9
    n: int = 10
    max_pass_rate: float = 0.3
    min_pass_rate: float = 0.0
    prompt: str = "cruxeval"  # or "question"
    batch_prompts: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("n", self.n, 1)
        if not 0 <= self.min_pass_rate <= self.max_pass_rate <= 1:
            raise ConfigError(f"pass-rate bounds must satisfy 0 <= min ({self.min_pass_rate}) <= max "
                              f"({self.max_pass_rate}) <= 1", "min_pass_rate")
        check_choice("prompt", self.prompt, ("cruxeval", "question"))


@dataclass(frozen=True)
class FilterConfig:
    """`execverify filter-difficulty`: what to probe, where to write, and the `difficulty` section."""

    model: str  # Orbax checkpoint dir (with tokenizer files) or HF dir
    data: str  # synth output dir or question JSONL
    out: str  # output JSONL of kept questions (+ OUT.stats.json)
    tokenizer: str | None = None  # default: model
    split: str = "train"  # split of a synth dir
    limit: int | None = None  # only the first N questions
    workers: int | None = None  # sandbox workers
    mesh: MeshConfig = field(default_factory=MeshConfig)
    progress: bool = True
    difficulty: DifficultyConfig = field(default_factory=DifficultyConfig)


def probe(record: dict, how: str) -> tuple[list[dict], dict]:
    """(messages, answer record to grade) for one question."""
    ans = record["answer"]
    if ans["layout"] == "codegen":
        return record["messages"], ans
    prog = ans["program"]
    graded = {"layout": "io_mixed", "program": prog, "output": ans["output"], "subquestions": []}
    if how == "question" and ans["layout"] == "io_mixed":
        # Only the assertion line is graded; the sub-question lines are ignored.
        graded = dict(ans, subquestions=[])
        return record["messages"], graded
    return prompts.cruxeval_messages(prog["code"], prog["entry"], args=prog["args"]), graded


def solved(result: Any) -> bool:
    """Whether one graded completion solves its item."""
    if result.kind == "codegen":
        return float(result.details.get("pass_rate", 0.0)) == 1.0
    return bool(result.details.get("io"))


def pass_rates(params: Any, sampler: Any, tokenizer: Any, scorer: Any, records: Sequence[dict],
               cfg: DifficultyConfig, progress: bool = True) -> Iterator[tuple[dict, float]]:
    """Yields (record, pass rate) in input order, batch by batch."""
    from tqdm import tqdm

    from execverify_jax.model.strategies import make_strategy

    strategy = make_strategy(cfg.greedy, cfg.temperature, cfg.top_k, cfg.top_p)
    stop = tuple(tokenizer.stop_ids)
    bar = tqdm(total=len(records), desc="difficulty", disable=not progress, dynamic_ncols=True)
    for start in range(0, len(records), cfg.batch_prompts):
        chunk = list(records[start:start + cfg.batch_prompts])
        probes = [probe(r, cfg.prompt) for r in chunk]
        ids = [tokenizer.apply_chat(m) for m, _ in probes]
        out = sampler.generate(params, ids, cfg.max_new_tokens, strategy, stop_ids=stop, n=cfg.n,
                               seed=cfg.seed * 1_000_003 + start)
        texts = [tokenizer.decode(out.tokens_BC[i, : out.lengths_B[i]].tolist()) for i in range(len(out.lengths_B))]
        graded = [probes[i // cfg.n][1] for i in range(len(texts))]
        futs = scorer.submit_batch(graded, texts)
        ok = np.asarray([solved(f.result()) for f in futs]).reshape(len(chunk), cfg.n)
        for r, row in zip(chunk, ok):
            yield r, float(row.mean())
        bar.update(len(chunk))
    bar.close()


def keep(rate: float, cfg: DifficultyConfig) -> bool:
    """The paper's rule with bounds: min <= rate <= max."""
    return cfg.min_pass_rate <= rate <= cfg.max_pass_rate
