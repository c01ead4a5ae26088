#!/usr/bin/env bash
# One-shot check of fastobj on a machine with one H100/H200-class GPU, at most 7 minutes.
#
#   bash benchmarks/gpu_check.sh          # results in $OUT (else ./bench-out)
#   bash benchmarks/gpu_check.sh --plan   # on any machine: the phases, budgets and variants
#
# Uses the machine's own `python3` (PyTorch with CUDA, Triton, pytest; pytest-xdist if there)
# and fetches nothing: fastobj is installed with `pip install --no-deps --no-build-isolation -e .`
# when it does not import. Each phase runs under `timeout` with its own budget, so a slow phase
# cannot starve the next; every phase writes as it goes, so a cut-off one still answers.
#   setup     versions, nvidia-smi, install;
#   warm      compiles, in parallel on every CPU core, the kernel variants that
#             tests/kernel_variants.py records (the launchers' own choices at the benchmark
#             shapes) into Triton's cache, with the cache keys a launch computes;
#   variants  those variants on random data against the float64 references (no new compile);
#   bench     `fastobj bench --preset gpu` (copy bandwidth and matmul rate first, then the
#             sweep; table, CSV and plot written row by row);
#   tier      the rest of the `gpu` test tier (odd shapes and layouts), in parallel workers
#             when pytest-xdist is present.
# Writes $OUT/gpu_check.log, $OUT/warm.json and the benchmark's files. Exit status 0 when every
# phase passed, else 1.
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
# phase:budget in seconds; the budgets add up to 420 s (7 minutes).
PHASES="setup:30 warm:60 variants:60 bench:200 tier:70"
BENCH_MINUTES=3  # --max-minutes of the sweep: the rest of its budget covers start-up and plot

budget() { for p in $PHASES; do [ "${p%%:*}" = "$1" ] && echo "${p##*:}"; done; }

if [ "${1:-}" = "--plan" ]; then
  counts=$(TRITON_DEFAULT_FP_FUSION=1 "$PY" tests/kernel_variants.py count) \
    || { echo "could not count the kernel variants"; exit 1; }
  variants=$("$PY" -c "import json, sys; print(sum(json.loads(sys.argv[1])['variants'].values()))" \
    "$counts")
  collected=$("$PY" -m pytest --collect-only -q -p no:cacheprovider -m gpu tests/ 2>/dev/null)
  tests=$(grep -c '::' <<<"$collected")
  cases=$(grep -c '^tests/test_kernel_variants_gpu.py::' <<<"$collected")
  total=0
  printf '%-9s %6s  %s\n' phase budget "kernel variants compiled"
  for p in $PHASES; do
    name=${p%%:*}; secs=${p##*:}; total=$((total + secs))
    case $name in
      setup) what="0" ;;
      warm) what="$variants, in parallel ($counts)" ;;
      variants) what="0 new: runs the $variants warmed variants ($cases cases)" ;;
      bench) what="those of its sweep not warmed (not counted here; the harness owns its cases)" ;;
      tier) what="those of its $((tests - cases)) tests' own shapes (each phase logs its count)" ;;
    esac
    printf '%-9s %5ss  %s\n' "$name" "$secs" "$what"
  done
  printf '%-9s %5ss\n' total "$total"
  exit 0
fi

OUT="${OUT:-./bench-out}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
unset TRITON_INTERPRET FASTOBJ_SM_COUNT
exec > >(tee -a "$LOG") 2>&1
status=0
export TRITON_CACHE_DIR="${TRITON_CACHE_DIR:-$HOME/.triton/cache}"
mkdir -p "$TRITON_CACHE_DIR"
phase() {  # phase NAME COMMAND...: run under the phase's budget; log time, status, compiles
  local name=$1 start rc marker compiled
  shift
  echo "== $name (budget $(budget "$name") s): $*"
  marker=$(mktemp)
  start=$(date +%s)
  timeout "$(budget "$name")" "$@"
  rc=$?
  # One metadata file per kernel Triton compiled (and cached) during the phase.
  compiled=$(find "$TRITON_CACHE_DIR" -name '*.json' ! -name '__grp__*' -newer "$marker" | wc -l)
  rm -f "$marker"
  echo "== $name: exit status $rc after $(($(date +%s) - start)) s, $compiled kernels compiled"
  [ "$rc" -eq 0 ] || status=1
  return "$rc"
}

setup() {
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
  "$PY" -c 'import fastobj.kernels' 2>/dev/null \
    || "$PY" -m pip install -q --no-deps --no-build-isolation -e . || return 1
  "$PY" - <<'PYEOF'
import torch, triton
assert torch.cuda.is_available(), "torch sees no CUDA device"
p = torch.cuda.get_device_properties(0)
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), triton {triton.__version__}, "
      f"{p.name}, {p.multi_processor_count} SMs")
PYEOF
}

export PY
export -f setup  # `timeout` runs commands, not shell functions: through bash -c
echo "== fastobj gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(pwd)"
phase setup bash -c setup || { echo "setup failed: nothing else can run"; exit 1; }
phase warm sh -c "'$PY' tests/kernel_variants.py warm 90 > '$OUT/warm.json'"
phase variants "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_kernel_variants_gpu.py
phase bench "$PY" -m fastobj bench --preset gpu --device cuda --out "$OUT" --run-id gpu \
  --max-minutes "$BENCH_MINUTES" --no-progress
workers=()
"$PY" -c 'import xdist' 2>/dev/null && workers=(-n 8)
phase tier "$PY" -m pytest -q -p no:cacheprovider -m gpu "${workers[@]}" tests/ \
  --deselect tests/test_kernel_variants_gpu.py::test_variant_matches_reference

ls -l "$OUT"
exit "$status"
