#!/usr/bin/env bash
# On a machine with a CUDA GPU: the test suite's CUDA tests (pytest -m cuda), then the speed part of the
# PolyMNIST benchmark (MVAE with MultiVae's conv nets: fp32 and bf16, the loss checked every step and every
# 50 steps), recorded through benchmarks/results.py as benchmarks/results/polymnist/speed_cuda.json.
#   benchmarks/gpu_check.sh [PYTHON]      (default .venv/bin/python; needs the mnist extra for the data)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check.sh: no CUDA GPU visible to torch')"
"$PY" -m pytest -q -m cuda tests
"$PY" -m benchmarks.polymnist --part speed --device cuda --epochs 6 --name speed_cuda
