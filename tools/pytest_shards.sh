#!/usr/bin/env bash
# Run pytest in SHARDS parallel processes (the GPU tests spend most of their time compiling
# Triton kernels on the CPU, so shards share one GPU well). Each shard's log is $LOGS/NAME.N.txt;
# a summary of every shard is printed; the exit status is 1 if any shard failed.
# Usage: SHARDS=8 NAME=selective LOGS=$OUT bash tools/pytest_shards.sh tests/test_selective.py -m gpu -k "..."
set -uo pipefail
SHARDS=${SHARDS:-8}; NAME=${NAME:-pytest}; LOGS=${LOGS:-/tmp}; mkdir -p "$LOGS"
ids=$(python3 -m pytest --collect-only -q -p no:cacheprovider "$@" 2>/dev/null | grep "::")
n=$(echo "$ids" | grep -c "::")
echo "$n tests in $SHARDS shards"
pids=()
for i in $(seq 0 $((SHARDS - 1))); do
    echo "$ids" | awk -v i="$i" -v s="$SHARDS" 'NR % s == i' > "$LOGS/$NAME.$i.ids"
    [ -s "$LOGS/$NAME.$i.ids" ] || continue
    mapfile -t shard < "$LOGS/$NAME.$i.ids"
    python3 -m pytest -q -p no:cacheprovider -rf "${shard[@]}" > "$LOGS/$NAME.$i.txt" 2>&1 &
    pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
for f in "$LOGS/$NAME".*.txt; do echo "--- $f"; grep -E "^FAILED|passed|failed|error" "$f" | tail -8; done
exit $rc
