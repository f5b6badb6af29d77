#!/usr/bin/env bash
# GPU device checks (issues 12 and 13), sized for one H100/H200: <= 8 minutes of section limits
# (ENGINE_S 130, RL_S 220, UPDATE_S 100 s; on one H200 the sections took 62 / ~200 / 35 s).
# From the repository root, after `bash benchmarks/device/prepare.sh` on the CPU side:
#   bash benchmarks/device/check.sh [SECTION ...]      (default: smoke engine rl update)
# Extra arguments per section: ENGINE_ARGS, RL_ARGS (e.g. "--set max_steps=6"), STATIC_SHAPES.
# Sections, each its own process with its own time limit, results under $OUT (default ./device_out):
#   smoke   a tiny engine + static decode on the device (catches API breaks in seconds)   smoke.json
#   engine  rollout-engine decode tokens/s vs the HBM bound, 1.5B and 7B shapes at 28 layers
#           (benchmarks/device/engine_decode.py; the static sampler too at 1.5B)          engine_decode.json
#   rl      GRPO stage-I steps on a 1.5B-shaped policy, time split generate / log-prob /
#           update / scoring wait (benchmarks/device/rl_step.py; needs .devdata/ from
#           benchmarks/device/prepare.sh)                                                 rl_step.json
#   gputests  the GPU-marked tests on the device (cuDNN attention vs the XLA reference; not in the
#           default list: ~1 minute)
#   warmstart  the demo's warm-start policies (WARM_VARIANTS="base deep", WARM_BUDGET_S each;
#           benchmarks/device/warmstart.py on .warm/ from warmstart_prepare.py)    warmstart_VARIANT.tgz
#   update  the 7B-shaped GRPO update (4 layers): compile-time memory estimate vs measured
#           peak, MFU; static decode vs the HBM bound (benchmarks/device/check.py)        device_check.json
# Needs a CUDA jax. The GPU machine may have no network:
#   - wheels in .whl/*.whl (prepare.sh downloads grain, array_record, ... for Python 3.12) are
#     installed into /tmp/site first; .whl/fallback/ holds flax, used only if the smoke test
#     fails with the machine's own flax;
#   - if `import jax` sees no GPU it tries `pip install -e '.[cuda]'` and exits 3 when that fails.
set -uo pipefail
OUT="${OUT:-$PWD/device_out}"
mkdir -p "$OUT"
LOG="$OUT/device_check.log"
PY="${PYTHON:-python3}"
SECTIONS=("$@")
[ ${#SECTIONS[@]} -eq 0 ] && SECTIONS=(smoke engine rl update)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    >>"$LOG" 2>&1 && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
has_gpu() { timeout 120 "$PY" -c "import jax, sys; sys.exit(0 if jax.devices()[0].platform == 'gpu' else 1)" >/dev/null 2>&1; }
if [ -z "${ALLOW_CPU:-}" ] && ! has_gpu; then   # ALLOW_CPU=1: a CPU run of this script itself
  echo "no CUDA jax found; trying pip install -e '.[cuda]'" | tee -a "$LOG"
  if ! timeout 240 "$PY" -m pip install -q -e '.[cuda]' >>"$LOG" 2>&1 || ! has_gpu; then
    echo "could not get a CUDA jax (PyPI unreachable or no GPU); see $LOG" | tee -a "$LOG"
    exit 3
  fi
fi
export XLA_PYTHON_CLIENT_PREALLOCATE=false   # so memory_stats' peak is what a step used
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv 2>&1 | tee -a "$LOG"
"$PY" -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())" 2>&1 | tee -a "$LOG"

smoke() { timeout 150 "$PY" benchmarks/device/engine_decode.py --tiny --out "$OUT/smoke.json" >>"$LOG" 2>&1; }
rc_all=0
for s in "${SECTIONS[@]}"; do
  t0=$(date +%s)
  echo "=== section $s" | tee -a "$LOG"
  case "$s" in
    smoke)
      smoke; rc=$?
      if [ "$rc" -ne 0 ] && compgen -G ".whl/fallback/*.whl" >/dev/null; then
        echo "smoke failed with the machine's flax; retrying with .whl/fallback" | tee -a "$LOG"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site0 \
          .whl/fallback/*.whl >>"$LOG" 2>&1 && export PYTHONPATH="/tmp/site0:$PYTHONPATH"
        smoke; rc=$?
      fi
      tail -3 "$LOG" ;;
    engine) timeout "${ENGINE_S:-130}" "$PY" benchmarks/device/engine_decode.py --static "${STATIC_SHAPES-1p5b}" ${ENGINE_ARGS:-} \
              --out "$OUT/engine_decode.json" 2>&1 | tee -a "$LOG" | grep -v '^ '; rc=${PIPESTATUS[0]} ;;
    rl) timeout "${RL_S:-220}" "$PY" benchmarks/device/rl_step.py --run-dir /tmp/rl_run ${RL_ARGS:-} \
          --out "$OUT/rl_step.json" 2>&1 | tee -a "$LOG" | tail -40; rc=${PIPESTATUS[0]}
        cp /tmp/rl_run/metrics.jsonl "$OUT/rl_metrics.jsonl" 2>/dev/null ;;
    # Only the files that hold GPU-marked tests: collecting all of tests/ imports z3 (synthesis),
    # which the GPU image lacks (stop 23's run stopped at collection).
    gputests) JAX_PLATFORMS="${GPU_PLATFORM:-cuda}" timeout "${TESTS_S:-120}" "$PY" -m pytest -q -m gpu -rs \
                $(grep -rl 'mark.gpu' tests/ --include='test_*.py') 2>&1 | tee -a "$LOG" | tail -5; rc=${PIPESTATUS[0]} ;;
    warmstart)  # the demo's warm-start policies (TRAINING §6b; needs .warm/ from warmstart_prepare.py)
      rc=0
      for v in ${WARM_VARIANTS:-base}; do
        case "$v" in
          base) sets=() ;;   # configs/demo_cpu.yaml's model (0.92M parameters)
          deep) sets=(--set 'train.model.overrides={hidden_size: 192, intermediate_size: 576, num_layers: 4, num_heads: 6, num_kv_heads: 2, head_dim: 32, max_position_embeddings: 4608, rope_theta: 10000.0}') ;;
          *) echo "unknown warm-start variant $v" | tee -a "$LOG"; rc=2; continue ;;
        esac
        timeout "${WARM_S:-240}" "$PY" benchmarks/device/warmstart.py --warm "${WARM_DIR:-.warm}" --budget-s "${WARM_BUDGET_S:-150}" \
          --out "/tmp/ws/$v" --set train.sft.batch_size=64 --set train.sft.micro_batch_size=64 "${sets[@]}" 2>&1 \
          | tee -a "$LOG" | grep -v '^ ' | tail -3
        r=${PIPESTATUS[0]}; [ "$r" -ne 0 ] && rc=$r
        [ -f "/tmp/ws/$v/warmstart.json" ] && tar czf "$OUT/warmstart_$v.tgz" -C /tmp/ws "$v"
      done ;;
    update) timeout "${UPDATE_S:-100}" "$PY" benchmarks/device/check.py --out "$OUT/device_check.json" \
              2>&1 | tee -a "$LOG" | grep -v '^ '; rc=${PIPESTATUS[0]} ;;
    *) echo "unknown section $s" | tee -a "$LOG"; rc_all=2; continue ;;
  esac
  echo "=== section $s: rc $rc in $(( $(date +%s) - t0 )) s" | tee -a "$LOG"
  [ "$rc" -ne 0 ] && rc_all=$rc
done
exit "$rc_all"
