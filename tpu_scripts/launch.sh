#!/usr/bin/env bash
# Run one execverify command on every worker of the pod slice at once (multi-controller JAX).
# Each worker: jax.distributed.initialize() (auto-detected on TPU VMs: coordinator, process
# count and id come from the TPU metadata), loads its own 1/process_count grain shard of the
# prompts, runs the sharded sampler/train step over the global mesh and writes Orbax checkpoints
# to the shared RUN directory (use a gs:// bucket or a shared filesystem for RUN).
#   PROJECT=... ZONE=... TPU_NAME=... tpu_scripts/launch.sh train \
#       --config configs/stage1_qwen2p5_coder_7b_v5p.yaml --out gs://bucket/runs/stage1
# Per-host synthesis on its own shard of the program grid:
#   tpu_scripts/launch.sh synth-per-host --config configs/data/small.yaml --out /shared/data/stage1
set -euo pipefail
: "${PROJECT:?}" "${ZONE:?}" "${TPU_NAME:?}"
CMD="$1"; shift
ARGS=$(printf ' %q' "$@")
if [ "$CMD" = "synth-per-host" ]; then
  # worker i of N synthesizes shard i; the last shard to finish writes the manifest.
  INNER="N=\$(python -c 'import json,os;print(len(os.environ.get(\"TPU_WORKER_HOSTNAMES\",\"x\").split(\",\")))'); \
I=\${TPU_WORKER_ID:-0}; execverify synth --shard \$I --num-shards \$N $ARGS"
else
  INNER="EXECVERIFY_DISTRIBUTED=1 execverify $CMD $ARGS"
fi
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --project "$PROJECT" --zone "$ZONE" --worker=all --command "
  cd ~/execverify-jax && . ~/ev-venv/bin/activate && export TOKENIZERS_PARALLELISM=false && $INNER
" 2>&1 | tee "launch-$(date +%Y%m%d-%H%M%S).log"
