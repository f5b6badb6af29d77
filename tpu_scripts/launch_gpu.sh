#!/usr/bin/env bash
# GPU launcher (jax[cuda]). One process per host drives all local GPUs.
# Single host, several GPUs (e.g. 8 x H100): no coordinator needed.
#   tpu_scripts/launch_gpu.sh train --config configs/stage1_qwen2p5_coder_7b.yaml --out runs/stage1
# Several hosts: run the same command on every host with
#   COORDINATOR=host0:12345 NUM_PROCESSES=2 PROCESS_ID=<0|1> tpu_scripts/launch_gpu.sh train ...
# (under SLURM, srun sets these through SLURM_* variables and jax auto-detects them).
set -euo pipefail
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}"
export TOKENIZERS_PARALLELISM=false
export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
if [ -n "${COORDINATOR:-}" ]; then
  : "${NUM_PROCESSES:?set NUM_PROCESSES}" "${PROCESS_ID:?set PROCESS_ID}"
  exec python -c "
import sys
from execverify_jax.model import sharding
sharding.maybe_initialize_distributed('$COORDINATOR', $NUM_PROCESSES, $PROCESS_ID)  # later calls are no-ops
from execverify_jax.cli import main
sys.exit(main(sys.argv[1:]))" "$@"
fi
exec execverify "$@"
