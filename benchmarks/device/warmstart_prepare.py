"""CPU side of the demo's warm start (docs/TRAINING.md §6b): a synth directory -> DIR/ with
    convs.jsonl.gz one SFT conversation per question (prompt + "f(args) returns value." rationale,
                   as the demo's SFT writes them), the demo's curriculum applied (short arguments)
    tokenizer/     a byte-level BPE trained on those questions (the demo's recipe)
    programs.txt   the program_hash of every program in the synth dir (train and held-out), so
                   a demo started from this policy holds none of them out
    prepare.json   counts

    execverify synth --config configs/data/small.yaml --out SYNTH --format jsonl \
        --set total_programs=8000 --set programs_per_cell=8 --set seed=1000 ... (see TRAINING §6b)
    python benchmarks/device/warmstart_prepare.py --synth SYNTH --out .warm
Then `benchmarks/device/warmstart.py` trains the policy (on a GPU, or slowly on a CPU).
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--synth", required=True, help="an `execverify synth` output directory")
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-args-chars", type=int, default=40, help="the demo's curriculum (configs/demo_cpu.yaml)")
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args(argv)

    from execverify_jax.data.sandbox import SandboxPool
    from execverify_jax.data.tokenizer_train import train_bpe
    from execverify_jax.rl.apps.demo import WARM_PROGRAMS, program_hash, write_tokenizer_corpus
    from execverify_jax.rl.builders import all_questions
    from execverify_jax.rl.sft.rationales import build_examples

    t0 = time.perf_counter()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    qs, held = all_questions(a.synth, "train"), all_questions(a.synth, "heldout")
    hashes = sorted({program_hash(q["answer"]["program"]["code"]) for q in qs + held})
    (out / WARM_PROGRAMS).write_text("\n".join(hashes) + "\n")
    short = [q for q in qs if q["kind"] in ("oi", "io_mixed") and len(q["answer"]["program"]["args"]) <= a.max_args_chars]
    with SandboxPool(num_workers=a.workers) as pool:
        convs, counts = build_examples(short, pool, max_steps=0)
    with gzip.open(out / "convs.jsonl.gz", "wt", encoding="utf-8") as f:  # ~10x smaller to carry
        for c in convs:
            f.write(json.dumps({"messages": c}) + "\n")
    train_bpe([write_tokenizer_corpus(short, out / "tokenizer_corpus.txt")], out / "tokenizer", a.vocab)
    (out / "tokenizer_corpus.txt").unlink()
    info = {"synth": str(a.synth), "programs": len(hashes), "questions": len(qs), "curriculum_questions": len(short),
            "by_kind": {k: sum(q["kind"] == k for q in short) for k in ("oi", "io_mixed")},
            "examples": counts, "max_args_chars": a.max_args_chars, "vocab": a.vocab,
            "wall_s": round(time.perf_counter() - t0, 1)}
    (out / "prepare.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
