#!/usr/bin/env bash
# On a machine with a CUDA GPU: the test suite's CUDA tests (pytest -m cuda), then the speed part of the
# PolyMNIST benchmark (every model with MultiVae's conv nets in fp32 and bf16; MVAE also with the loss checked every
# step and every 50 steps), recorded through benchmarks/results.py as benchmarks/results/polymnist/speed_cuda.json.
# Where MultiVae is installed (make bench-env, or its wheels), its models run beside polymodal's. With GRID=1 it
# then runs the coherence grid (every model, eta 0, 0.2 and 0.5, training on all tuples and on the complete ones,
# 3 seeds, EPOCHS epochs, default 100) into benchmarks/results/polymnist/grid_cuda.json, pooled with its verdicts
# and figure into pooled_cuda.json.
#   [GRID=1] [EPOCHS=N] benchmarks/gpu_check.sh [PYTHON]   (default .venv/bin/python; needs the mnist extra)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check.sh: no CUDA GPU visible to torch')"
MULTIVAE=()
if "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('multivae') is None)"; then
  MULTIVAE=(--multivae MVAE MMVAE MoPoE MVTCAE MMVAE+)
fi
"$PY" -m pytest -q -m cuda tests
"$PY" -m benchmarks.polymnist --part speed --device cuda --epochs 6 --precision fp32 bf16 "${MULTIVAE[@]}" --name speed_cuda
if [ "${GRID:-0}" = 1 ]; then
  "$PY" -m benchmarks.polymnist --device cuda --epochs "${EPOCHS:-100}" --eta 0 0.2 0.5 --seeds 0 1 2 --complete \
    "${MULTIVAE[@]}" --name grid_cuda
  "$PY" -m benchmarks.polymnist --part grid --device cuda --epochs "${EPOCHS:-100}" --batch-size 256 --name pooled_cuda
fi
