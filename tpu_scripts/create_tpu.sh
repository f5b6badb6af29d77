#!/usr/bin/env bash
# Create a TPU VM pod slice for execverify-jax (multi-controller JAX: one process per host).
#   PROJECT=my-proj ZONE=us-east5-a TPU_NAME=ev-v5p TYPE=v5p-32 tpu_scripts/create_tpu.sh
set -euo pipefail
: "${PROJECT:?set PROJECT}" "${ZONE:?set ZONE}" "${TPU_NAME:?set TPU_NAME}"
TYPE="${TYPE:-v5p-32}"                       # 16 chips / 4 hosts
VERSION="${VERSION:-v2-alpha-tpuv5}"         # TPU VM runtime image for v5p (v2-alpha-tpuv5-lite for v5e)
gcloud compute tpus tpu-vm create "$TPU_NAME" --project "$PROJECT" --zone "$ZONE" \
  --accelerator-type "$TYPE" --version "$VERSION" ${SPOT:+--spot}
gcloud compute tpus tpu-vm describe "$TPU_NAME" --project "$PROJECT" --zone "$ZONE" \
  --format 'value(networkEndpoints[].ipAddress)'
