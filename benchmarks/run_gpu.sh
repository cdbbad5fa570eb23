#!/usr/bin/env bash
# The one prepared GPU script: correctness checks of the CUDA fast path, then the throughput benchmark.
# Needs only what the GPU machine has (torch, timm, pandas, numpy, pillow, scikit-learn, tqdm); runs the project
# from the checkout with PYTHONPATH=. and writes everything under ${OUT:-results/gpu}.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/gpu}
N=${N_IMAGES:-6000}
LIMIT=${BENCH_LIMIT_S:-420}
export PYTHONPATH=. PYTHONUNBUFFERED=1 GALAXYLIB_CACHE_DIR=${GALAXYLIB_CACHE_DIR:-/tmp/galaxylib-cache}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, timm, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'timm', timm.__version__)" | tee -a "$OUT/gpu.txt"
start=$(date +%s)
python3 -m galaxylib synth --n "$N" --seed 2024 --out "$GALAXYLIB_CACHE_DIR/bench/synth-$N" 2>&1 | tail -3 | tee "$OUT/synth.log"
echo "synth: $(( $(date +%s) - start )) s" | tee -a "$OUT/synth.log"
python3 benchmarks/gpu_check.py --data "$GALAXYLIB_CACHE_DIR/bench/synth-$N" --out "$OUT/check" 2>&1 | tee "$OUT/gpu_check.log"
python3 benchmarks/throughput.py --n-images "$N" --data "$GALAXYLIB_CACHE_DIR/bench/synth-$N" --out "$OUT/benchmarks" \
    --time-limit "$LIMIT" 2>&1 | tee "$OUT/throughput.log"
rm -rf "$OUT/check/runs" "$OUT/benchmarks/runs"   # checkpoints: large and not needed back
echo "total: $(( $(date +%s) - start )) s"
