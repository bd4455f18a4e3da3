#!/usr/bin/env bash
# The GPU pass, in one device-tool call: the GPU tests, the benchmark suites and the
# training runs; every JSON into $OUT, every log into $OUT/logs (book/results/ and
# book/results/logs/ when run by `make bench`).
# Usage on the GPU machine, from the repo root:
#   bash tools/gpu_check.sh                          # everything
#   TESTS="tests/test_hippo.py" SUITES="hippo" TRAIN="" bash tools/gpu_check.sh
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; LOGS=$OUT/logs; mkdir -p "$LOGS"
TESTS=${TESTS-tests}
SUITES=${SUITES-$(python3 -c "from ssmlib.bench.__main__ import SUITES; print(*SUITES)")}
TRAIN=${TRAIN-hippo_rnn layers}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$LOGS/nvidia-smi.txt"
python3 -c "import torch, triton, numpy; print(torch.__version__, triton.__version__, numpy.__version__)"
if [ -n "$TESTS" ]; then  # every test that needs neither the built book nor Jupyter (not installed there),
    # in SHARDS parallel processes (compiling the kernels is most of their time): logs/gpu_pytest.N.txt
    SHARDS=${SHARDS:-8} NAME=gpu_pytest LOGS="$LOGS" bash tools/pytest_shards.sh $TESTS -m "not book" \
        --ignore=tests/test_book.py --ignore=tests/test_notebooks_clean.py --ignore=tests/test_interactive.py \
        2>&1 | tee "$LOGS/gpu_pytest.txt"
fi
for suite in $SUITES; do
    python3 -m ssmlib.bench "$suite" --sweep --out "$OUT" 2>&1 | tee "$LOGS/bench_$suite.txt"
done
for module in $TRAIN; do
    python3 -m "ssmlib.$module" --out "$OUT" 2>&1 | tee "$LOGS/train_$module.txt"
done
