"""The demo's SFT-only and SFT + GRPO policies of several runs (seeds), all on ONE held-out set:
the union of the runs' held-out questions (issue 15, item 2).

Each demo run evaluates its policies on its own held-out programs, so the spread of the SFT-only
accuracies across seeds mixes two things: how the policies differ, and how hard each seed's
held-out programs are. Scoring every run's policies on the same questions separates them (and the
union is ~3x larger, so one question moves an accuracy ~3x less). Questions whose program any of
the runs trained on (by code) are left out.

    python benchmarks/demo_common_heldout.py RUN0 RUN1 RUN2 [--label shipped] [--out results.json]

RUN is a finished `execverify demo --out RUN` directory: RUN/sft/model (the SFT-only policy) and
RUN/hf (the exported SFT + GRPO policy); the demo config is read from RUN/report.json. Greedy.

`--fresh-programs N` adds the questions of N programs synthesized for this comparison (the demo's
data settings, `--fresh-seed`, into `--fresh-dir`; an existing dir is reused) under the demo's
filters (argument length, prompt length; io_mixed and as many oi questions), leaving out every program a run
trained on, a warm start saw or the union already has. A few hundred held-out questions measure an
accuracy of ~0.07 to +-0.016 (one binomial standard deviation), as large as the seed spread being
compared; ~1,000 more questions halve that.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

KINDS = ("acc/io", "acc/oi", "acc/path", "acc/state", "acc/coverage", "acc/nil", "format_rate")


def heldout_records(run: Path) -> list[dict]:
    """The held-out questions RUN's own evaluation asked (eval_sft.jsonl's greedy rows)."""
    from execverify_jax.rl.builders import all_questions
    rows = [json.loads(line) for line in (run / "eval_sft.jsonl").read_text().splitlines()]
    asked = [r["question_id"] for r in rows if not r.get("sampled")]
    by_id = {q["id"]: q for q in all_questions(str(run / "data"), "heldout")}
    return [by_id[i] for i in asked]


def trained_programs(run: Path) -> set[str]:
    """program_hash of every training-split program of RUN (its SFT and GRPO programs)."""
    from execverify_jax.rl.apps.demo import program_hash
    from execverify_jax.rl.builders import all_questions
    return {program_hash(q["answer"]["program"]["code"]) for q in all_questions(str(run / "data"), "train")}


def kind_counts(qs: list[dict]) -> dict[str, int]:
    """How many oi and io_mixed questions `qs` holds."""
    return {k: sum(q["kind"] == k for q in qs) for k in ("oi", "io_mixed")}


def fresh_questions(cfg, tok, out_dir: Path, programs: int, seed: int, seen: set[str],
                    per_kind: int | None = None) -> list[dict]:
    """io_mixed and oi questions of `programs` newly synthesized programs (every split) that pass
    the demo's filters, minus those whose program is in `seen` or the warm start's programs.txt;
    at most `per_kind` of each kind."""
    from execverify_jax.data import pipeline
    from execverify_jax.rl.apps.demo import (drop_seen_programs, fitting_prompts, short_args, synth_config,
                                             warm_start_programs)
    from execverify_jax.rl.builders import all_questions
    if not (out_dir / "stats.json").is_file():
        pipeline.run_synth(synth_config(cfg, REPO, programs=programs, seed=seed), out_dir, progress=False)
    qs = [q for split in ("train", "heldout") for q in all_questions(str(out_dir), split)
          if q["kind"] in ("oi", "io_mixed")]
    if cfg.train.model.init is not None:
        seen = seen | warm_start_programs(Path(cfg.train.model.init))
    qs = fitting_prompts(cfg, tok, drop_seen_programs(short_args(cfg, qs), seen))
    # As many oi as io_mixed questions (like the demo's eval): long io_mixed prompts are the
    # ones the prompt-length filter drops, so oi would otherwise outnumber them ~3:1.
    io = [q for q in qs if q["kind"] == "io_mixed"][:per_kind]
    return io + [q for q in qs if q["kind"] == "oi"][: len(io)]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--label", default="")
    ap.add_argument("--skip-sft", action="store_true", help="only the GRPO policies (the SFT ones were scored)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--fresh-programs", type=int, default=0, help="programs synthesized for this comparison")
    ap.add_argument("--fresh-seed", type=int, default=100_000)
    ap.add_argument("--fresh-dir", default=None, help="where they are synthesized (default: next to --out)")
    ap.add_argument("--fresh-per-kind", type=int, default=None, help="at most this many fresh questions of each kind")
    a = ap.parse_args(argv)

    from execverify_jax import config_loader as config_lib
    from execverify_jax.data.sandbox import SandboxPool
    from execverify_jax.data.tokenizer import Tokenizer
    from execverify_jax.model import sharding as shd
    from execverify_jax.model.checkpoint import load_any
    from execverify_jax.model.generation import make_generator
    from execverify_jax.rewards.scorer import PRELOAD, Scorer
    from execverify_jax.rl.apps.demo import DemoConfig, program_hash
    from execverify_jax.rl.apps.evaluate import evaluate, summarize

    runs = [Path(r) for r in a.runs]
    reports = [json.loads((r / "report.json").read_text()) for r in runs]
    cfg = config_lib.from_dict(DemoConfig, reports[0]["config"])
    trained = set().union(*(trained_programs(r) for r in runs))
    recs, seen_ids, dropped = [], set(), 0
    for r in runs:
        for q in heldout_records(r):
            if program_hash(q["answer"]["program"]["code"]) in trained:
                dropped += 1
            elif q["id"] not in seen_ids:
                seen_ids.add(q["id"])
                recs.append(q)
    counts = kind_counts(recs)
    print(f"[common] {len(recs)} held-out questions {counts} from {len(runs)} runs ({dropped} dropped: trained on)",
          flush=True)
    tok = Tokenizer(runs[0] / "hf")
    fresh_counts = None
    if a.fresh_programs > 0:
        fresh_dir = Path(a.fresh_dir) if a.fresh_dir else Path(a.out or "common_heldout.json").with_suffix(".fresh")
        fresh = fresh_questions(cfg, tok, fresh_dir, a.fresh_programs, a.fresh_seed,
                                seen=trained | {program_hash(q["answer"]["program"]["code"]) for q in recs},
                                per_kind=a.fresh_per_kind)
        fresh_counts = kind_counts(fresh)
        print(f"[common] + {len(fresh)} questions {fresh_counts} of fresh programs ({fresh_dir})", flush=True)
        recs += fresh
        counts = kind_counts(recs)
    mesh = shd.make_mesh(cfg.train.mesh)
    res: dict = {"label": a.label, "runs": [str(r) for r in runs], "questions": counts, "dropped": dropped,
                 "fresh": fresh_counts and {"programs": a.fresh_programs, "seed": a.fresh_seed,
                                            "per_kind": a.fresh_per_kind, "questions": fresh_counts},
                 "policies": {}}
    t0 = time.perf_counter()
    with SandboxPool(num_workers=2, preload=PRELOAD) as pool:
        scorer = Scorer(pool, cfg.train.reward)
        for r in runs:
            for name, path in (("sft", r / "sft" / "model"), ("grpo", r / "hf")):
                if name == "sft" and a.skip_sft:
                    continue
                mcfg, graphdef, params = load_any(path, mesh, shd.TRAIN_RULES, dtype="float32")
                sampler = make_generator(mcfg, graphdef, cfg.train.rollout,
                                         buckets=tuple(cfg.train.data.buckets) + (4096,), pad_id=tok.pad_id)
                m, _ = evaluate(params, sampler, tok, scorer, recs, max_new_tokens=cfg.eval.max_new_tokens,
                                batch_size=cfg.eval.batch_size)
                res["policies"][f"{r.name}/{name}"] = summarize(m)
                print(f"[common] {r.name}/{name}: " + " ".join(f"{k} {m.get(k, float('nan')):.3f}" for k in KINDS),
                      flush=True)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    pol = res["policies"]
    if not a.skip_sft:
        gains = {k: [pol[f"{r.name}/grpo"].get(k, 0.0) - pol[f"{r.name}/sft"].get(k, 0.0) for r in runs] for k in KINDS}
        sft = {k: [pol[f"{r.name}/sft"].get(k, 0.0) for r in runs] for k in KINDS}
        res["gain"] = {k: [round(g, 4) for g in v] for k, v in gains.items()}
        res["mean_gain"] = {k: round(sum(v) / len(v), 4) for k, v in gains.items()}
        res["sft_spread"] = {k: round(max(v) - min(v), 4) for k, v in sft.items()}
        for k in KINDS:
            print(f"[common] {k:13s} gains {' '.join(f'{g:+.3f}' for g in gains[k])} mean {res['mean_gain'][k]:+.3f} "
                  f"SFT spread {res['sft_spread'][k]:.3f}", flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
