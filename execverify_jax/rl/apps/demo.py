"""`execverify demo`: the whole method end to end on a CPU, with nothing downloaded.

    synth programs -> questions -> train a BPE tokenizer -> tiny Qwen2-shaped policy
    -> SFT on traced chains of execution -> held-out eval -> GRPO stage I -> held-out eval
    -> export to Hugging Face safetensors, reload with transformers, compare logits
    -> DIR/report.md (numbers + reward curve PNG)

Each phase writes under DIR; a re-run after an interruption continues: synthesis and the
tokenizer are skipped when their outputs exist, a finished SFT run's policy is loaded instead of
retrained (DIR/sft/sft_summary.json is written last), GRPO resumes from its checkpoints, and the
two held-out evaluations and the export (cheap) run again. A re-run with changed SFT settings
therefore needs a fresh DIR (or DIR/sft removed).
Config: configs/demo_cpu_warm.yaml (the default: from a shipped warm-start policy, docs/TRAINING.md
§6b) or configs/demo_cpu.yaml (from scratch); `DemoConfig`, `--set` overrides, e.g. `--set programs=200`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from execverify_jax.rl.run_config import TrainConfig


WARM_PROGRAMS = "programs.txt"  # in a warm-start dir: one program_hash per line


@dataclass(frozen=True)
class EvalSection:
    """Held-out evaluation: how many questions of each layout, greedy decoding."""

    oi: int = 64
    io_mixed: int = 8
    max_new_tokens: int = 160
    batch_size: int = 16
    sampled_n: int = 4  # also evaluate n samples per question at T = 1 (0: greedy only)


@dataclass(frozen=True)
class DemoConfig:
    """The demo's knobs; `train` is the TrainConfig used for SFT and GRPO."""

    seed: int = 0
    data_config: str = "configs/data/small.yaml"
    programs: int = 1000
    heldout_fraction: float = 0.1
    synth: dict[str, Any] = field(default_factory=dict)  # extra DataConfig overrides
    tokenizer_vocab: int = 2048
    sft_layouts: tuple[str, ...] = ("oi", "io_mixed")
    sft_max_io_mixed: int = 200  # io_mixed prompts are ~8x longer than oi ones on CPU
    rl_layouts: tuple[str, ...] = ("oi",)
    # Share of the training programs whose questions GRPO trains on; SFT gets the others, so SFT
    # prompts, GRPO prompts and held-out programs are disjoint (0: GRPO reuses the SFT programs).
    rl_program_fraction: float = 0.0
    # Questions whose chat-templated prompt is longer than this many tokens are left out
    # (SFT, GRPO and eval alike); null keeps everything.
    max_prompt_tokens: int | None = None
    # CPU curriculum: only questions whose call arguments are at most this many characters
    # (SFT, GRPO and the held-out eval alike); null keeps everything.
    max_args_chars: int | None = None
    eval: EvalSection = field(default_factory=EvalSection)
    train: TrainConfig = field(default_factory=TrainConfig)


def _log(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _questions(data_dir: Path, split: str) -> list[dict]:
    from execverify_jax.rl.builders import all_questions
    return all_questions(str(data_dir), split)


def run_demo(cfg: DemoConfig, out: str | Path, repo_root: str | Path = ".") -> dict[str, Any]:
    """Runs every phase; returns the report numbers (also in DIR/report.json)."""
    import jax
    import numpy as np

    from execverify_jax import config_loader as config_lib
    from execverify_jax.data import pipeline
    from execverify_jax.data.sandbox import SandboxPool
    from execverify_jax.data.tokenizer import Tokenizer
    from execverify_jax.data.tokenizer_train import train_bpe
    from execverify_jax.model.generation import make_generator
    from execverify_jax.rewards.scorer import PRELOAD, Scorer
    from execverify_jax.rl.apps.evaluate import evaluate, summarize
    from execverify_jax.rl.grpo.trainer import GRPOTrainer
    from execverify_jax.rl.apps.plot import plot_run
    from execverify_jax.rl.sft.rationales import build_examples
    from execverify_jax.rl.sft.trainer import run_sft
    from execverify_jax.rl.grpo.tasks import QuestionTask
    from execverify_jax.rl.apps.demo_report import render_report, training_curve

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    report: dict[str, Any] = {"config": config_lib.to_dict(cfg)}
    t_all = time.perf_counter()

    # 1. synthesize ------------------------------------------------------------------------
    t0 = time.perf_counter()
    data_dir = out / "data"
    dcfg = synth_config(cfg, repo_root)
    _log(f"synthesizing {cfg.programs} programs -> {data_dir}")
    pipeline.run_synth(dcfg, data_dir, progress=cfg.train.progress)
    stats = json.loads((data_dir / "stats.json").read_text())
    report["data"] = {k: stats[k] for k in ("programs", "questions", "programs_by_split", "questions_by_kind",
                                            "questions_by_split", "outputs") if k in stats}
    timings["synth"] = time.perf_counter() - t0
    train_q = _questions(data_dir, "train")
    held_q = _questions(data_dir, "heldout")
    if cfg.max_args_chars is not None:
        train_q, held_q = short_args(cfg, train_q), short_args(cfg, held_q)
        report["curriculum"] = {"max_args_chars": cfg.max_args_chars, "train_questions": len(train_q),
                                "heldout_questions": len(held_q)}

    # 2. tokenizer ---------------------------------------------------------------------------
    t0 = time.perf_counter()
    tok_dir = out / "tokenizer"
    init = cfg.train.model.init
    if init is not None and not Path(init).is_absolute() and not Path(init).exists():
        init = str(Path(repo_root) / init)  # a repository path (configs/demo_cpu_warm.yaml's)
        cfg = dataclasses.replace(cfg, train=cfg.train.replace(model=dataclasses.replace(cfg.train.model, init=init)))
    if init is not None:
        # A warm start (docs/TRAINING.md §6b) brings its own tokenizer, and the programs it was
        # trained on leave every split here: GRPO prompts and held-out programs stay unseen.
        tok_dir = Path(init)
        seen = warm_start_programs(tok_dir)
        n_train, n_held = len(train_q), len(held_q)
        train_q, held_q = drop_seen_programs(train_q, seen), drop_seen_programs(held_q, seen)
        report["warm_start"] = {"init": str(Path(init).resolve()), "programs_seen": len(seen),
                                "train_questions_dropped": n_train - len(train_q),
                                "heldout_questions_dropped": n_held - len(held_q)}
    elif not (tok_dir / "tokenizer.json").is_file():
        text = write_tokenizer_corpus(train_q, out / "tokenizer_corpus.txt")
        train_bpe([text], tok_dir, cfg.tokenizer_vocab)
    tok = Tokenizer(tok_dir)
    timings["tokenizer"] = time.perf_counter() - t0
    _log(f"tokenizer: {tok.vocab_size} tokens")

    tcfg = cfg.train.replace(seed=cfg.seed)
    train_q, held_q = fitting_prompts(cfg, tok, train_q), fitting_prompts(cfg, tok, held_q)
    sft_pool, rl_pool = split_programs(train_q, cfg.rl_program_fraction, cfg.seed)
    report["splits"] = {"max_prompt_tokens": cfg.max_prompt_tokens, "rl_program_fraction": cfg.rl_program_fraction,
                        "sft_programs": len({q["program_id"] for q in sft_pool}),
                        "rl_programs": len({q["program_id"] for q in rl_pool}),
                        "heldout_programs": len({q["program_id"] for q in held_q})}

    # 3. SFT ---------------------------------------------------------------------------------
    t0 = time.perf_counter()
    sft_dir = out / "sft"
    sft = _finished_sft(sft_dir, tcfg)
    if sft is None:
        rng = np.random.default_rng(cfg.seed)
        sft_q = [q for q in sft_pool if q["kind"] in cfg.sft_layouts]
        io = [q for q in sft_q if q["kind"] == "io_mixed"]
        if len(io) > cfg.sft_max_io_mixed:
            keep_io = {id(q) for q in rng.permutation(np.array(io, dtype=object))[: cfg.sft_max_io_mixed]}
            sft_q = [q for q in sft_q if q["kind"] != "io_mixed" or id(q) in keep_io]
        with SandboxPool(num_workers=2) as pool:
            convs, counts = build_examples(sft_q, pool, max_steps=tcfg.sft.rationale_max_steps)
        _log(f"SFT on {len(convs)} traced rationales ({counts})")
        sft = run_sft(tcfg, sft_dir, convs, tok)
    else:  # a re-run: neither the rationales are traced again nor the policy retrained
        _log(f"SFT already finished in {sft_dir}: its policy is loaded, not retrained")
    params, graphdef, model_cfg = sft["params"], sft["graphdef"], sft["model_cfg"]
    report["sft"] = {k: sft[k] for k in ("examples", "dropped_examples", "steps", "wall_s")}
    report["sft"]["final"] = {k: round(v, 4) for k, v in sft["last"].items()}
    report["model"] = {**model_cfg.to_json_dict(), "num_params": model_cfg.num_params()}
    timings["sft"] = time.perf_counter() - t0

    # 4. held-out eval of the SFT policy ------------------------------------------------------
    ev = cfg.eval
    eval_recs = [q for q in held_q if q["kind"] == "oi"][: ev.oi] + [q for q in held_q if q["kind"] == "io_mixed"][: ev.io_mixed]
    # The rollouts' generator (train.rollout.engine and its knobs) for the held-out eval too.
    sampler = make_generator(model_cfg, graphdef, tcfg.rollout, buckets=tuple(tcfg.data.buckets) + (4096,),
                             pad_id=tok.pad_id)

    def run_eval(p: Any, name: str) -> dict:
        from execverify_jax.model.strategies import Temperature
        t = time.perf_counter()
        with SandboxPool(num_workers=2, preload=PRELOAD) as pool:
            scorer = Scorer(pool, tcfg.reward)
            m, rows = evaluate(p, sampler, tok, scorer, eval_recs,
                               max_new_tokens=ev.max_new_tokens, batch_size=ev.batch_size)
            res = summarize(m)
            if ev.sampled_n > 0:
                ms, srows = evaluate(p, sampler, tok, scorer, eval_recs, max_new_tokens=ev.max_new_tokens,
                                     batch_size=ev.batch_size, strategy=Temperature(1.0), n=ev.sampled_n,
                                     seed=cfg.seed + 7)
                res.update({f"sampled/{k}": v for k, v in summarize(ms).items()})
                rows += [dict(r, sampled=True) for r in srows]
        with open(out / f"eval_{name}.jsonl", "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        timings[f"eval_{name}"] = time.perf_counter() - t
        _log(f"held-out eval ({name}): {res}")
        return res

    report["eval_sft"] = run_eval(params, "sft")

    # 5. GRPO stage I ----------------------------------------------------------------------------
    t0 = time.perf_counter()
    rl_q = [q for q in rl_pool if q["kind"] in cfg.rl_layouts]
    task = QuestionTask(rl_q, tok, tcfg.reward, workers=tcfg.sandbox_workers)
    trainer = GRPOTrainer(tcfg, out / "grpo", task=task, params=params, model_cfg=model_cfg)
    try:
        summary = trainer.train()
    finally:
        trainer.close()
    rl_params = trainer.state.params
    timings["grpo"] = time.perf_counter() - t0
    report["grpo"] = {"rl_steps": summary["rl_steps"], "optimizer_steps": int(trainer.state.step),
                      "prompts": len(rl_q), "layouts": list(cfg.rl_layouts),
                      "group_size": tcfg.grpo.group_size, "prompts_per_step": tcfg.grpo.prompts_per_step}
    report["eval_grpo"] = run_eval(rl_params, "grpo")
    report["gain"] = {k: round(report["eval_grpo"][k] - v, 4) for k, v in report["eval_sft"].items()
                      if "acc/" in k and k in report["eval_grpo"]}
    report["grpo_curve"] = training_curve(out / "grpo")

    # 6. export to HF and reload with transformers ---------------------------------------------
    t0 = time.perf_counter()
    report["hf_export"] = export_and_check(model_cfg, graphdef, rl_params, tok, out / "hf", tok_dir)
    timings["export"] = time.perf_counter() - t0

    # 7. plots + report ------------------------------------------------------------------------
    pngs = plot_run(out / "grpo", out / "plots")
    pngs += plot_run(sft_dir, out / "plots_sft")
    timings["total"] = time.perf_counter() - t_all
    report["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    report["devices"] = [str(d) for d in jax.devices()][:2]
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(render_report(report, out, pngs))
    _log(f"done in {timings['total']:.0f}s: {out / 'report.md'}")
    return report


def synth_config(cfg: DemoConfig, repo_root: str | Path = ".", programs: int | None = None,
                 seed: int | None = None) -> Any:
    """The demo's DataConfig: cfg.data_config with its program count, seed, split and `synth`
    overrides (`programs` / `seed` replace cfg's, e.g. for fresh evaluation programs)."""
    from execverify_jax.data import pipeline
    path = Path(cfg.data_config)
    if not path.is_absolute():
        path = Path(repo_root) / path
    overrides = [f"total_programs={cfg.programs if programs is None else programs}",
                 f"seed={cfg.seed if seed is None else seed}",
                 f"split.heldout_fraction={cfg.heldout_fraction}", "workers=2"]
    overrides += [f"{k}={json.dumps(v)}" for k, v in cfg.synth.items()]
    return pipeline.load_config(path, overrides)


def short_args(cfg: DemoConfig, questions: list[dict]) -> list[dict]:
    """The CPU curriculum: questions whose call arguments have at most cfg.max_args_chars characters."""
    if cfg.max_args_chars is None:
        return questions
    return [q for q in questions if len(q["answer"]["program"]["args"]) <= cfg.max_args_chars]


def fitting_prompts(cfg: DemoConfig, tok: Any, questions: list[dict]) -> list[dict]:
    """The questions whose chat-templated prompt has at most cfg.max_prompt_tokens tokens."""
    if cfg.max_prompt_tokens is None:
        return questions
    return [q for q in questions if len(tok.apply_chat(q["messages"])) <= cfg.max_prompt_tokens]


def program_hash(code: str) -> str:
    """A program's identity across synthesis runs (ids depend on the run's seed, code does not)."""
    return hashlib.sha256(code.strip().encode()).hexdigest()[:16]


def warm_start_programs(init_dir: Path) -> set[str]:
    """`program_hash`es of the programs a warm-start policy was trained on (its programs.txt)."""
    f = Path(init_dir) / WARM_PROGRAMS
    if not f.is_file():
        raise FileNotFoundError(f"train.model.init={str(init_dir)!r}: a demo warm start needs {WARM_PROGRAMS} "
                                "(the hashes of the programs it was trained on, so none is held out here)")
    return {line.strip() for line in f.read_text().splitlines() if line.strip()}


def drop_seen_programs(questions: list[dict], seen: set[str]) -> list[dict]:
    """The questions whose program (by `program_hash`) is not in `seen`."""
    return [q for q in questions if program_hash(q["answer"]["program"]["code"]) not in seen]


def write_tokenizer_corpus(questions: list[dict], path: Path) -> Path:
    """The BPE's training text: every prompt and reference answer, plus the answer format's words."""
    from execverify_jax.rl.sft.rationales import reference_answer
    with open(path, "w", encoding="utf-8") as f:
        for q in questions:
            for m in q["messages"]:
                f.write(m["content"] + "\n")
            f.write(reference_answer(q) + "\n")
        f.write("<reasoning>\n</reasoning>\n<answer>\n</answer>\nCall Step line returns ->\n")
    return path


def split_programs(questions: list[dict], rl_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(SFT questions, GRPO questions): a seeded share `rl_fraction` of the programs goes to GRPO,
    the rest to SFT, so no program is in both (0: both get every question, as before)."""
    if not 0.0 <= rl_fraction < 1.0:
        raise ValueError(f"rl_program_fraction={rl_fraction!r}: must be in [0, 1)")
    if rl_fraction == 0.0:
        return questions, questions
    import hashlib

    def to_rl(pid: str) -> bool:
        h = int.from_bytes(hashlib.sha256(f"{seed}|rl|{pid}".encode()).digest()[:8], "little")
        return h / float(1 << 64) < rl_fraction

    rl = [q for q in questions if to_rl(q["program_id"])]
    return [q for q in questions if not to_rl(q["program_id"])], rl


def _finished_sft(sft_dir: Path, tcfg: TrainConfig) -> dict[str, Any] | None:
    """The summary and policy of an SFT run that completed in `sft_dir` (run_sft writes
    sft_summary.json after the model), so a re-run of the demo continues instead of retraining."""
    summary_file, model_dir = sft_dir / "sft_summary.json", sft_dir / "model"
    if not (summary_file.is_file() and model_dir.is_dir()):
        return None
    from execverify_jax.model import sharding as shd
    from execverify_jax.model.checkpoint import restore_params

    model_cfg, graphdef, params = restore_params(model_dir, shd.make_mesh(tcfg.mesh), shd.TRAIN_RULES)
    return {**json.loads(summary_file.read_text()), "params": params, "graphdef": graphdef, "model_cfg": model_cfg}


def export_and_check(model_cfg: Any, graphdef: Any, params: Any, tok: Any, hf_dir: Path, tok_dir: Path) -> dict:
    """Saves the policy as a HF directory, reloads it with transformers (torch) and compares the
    logits of one prompt with ours."""
    import numpy as np
    import torch
    from flax import nnx
    from transformers import AutoModelForCausalLM

    from execverify_jax.model.hf_export import save_hf

    save_hf(model_cfg, params, hf_dir, dtype="float32", tokenizer_dir=tok_dir)
    hf = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32)
    hf.eval()
    ids = tok.apply_chat([{"role": "user", "content": "assert f(????) == 3"}])
    with torch.no_grad():
        theirs = hf(torch.tensor([ids])).logits[0].numpy()
    model = nnx.merge(graphdef, params)
    ours = np.asarray(model(np.asarray([ids], np.int32)))[0]
    diff = float(np.max(np.abs(ours - theirs)))
    return {"dir": str(hf_dir), "architecture": hf.config.architectures, "max_abs_logit_diff": diff,
            "argmax_agree": float(np.mean(ours.argmax(-1) == theirs.argmax(-1)))}
