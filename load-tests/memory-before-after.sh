#!/usr/bin/env bash
# The memory two server builds take for one model: for each build a fresh
# server, one short answer (the first request is when candle repacks some
# quantized weights), then the weights as /health reports them, the resident
# set and its peak. Memory does not vary between runs the way speed does, so
# one run each.
# Usage: load-tests/memory-before-after.sh OLD_BINARY NEW_BINARY MODEL [RUN_ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
old_bin=$1; new_bin=$2; model=$3; shift 3
source load-tests/lib.sh
for build in old new; do
  bin=$old_bin; [ "$build" = new ] && bin=$new_bin
  start_model_server "$bin" "$build" -m "$model" --name model "$@"
  curl -s "http://127.0.0.1:$port/v1/completions" -H 'content-type: application/json' \
    -d '{"model": "model", "prompt": "Hello", "max_tokens": 8}' >/dev/null
  weights=$(curl -s "http://127.0.0.1:$port/health" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["models"][0]["memory"]["weights_bytes"] >> 20)')
  rss=$(awk '/VmRSS/ { print int($2 / 1024) }' "/proc/$model_pid/status")
  peak=$(awk '/VmHWM/ { print int($2 / 1024) }' "/proc/$model_pid/status")
  echo "$build: weights $weights MiB, RSS $rss MiB, peak RSS $peak MiB"
  kill "$model_pid"; wait "$model_pid" 2>/dev/null || true
done
