#!/usr/bin/env bash
# The Kaggle-size dress rehearsal on one GPU (benchmarks/dress_rehearsal.py): synthetic data, every paper model for
# a few hundred steps, predictions of the test set, the submission check, memory and throughput; then the streamed
# data path against the GPU-resident one. About 8 minutes on an H100/H200 at the default fraction (0.5).
# Needs only what the GPU machine has (torch, timm, pandas, numpy, pillow, scipy, scikit-learn, tqdm); runs the
# project from the checkout with PYTHONPATH=. and writes results/benchmarks/dress_rehearsal.{json,md} (or under $OUT).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/benchmarks}
export PYTHONPATH=. PYTHONUNBUFFERED=1 GALAXYLIB_CACHE_DIR=${GALAXYLIB_CACHE_DIR:-/tmp/galaxylib-cache}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/dress_rehearsal_gpu.txt"
python3 -c "import torch, timm, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'timm', timm.__version__)" | tee -a "$OUT/dress_rehearsal_gpu.txt"
df -h "$GALAXYLIB_CACHE_DIR" 2>/dev/null | tail -1 | tee -a "$OUT/dress_rehearsal_gpu.txt"
start=$(date +%s)
python3 benchmarks/dress_rehearsal.py --out "$OUT" --fraction "${FRACTION:-0.5}" --steps "${STEPS:-300}" \
    --time-limit "${LIMIT_S:-450}" "$@" 2>&1 | tee "$OUT/dress_rehearsal.log"
echo "total: $(( $(date +%s) - start )) s"
