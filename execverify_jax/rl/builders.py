"""Builders shared by SFT, GRPO and the commands: model config, initial params, task, loader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from execverify_jax.data.loader import LoaderConfig
from execverify_jax.model import sharding as shd
from execverify_jax.model.config import ModelConfig
from execverify_jax.rl.run_config import TrainConfig


def build_model_config(cfg: TrainConfig, vocab_size: int | None = None) -> tuple[ModelConfig, str | None]:
    """(ModelConfig, init path or None). A fresh preset gets the tokenizer's vocab size if unset."""
    from execverify_jax.model.checkpoint import is_checkpoint, load_config
    from execverify_jax.model.config import load_hf_config

    numerics = {k: v for k, v in (("dtype", cfg.model.dtype), ("remat", cfg.model.remat)) if v is not None}
    if cfg.model.init:
        init = cfg.model.init
        mcfg = load_config(init) if is_checkpoint(init) else load_hf_config(init)
        return mcfg.replace(**numerics), init
    kw = dict(cfg.model.overrides)
    if vocab_size is not None and "vocab_size" not in kw:
        kw["vocab_size"] = vocab_size
    return ModelConfig.preset(cfg.model.preset, **kw).replace(**numerics), None


def load_init_params(init: str, mcfg: ModelConfig, mesh: Any) -> Any:
    """Parameters of a checkpoint / HF dir on their shards (fp32 master copy)."""
    from execverify_jax.model.checkpoint import load_any
    overrides = {"param_dtype": mcfg.param_dtype, "dtype": mcfg.dtype, "remat": mcfg.remat}
    _, _, params = load_any(init, mesh, shd.TRAIN_RULES, **overrides)
    return params


def build_task(cfg: TrainConfig, tokenizer: Any = None) -> Any:
    """The task of `cfg.data` (see rl/grpo/tasks.py)."""
    from execverify_jax.rl.grpo import tasks

    d = cfg.data
    if d.kind == "toy":
        return tasks.ToyTask(**d.toy)
    if tokenizer is None:
        from execverify_jax.data.tokenizer import Tokenizer
        tok_path = d.tokenizer or cfg.model.init
        if tok_path is None:
            raise ValueError("data.tokenizer: a tokenizer directory is needed (or model.init pointing at one)")
        tokenizer = Tokenizer(tok_path)
    if d.path is None:
        raise ValueError("data.path: required for kind questions/codegen")
    source: Any = d.path
    if d.kind == "codegen" and Path(d.path).is_dir():
        source = codegen_from_synth(d.path, d.split)
    elif d.layouts is not None:
        recs = (tasks.read_question_jsonl(d.path) if not Path(d.path).is_dir()
                else all_questions(d.path, d.split))
        source = [r for r in recs if r.get("kind") in d.layouts]
    return tasks.QuestionTask(source, tokenizer, cfg.reward, split=d.split, workers=cfg.sandbox_workers)


def all_questions(data_dir: str, split: str) -> list[dict]:
    """Every question record of a synth directory's split: its ArrayRecord shards, or the
    questions.jsonl of a `--format jsonl` run (records carry their `split`)."""
    from execverify_jax.data import records as rec_lib
    from execverify_jax.data.loader import question_files
    manifest_path = Path(data_dir) / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    files = manifest.get("files", {})
    if manifest.get("status") == "complete" and "arrayrecord" not in files and "questions" in files.get("jsonl", {}):
        from execverify_jax.jsonl import read_jsonl
        return [q for _, q in read_jsonl(Path(data_dir) / files["jsonl"]["questions"]) if q.get("split") == split]
    out = []
    for f in question_files(data_dir, split):
        out.extend(rec_lib.read_arrayrecord(f, "question"))
    return out


def codegen_from_synth(data_dir: str, split: str = "train") -> list[dict]:
    """Code-generation problems built from a synth dir's programs (stage II without Eurus data)."""
    from execverify_jax.data import records as rec_lib
    from execverify_jax.rl.grpo.tasks import program_to_codegen
    manifest = json.loads((Path(data_dir) / "manifest.json").read_text())
    files = manifest["files"]["arrayrecord"]["programs"][split]
    out = []
    for f in files:
        for prog in rec_lib.read_arrayrecord(Path(data_dir) / f, "program"):
            rec = program_to_codegen(prog)
            if rec is not None:
                out.append(rec)
    if not out:
        raise ValueError(f"{data_dir}: no program could be turned into a code-generation problem")
    return out


def loader_config(cfg: TrainConfig, process_count: int) -> LoaderConfig:
    """Per-process loader settings (each process reads prompts_per_step / process_count)."""
    if cfg.grpo.prompts_per_step % process_count:
        raise ValueError(f"grpo.prompts_per_step={cfg.grpo.prompts_per_step} is not divisible by the "
                         f"{process_count} processes")
    return LoaderConfig(batch_size=cfg.grpo.prompts_per_step // process_count, buckets=tuple(cfg.data.buckets),
                        pad_side="left", seed=cfg.seed, shuffle=cfg.data.shuffle,
                        num_epochs=cfg.data.num_epochs, worker_count=cfg.data.worker_count, split=cfg.data.split)
