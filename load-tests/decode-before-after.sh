#!/usr/bin/env bash
# Single-stream decode speed of two server builds on SmolLM2, same run: a
# fresh server per build and round, the builds alternating; per round one
# warm-up request, then three greedy 256-token answers. For "did this change
# make decoding faster": build the old commit into another binary first (see
# forward-before-after.sh). Extra arguments go to `run` (e.g. `--dtype f32`);
# DECODE_MODEL serves another model than SmolLM2's GGUF.
# Usage: load-tests/decode-before-after.sh OLD_BINARY NEW_BINARY ROUNDS [RUN_ARGS...]
# Prints every request's tok/s and each build's median.
set -euo pipefail
cd "$(dirname "$0")/.."
old_bin=$1; new_bin=$2; rounds=$3; shift 3
model=${DECODE_MODEL:-$(scripts/get-model smollm2)}
source load-tests/lib.sh
speeds="$work/speeds"
for round in $(seq 1 "$rounds"); do
  for build in old new; do
    bin=$old_bin; [ "$build" = new ] && bin=$new_bin
    start_model_server "$bin" "$build" -m "$model" "$@"
    python3 - "$port" "$build" "$round" >>"$speeds" <<'PY'
import json, sys, time, urllib.request
port, build, round_ = sys.argv[1:]
for i in range(4):
    body = {"messages": [{"role": "user", "content": f"Write a long story about dragon {round_}.{i}."}],
            "max_tokens": 256, "temperature": 0}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions",
                                 data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    start = time.perf_counter()
    tokens = json.load(urllib.request.urlopen(req))["usage"]["completion_tokens"]
    if i > 0:  # the first request warms the server up
        print(build, round_, tokens, f"{tokens / (time.perf_counter() - start):.1f}")
PY
    kill "$model_pid"; wait "$model_pid" 2>/dev/null || true
  done
done
cat "$speeds"
medians "$speeds" '%s: median %.1f tok/s over %d answers\n'
