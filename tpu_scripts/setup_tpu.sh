#!/usr/bin/env bash
# Install execverify-jax on EVERY worker of the slice (same code, same venv path everywhere).
#   PROJECT=... ZONE=... TPU_NAME=... REPO_URL=https://.../execverify-jax.git tpu_scripts/setup_tpu.sh
set -euo pipefail
: "${PROJECT:?}" "${ZONE:?}" "${TPU_NAME:?}" "${REPO_URL:?set REPO_URL (or rsync the checkout yourself)}"
BRANCH="${BRANCH:-main}"
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --project "$PROJECT" --zone "$ZONE" --worker=all --command "
  set -e
  sudo apt-get update -qq && sudo apt-get install -y -qq python3.11-venv git >/dev/null
  [ -d ~/execverify-jax ] || git clone -q -b $BRANCH $REPO_URL ~/execverify-jax
  cd ~/execverify-jax && git fetch -q && git checkout -q $BRANCH && git pull -q
  python3.11 -m venv ~/ev-venv && . ~/ev-venv/bin/activate
  pip install -q -U pip && pip install -q 'jax[tpu]' -e .
  python -c 'import jax; print(jax.process_index(), jax.local_device_count(), jax.device_count())'
"
