"""What the RL loop trains on: a prompt source (grain batches) plus a reward for completions.

A task provides
  dataset(batch_size, seed, num_epochs, process_index, process_count) -> grain IterDataset of
      padded prompt batches (data/loader.py: prompt_BP, prompt_len_B, record_index_B, ...)
  records(indices) -> the question records of a batch
  submit(records, completions) -> one Future per completion resolving to a RewardResult-like
      object (`reward`, `kind`, `format_ok`, `details`); called per generation chunk so that
      sandboxed scoring overlaps the next chunk's generation
  pad_id, stop_ids, decode(ids)
Tasks:
  QuestionTask  stage I (io_mixed / oi questions from `execverify synth`) and stage II
                (code generation records, e.g. converted from Eurus-2-RL-Data JSONL), scored by
                `rewards.batch.Scorer` on a `SandboxPool`.
  ToyTask       token-level toy (reward = share of completion tokens equal to a target id), for
                tests and benchmarks: no tokenizer, no sandbox.
"""

from __future__ import annotations

import ast
import json
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from execverify_jax.data import prompts
from execverify_jax.data.loader import LoaderConfig, build_dataset, lookup_questions, question_files
from execverify_jax.jsonl import read_jsonl


# ------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class ToyResult:
    """Same fields as rewards.result.RewardResult (the loop reads only these)."""

    reward: float
    kind: str = "toy"
    format_ok: bool = True
    reason: str = ""
    details: dict = field(default_factory=dict)


def _done(value: Any) -> Future:
    fut: Future = Future()
    fut.set_result(value)
    return fut


# ------------------------------------------------------------------------------------- toy
class ToyTokenizer:
    """Maps a record whose user message is space-separated ids to those ids (picklable)."""

    def __init__(self, vocab_size: int, pad_id: int = 0, stop_id: int = 1) -> None:
        self.vocab_size = vocab_size
        self.pad_id = pad_id
        self.stop_id = stop_id

    def apply_chat(self, messages: list[dict], add_generation_prompt: bool = True) -> list[int]:
        """The ids written in the last message."""
        return [int(t) if t.isdigit() else 2 for t in messages[-1]["content"].split()]


class ToyTask:
    """Prompts of random ids; reward = fraction of the C generated tokens equal to `target_id`
    (tokens after a stop id count as misses), so the maximum needs the whole budget."""

    kind = "toy"

    def __init__(self, vocab_size: int, num_prompts: int = 256, prompt_len: int = 8,
                 target_id: int = 5, max_new_tokens: int = 8, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.tokenizer = ToyTokenizer(vocab_size)
        self.target_id = target_id
        self.max_new_tokens = max_new_tokens
        self._records = [
            {"id": f"toy-{i}", "kind": "toy",
             "messages": [{"role": "user", "content": " ".join(str(int(t)) for t in rng.integers(2, vocab_size, prompt_len))}]}
            for i in range(num_prompts)]
        self.pad_id = 0
        self.stop_ids = (1,)

    def dataset(self, loader_cfg: LoaderConfig, process_index: int = 0, process_count: int = 1):
        """grain batches over the in-memory prompts."""
        return build_dataset(self._records, self.tokenizer, loader_cfg, process_index=process_index,
                             process_count=process_count)

    def records(self, indices: Sequence[int]) -> list[dict]:
        """Records by data-source index."""
        return [self._records[int(i)] for i in indices]

    def decode(self, ids: Sequence[int]) -> str:
        """Space-separated ids (for logs)."""
        return " ".join(str(int(i)) for i in ids)

    def submit(self, records: Sequence[dict], completions: Sequence[Sequence[int]]) -> list[Future]:
        """Already-resolved futures (pure reward)."""
        out = []
        for ids in completions:
            hits = sum(1 for t in ids if int(t) == self.target_id)
            out.append(_done(ToyResult(hits / self.max_new_tokens, details={"hits": hits})))
        return out

    def close(self) -> None:
        """Nothing to release."""


# ------------------------------------------------------------------------------------- questions
class QuestionTask:
    """Question records (stage I or II) with the chat template, scored in the sandbox pool.

    `source` is a dataset directory written by `execverify synth` (ArrayRecord files of
    `split`), a JSONL file of question records, or an in-memory list of records.
    """

    def __init__(self, source: str | Path | list[dict], tokenizer: Any, reward_cfg: Any = None,
                 *, split: str = "train", workers: int | None = None, pool: Any = None) -> None:
        from execverify_jax.rewards.scorer import PRELOAD, Scorer

        self.tokenizer = tokenizer
        self.split = split
        self._files: list[str] | None = None
        self._records: list[dict] | None = None
        if isinstance(source, list):
            self._records = source
        elif Path(source).is_dir():
            self._files = question_files(source, split)
        else:
            self._records = read_question_jsonl(source)
        self._own_pool = pool is None
        if pool is None:
            from execverify_jax.data.sandbox import SandboxPool
            pool = SandboxPool(num_workers=workers, preload=PRELOAD)
        self.pool = pool
        self.scorer = Scorer(pool, reward_cfg)
        self.pad_id = int(tokenizer.pad_id)
        self.stop_ids = tuple(int(s) for s in tokenizer.stop_ids)

    @property
    def source(self) -> list[str] | list[dict]:
        """ArrayRecord files or the in-memory records (what grain reads)."""
        return self._files if self._files is not None else self._records  # type: ignore[return-value]

    def dataset(self, loader_cfg: LoaderConfig, process_index: int = 0, process_count: int = 1):
        """grain batches of chat-templated prompts (over-long ones skipped and counted)."""
        return build_dataset(self.source, self.tokenizer, loader_cfg, process_index=process_index,
                             process_count=process_count)

    def records(self, indices: Sequence[int]) -> list[dict]:
        """The question records at these data-source indices."""
        if self._records is not None:
            return [self._records[int(i)] for i in indices]
        uniq = sorted(set(int(i) for i in indices))
        got = dict(zip(uniq, lookup_questions(self._files, uniq)))
        return [got[int(i)] for i in indices]

    def decode(self, ids: Sequence[int]) -> str:
        """Completion text (special tokens dropped)."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def submit(self, records: Sequence[dict], completions: Sequence[Sequence[int]]) -> list[Future]:
        """Decodes and queues scoring; returns at once (sandboxed layouts resolve later)."""
        texts = [self.decode(ids) for ids in completions]
        return self.scorer.submit_batch(list(records), texts)

    def close(self) -> None:
        """Shuts the sandbox pool down if this task created it."""
        if self._own_pool:
            self.pool.close()


def read_question_jsonl(path: str | Path) -> list[dict]:
    """Question records from a JSONL file; Eurus-2-RL-Data style rows are converted (codegen).

    Lines that are not JSON objects, and rows that convert to no record, are skipped and counted
    (each count is reported once)."""
    out: list[dict] = []
    bad = 0
    for n, row in read_jsonl(path):  # reports its own bad lines
        try:
            rec = row if "messages" in row and "answer" in row else eurus_to_record(row, n - 1)
        except (ValueError, KeyError, TypeError):
            rec = None
        if rec is None:
            bad += 1
            continue
        out.append(rec)
    if bad:
        print(f"{path}: skipped {bad} row(s) that are not question records")
    if not out:
        raise ValueError(f"{path}: no usable question records")
    return out


# ------------------------------------------------------------------------------------- stage II
stage2_messages = prompts.stage2_messages  # one prompt for training and evaluation


def eurus_to_record(row: dict, index: int) -> dict | None:
    """A codegen question record from an Eurus-2-RL-Data style row, or None if it has no tests.

    Accepted: `prompt` (a chat list, whose user message is the problem, or a string);
    tests in `reward_model.ground_truth` (a JSON string or dict with inputs/outputs and optional
    fn_name), or top-level `tests` / `input_output` + `fn_name`."""
    prompt = row["prompt"]
    if isinstance(prompt, list):
        users = [m["content"] for m in prompt if m.get("role") == "user"]
        problem = users[-1] if users else prompt[-1]["content"]
    else:
        problem = str(prompt)
    gt = (row.get("reward_model") or {}).get("ground_truth") or row.get("tests") or row.get("input_output")
    if isinstance(gt, str):
        gt = json.loads(gt)
    if not isinstance(gt, dict) or not gt.get("inputs"):
        return None
    fn_name = gt.get("fn_name") or row.get("fn_name")
    answer = {"layout": "codegen", "fn_name": fn_name,
              "tests": {"inputs": list(gt["inputs"]), "outputs": list(gt["outputs"])}}
    rid = str(row.get("id") or (row.get("extra_info") or {}).get("index", index))
    return {"id": f"codegen:{rid}", "program_id": rid, "kind": "codegen",
            "messages": stage2_messages(problem), "answer": answer}


def _json_args(args_src: str) -> list | None:
    """The argument list of `f(args_src)` as JSON-able values, or None if not plain literals."""
    try:
        value = ast.literal_eval(f"[{args_src}]")
        if json.loads(json.dumps(value)) != value:  # nested tuples / sets / non-str keys
            return None
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if any(isinstance(v, (tuple, set, bytes, complex)) for v in value):
        return None
    return value


def program_to_codegen(program: dict, num_examples: int = 2) -> dict | None:
    """A call-based code-generation problem from a synthesized program record.

    The statement names the function and shows `num_examples` input/output pairs; every input of
    the program is a test (the examples too, as in APPS). None when values are not JSON literals.
    """
    from execverify_jax.data import safe_codec

    inputs, outputs = [], []
    for args_src, out_enc in zip(program["inputs"], program["outputs"]):
        args = _json_args(args_src)
        if args is None:
            return None
        try:
            out = safe_codec.from_jsonable(out_enc if not isinstance(out_enc, str) else json.loads(out_enc))
            # Tests compare JSON values: nested tuples, sets or non-str dict keys would not survive
            # the round trip (a correct solution would then fail its own tests).
            if json.loads(json.dumps(out)) != out:
                return None
        except Exception:  # noqa: BLE001 - any non-JSON output disqualifies the problem
            return None
        if isinstance(out, (tuple, set, bytes, complex)) or type(out).__name__ == "Opaque":
            return None
        inputs.append(args)
        outputs.append(out)
    if not inputs:
        return None
    entry = program["entry"]
    lines = [f"Write a Python function `{entry}` that behaves as in these examples:"]
    for args, out in list(zip(program["inputs"], outputs))[:num_examples]:
        lines.append(f"    {entry}({args}) == {out!r}")
    return {"id": f"codegen:{program['id']}", "program_id": program["id"], "kind": "codegen",
            "messages": stage2_messages("\n".join(lines)),
            "answer": {"layout": "codegen", "fn_name": entry, "tests": {"inputs": inputs, "outputs": outputs}}}
