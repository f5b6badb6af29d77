#!/usr/bin/env bash
# CPU-side preparation for benchmarks/device/check.sh (run here, in the repository root, with the
# project's venv active), since the GPU machine may have no network and no z3:
#   .devdata/data       240 synthesized programs' questions (configs/data/small.yaml)
#   .devdata/tokenizer  a byte-level BPE (4,096) trained on them
#   .whl/               Python 3.12 wheels the machine lacks (grain, array_record, portpicker,
#                       tensorboardX); .whl/fallback/ the project's flax
# Both folders are git-ignored (.gitignore); pass them to the device run as carried paths.
set -euo pipefail
if [ ! -f .devdata/data/questions.jsonl ]; then
  execverify synth --set total_programs=240 --set decontam.enabled=false --out .devdata/data --format both --no-progress
fi
if [ ! -f .devdata/tokenizer/tokenizer.json ]; then
  python - <<'PY'
import json
from pathlib import Path
from execverify_jax.data.tokenizer_train import train_bpe
from execverify_jax.rl.sft.rationales import reference_answer
corpus = Path(".devdata/corpus.txt")
with open(corpus, "w", encoding="utf-8") as f:
    for line in open(".devdata/data/questions.jsonl"):
        q = json.loads(line)
        for m in q["messages"]:
            f.write(m["content"] + "\n")
        f.write(reference_answer(q) + "\n")
train_bpe([corpus], ".devdata/tokenizer", 4096)
PY
fi
mkdir -p .whl/fallback
dl() { python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 "$@"; }
dl -d .whl grain==0.2.18 array_record==0.8.6 portpicker==1.6.0 tensorboardX==2.6.5
dl -d .whl/fallback flax==0.12.8
du -sh .devdata .whl
