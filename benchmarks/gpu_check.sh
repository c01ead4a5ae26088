#!/usr/bin/env bash
# One-shot check of fastobj on a machine with one H100/H200-class GPU: at most 9 minutes.
#
#   bash benchmarks/gpu_check.sh             # the check; results in $OUT (else ./bench-out)
#   bash benchmarks/gpu_check.sh --plan      # on any machine: the phases, budgets and variants
#   bash benchmarks/gpu_check.sh --rehearse  # every phase on CPU (Triton's interpreter, tiny
#                                            # shapes), so no error first shows on the GPU
#
# Uses the machine's own `python3` (or $PYTHON: PyTorch, Triton, pytest; pytest-xdist and
# pytest-timeout where present) and fetches nothing: fastobj is installed with
# `pip install --no-deps --no-build-isolation -e .` when it does not import. Phases, in order,
# each under `timeout -k` with its own budget (cut to what is left of the 9 minutes):
#   setup     versions, nvidia-smi, the install; the device's SM count and capability;
#   warm      compiles in parallel (every core) the kernel variants the benchmark points and the
#             library's layouts launch, for the device's SM count (benchmarks/kernel_variants.py),
#             one JSON line each in warm.jsonl as it finishes; a compile error fails the phase;
#   headline  fastobj bench: Diversity B=256 and 1024 (float32, bfloat16; fwd, fwd+bwd), TV
#             64x3x512x512, Direction 256x1024x14x14 (shared, per sample): fastobj, reference
#             and torch.bmm for Diversity's products ("x bmm");
#   compile   the preset's torch.compile points;
#   classic   the classic loops, under a capped per-call budget;
#   rest      the rest of the `gpu` preset (fastobj, reference, bmm);
#   profile   per-kernel device time (torch.profiler), eager vs CUDA-graph replay per call, the
#             W·F kernel timed under other tile configurations (compiled by the warm phase),
#             and the registers, spills and SASS (HGMMA count) of the Diversity kernels;
#   tier      the `gpu` test tier, a timeout per test.
# Output ($OUT, at most 8 files): gpu_check.log (everything, unbuffered), warm.jsonl,
# summary.txt (one table per benchmark phase), bench.csv and diversity.png (all phases),
# profile.txt, archive.tar.gz (each phase's own run folder). The summary and archive are
# rewritten after every benchmark phase, and a phase cut by its budget gets SIGTERM first
# (`fastobj bench` then writes its partial table), so a cut check still answers.
# Exit status 0 when every phase passed, else 1.
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
MODE=check
case "${1:-}" in
  "") ;;
  --plan) MODE=plan ;;
  --rehearse) MODE=rehearse ;;
  *) echo "usage: bash benchmarks/gpu_check.sh [--plan | --rehearse]" >&2; exit 2 ;;
esac
# phase:budget in seconds: 490 s of phases; merges, kill grace and start-up fit in the rest of
# the 540 s (TOTAL), which also caps every phase's budget.
PHASES="setup:40 warm:60 headline:80 compile:55 classic:35 rest:75 profile:45 tier:100"
TOTAL=540
KILL_AFTER=8      # seconds between timeout's SIGTERM and its SIGKILL
BENCH_MARGIN=12   # a bench phase stops taking points this long before its budget ends
TEST_TIMEOUT=60   # seconds per test in the tier
CLASSIC_BUDGET=0.5

# The rehearsal checks the wiring, not the timing: on a shared CPU (cold Inductor and Triton
# caches, the interpreter) its phases get REHEARSAL_SCALE times the budgets.
REHEARSAL_SCALE=3
SCALE=1
[ "$MODE" = rehearse ] && SCALE=$REHEARSAL_SCALE && TOTAL=$((TOTAL * SCALE))

budget() { for p in $PHASES; do [ "${p%%:*}" = "$1" ] && echo "$((${p##*:} * SCALE))"; done; }

if [ "$MODE" = plan ]; then
  counts=$(TRITON_DEFAULT_FP_FUSION=1 "$PY" -m fastobj.benchmarks.kernel_variants count) \
    || { echo "could not count the kernel variants"; exit 1; }
  variants=$("$PY" -c "import json, sys; print(sum(json.loads(sys.argv[1])['variants'].values()))" \
    "$counts")
  tests=$("$PY" -m pytest --collect-only -q -p no:cacheprovider -m gpu tests/ 2>/dev/null \
    | grep -c '::')
  total=0
  printf '%-9s %6s  %s\n' phase budget what
  for p in $PHASES; do
    name=${p%%:*}; secs=${p##*:}; total=$((total + secs))
    case $name in
      setup) what="versions, install, the device's SM count" ;;
      warm) what="$variants kernel variants compiled in parallel ($counts)" ;;
      headline) what="Diversity B=256,1024; TV; Direction: fastobj, reference, bmm" ;;
      compile) what="torch.compile points of the gpu preset" ;;
      classic) what="classic loops, ${CLASSIC_BUDGET} s per call at most" ;;
      rest) what="the rest of the gpu preset" ;;
      profile) what="profiler kernel times, eager vs graph replay, W·F tiles, registers, SASS" ;;
      tier) what="$tests gpu tests, ${TEST_TIMEOUT} s each at most" ;;
    esac
    printf '%-9s %5ss  %s\n' "$name" "$secs" "$what"
  done
  printf '%-9s %5ss  (of %s s; the rest: merges, kill grace)\n' total "$total" "$TOTAL"
  exit 0
fi

OUT="${OUT:-./bench-out}"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOG="$OUT/gpu_check.log"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fastobj-gpu-check.XXXXXX")
export PYTHONUNBUFFERED=1 PY
unset FASTOBJ_SM_COUNT
if [ "$MODE" = rehearse ]; then
  export TRITON_INTERPRET=1 FASTOBJ_BACKEND=triton
  PRESET=rehearsal; WARM_LIMIT=(--limit 3); REHEARSAL=(--rehearsal)
else
  unset TRITON_INTERPRET
  PRESET=gpu; WARM_LIMIT=(); REHEARSAL=()
fi
export TRITON_CACHE_DIR="${TRITON_CACHE_DIR:-$HOME/.triton/cache}"
export TRITON_DEFAULT_FP_FUSION="${TRITON_DEFAULT_FP_FUSION:-1}"  # 3.9's default, unwarned
mkdir -p "$TRITON_CACHE_DIR"
exec > >(tee -a "$LOG") 2>&1
START=$(date +%s)
status=0

phase() {  # phase NAME COMMAND...: run under the phase's budget (capped by what is left)
  local name=$1 secs left started rc
  shift
  secs=$(budget "$name")
  left=$((TOTAL - ($(date +%s) - START) - KILL_AFTER - 5))
  [ "$secs" -gt "$left" ] && secs=$left
  if [ "$secs" -lt 5 ]; then
    echo "== $name: skipped, the check's $TOTAL s are spent"; status=1; return 1
  fi
  echo "== $name (budget $secs s) at $(($(date +%s) - START)) s: $*"
  started=$(date +%s)
  PHASE_SECONDS=$secs timeout -k "$KILL_AFTER" "$secs" "$@"
  rc=$?
  echo "== $name: exit status $rc after $(($(date +%s) - started)) s$( \
    [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && echo ' (cut by its budget)')"
  [ "$rc" -eq 0 ] || status=1
  return "$rc"
}

collect() {  # the merged summary, CSV and plot, and the archive, from the runs so far
  "$PY" -m fastobj.benchmarks.gpu_check merge "$WORK/runs" "$OUT" || status=1
  tar -czf "$OUT/archive.tar.gz.tmp" -C "$WORK" . && mv "$OUT/archive.tar.gz.tmp" "$OUT/archive.tar.gz"
}

setup() {
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv \
    2>/dev/null || echo "nvidia-smi: not available"
  "$PY" -c 'import fastobj.kernels' 2>/dev/null \
    || "$PY" -m pip install -q --no-deps --no-build-isolation --disable-pip-version-check -e . \
    || return 1
  "$PY" -m fastobj.benchmarks.gpu_check device > "$WORK/device.txt" || return 1
  cat "$WORK/device.txt"
}

bench() {  # bench RUN_ID ARGS...: fastobj bench into $WORK/runs/RUN_ID, stopping in time
  local run=$1 minutes
  shift
  minutes=$("$PY" -c "import sys; print(max(0.1, (int(sys.argv[1]) - $BENCH_MARGIN) / 60))" \
    "$PHASE_SECONDS")
  "$PY" -m fastobj bench --preset "$PRESET" --out "$WORK/runs" --run-id "$run" \
    --no-progress --max-minutes "$minutes" "$@"
}

tier() {
  local extra=()
  "$PY" -c 'import xdist' 2>/dev/null && [ "$MODE" = check ] && extra+=(-n 8)
  if "$PY" -c 'import pytest_timeout' 2>/dev/null; then
    extra+=(--timeout "$TEST_TIMEOUT")
  else
    echo "pytest-timeout is not installed: no per-test timeout, only the phase's budget"
  fi
  "$PY" -m pytest -q -p no:cacheprovider -m gpu -rs "${extra[@]}" tests/
}

export -f setup bench tier  # `timeout` runs commands, not shell functions: through bash -c
export WORK PRESET BENCH_MARGIN MODE TEST_TIMEOUT
echo "== fastobj gpu_check ($MODE) $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(pwd), work $WORK"
phase setup bash -c setup || { echo "setup failed: nothing else can run"; exit 1; }
SMS=$(sed -n 's/^SMS=//p' "$WORK/device.txt")
CC=$(sed -n 's/^CC=//p' "$WORK/device.txt")
phase warm bash -c "'$PY' -m fastobj.benchmarks.kernel_variants --sms $SMS --preset $PRESET \
  ${WARM_LIMIT[*]} warm $CC > '$OUT/warm.jsonl'"
phase headline bash -c "bench headline --part headline --providers fastobj,reference,bmm"
collect
phase compile bash -c "bench compile --providers compile --no-ceilings"
collect
phase classic bash -c "bench classic --providers classic --budget $CLASSIC_BUDGET --no-ceilings"
collect
phase rest bash -c "bench rest --part rest --providers fastobj,reference,bmm"
collect
phase profile bash -c "{ '$PY' -m fastobj.benchmarks.gpu_check profile ${REHEARSAL[*]} \
  && '$PY' -m fastobj.benchmarks.gpu_check sass $CC ${REHEARSAL[*]}; } 2>&1 \
  | tee '$OUT/profile.txt'; exit \${PIPESTATUS[0]}"
phase tier bash -c tier

echo "== done after $(($(date +%s) - START)) s, exit status $status; files in $OUT:"
ls -l "$OUT"
rm -rf "$WORK"
exit "$status"
