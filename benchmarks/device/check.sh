#!/usr/bin/env bash
# Issue 12 GPU check, <= 8 minutes on one H100/H200 (see benchmarks/device/check.py for what it
# measures). Run from the repository root:   bash benchmarks/device/check.sh
# Needs a CUDA jax. The GPU machine gets a copy of the working tree and may have no network:
#   - if `import jax` already sees a GPU, nothing is installed;
#   - else it tries `pip install -e '.[cuda]'` (jax[cuda12] from PyPI) and gives up cleanly if
#     PyPI is unreachable (exit 3, with the reason in $OUT/device_check.log).
# Results: $OUT/device_check.json (OUT defaults to ./device_out).
set -uo pipefail
OUT="${OUT:-$PWD/device_out}"
mkdir -p "$OUT"
LOG="$OUT/device_check.log"
PY="${PYTHON:-python3}"
has_gpu() { timeout 120 "$PY" -c "import jax, sys; sys.exit(0 if jax.devices()[0].platform == 'gpu' else 1)" >/dev/null 2>&1; }
if ! has_gpu; then
  echo "no CUDA jax found; trying pip install -e '.[cuda]'" | tee -a "$LOG"
  if ! timeout 240 "$PY" -m pip install -q -e '.[cuda]' >>"$LOG" 2>&1 || ! has_gpu; then
    echo "could not get a CUDA jax (PyPI unreachable or no GPU); see $LOG" | tee -a "$LOG"
    exit 3
  fi
fi
export XLA_PYTHON_CLIENT_PREALLOCATE=false   # so memory_stats' peak is what the step used
nvidia-smi --query-gpu=name,memory.total --format=csv 2>&1 | tee -a "$LOG"
OUT="$OUT" timeout 420 "$PY" benchmarks/device/check.py --out "$OUT/device_check.json" "$@" 2>&1 | tee -a "$LOG"
exit "${PIPESTATUS[0]}"
