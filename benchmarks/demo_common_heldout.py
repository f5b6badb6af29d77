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


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--label", default="")
    ap.add_argument("--skip-sft", action="store_true", help="only the GRPO policies (the SFT ones were scored)")
    ap.add_argument("--out", default=None)
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
    counts = {k: sum(q["kind"] == k for q in recs) for k in ("oi", "io_mixed")}
    print(f"[common] {len(recs)} held-out questions {counts} from {len(runs)} runs ({dropped} dropped: trained on)",
          flush=True)
    mesh = shd.make_mesh(cfg.train.mesh)
    tok = Tokenizer(runs[0] / "hf")
    res: dict = {"label": a.label, "runs": [str(r) for r in runs], "questions": counts, "dropped": dropped,
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
