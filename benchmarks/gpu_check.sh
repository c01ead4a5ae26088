#!/usr/bin/env bash
# One-shot check of fastobj on a machine with one H100/H200-class GPU; about 8 minutes at most.
#
#   bash benchmarks/gpu_check.sh            # from anywhere; results in $OUT, else ./bench-out
#
# Assumes PyTorch with CUDA, Triton, pytest, matplotlib and tqdm are installed (it installs
# nothing else): if `fastobj.benchmarks` does not import, it runs `pip install -e .[test]`,
# and without network falls back to `pip install --no-deps --no-build-isolation -e .`.
# Steps:
#   1. the GPU test tier: pytest -m gpu -q (TRITON_INTERPRET unset), at most 120 s;
#   2. the GPU benchmark sweep (`fastobj bench --preset gpu --device cuda`): Diversity B=8..1024
#      at C=512, 28x28; TotalVariation 64x3x512x512; Direction 256x1024x14x14 with a shared and
#      a per-sample vector; Alignment and ActivationInterpolation 256x512x14x14; float32 and
#      bfloat16; fwd and fwd+bwd; torch.compile at one size per op (fwd+bwd); the device's copy
#      bandwidth and matmul rates measured first. Capped at 4.25 minutes of points.
# Writes $OUT/bench.csv (rows appended), $OUT/diversity.png, $OUT/table.txt and
# $OUT/gpu_check.log. Exit status: 0 when both steps passed, else 1.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-./bench-out}"
PY="${PYTHON:-python}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
unset TRITON_INTERPRET
exec > >(tee -a "$LOG") 2>&1

echo "== fastobj gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(pwd)"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
"$PY" - <<'PYEOF' || { echo "torch with CUDA is required"; exit 1; }
import torch
assert torch.cuda.is_available(), "torch sees no CUDA device"
import triton
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), triton {triton.__version__}, "
      f"{torch.cuda.get_device_name()}")
PYEOF

if ! "$PY" -c "import fastobj.benchmarks.harness" 2>/dev/null; then
  echo "== installing fastobj (editable)"
  "$PY" -m pip install -q -e ".[test]" \
    || "$PY" -m pip install -q --no-deps --no-build-isolation -e . \
    || { echo "could not install fastobj"; exit 1; }
fi

echo "== GPU test tier: pytest -m gpu"
timeout 120 "$PY" -m pytest -m gpu -q -p no:cacheprovider tests/
tests_rc=$?
echo "pytest -m gpu exit status: $tests_rc"

echo "== benchmark sweep: fastobj bench --preset gpu"
timeout 300 "$PY" -m fastobj bench --preset gpu --device cuda --out "$OUT" --max-minutes 4.25 \
  --no-progress
bench_rc=$?
echo "fastobj bench exit status: $bench_rc"

ls -l "$OUT"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
