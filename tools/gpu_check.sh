#!/usr/bin/env bash
# One device-tool call: GPU tests, then the benchmarks (JSON into $OUT and book/results).
# Usage on the device machine:  bash tools/gpu_check.sh [pytest args...]
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$OUT/nvidia-smi.txt"
python3 -c "import torch, triton, numpy; print(torch.__version__, triton.__version__, numpy.__version__)"
# every test that needs neither the built book nor Jupyter (not installed there)
python3 -m pytest -q -p no:cacheprovider tests -m "not book" --ignore=tests/test_book.py \
    --ignore=tests/test_notebooks_clean.py --ignore=tests/test_interactive.py "$@" 2>&1 | tee "$OUT/pytest.txt"
python3 -m ssmlib.bench recurrence --sweep --out "$OUT" 2>&1 | tee "$OUT/bench.txt"
