#!/usr/bin/env bash
# Time to first token of two server builds on the model race's long prompt
# (SmolLM2 Q4_1, ~490 tokens, `max_tokens` 1), same run: a fresh server per
# build and round, the builds alternating, three distinct prompts each (a
# unique first line, so no prefix is cached). For "did this change make
# prefill faster": build the old commit into another binary first (see
# forward-before-after.sh).
# Usage: load-tests/ttft-before-after.sh OLD_BINARY NEW_BINARY [rounds]
# Prints every request's TTFT and each build's median.
set -euo pipefail
cd "$(dirname "$0")/.."
old_bin=$1; new_bin=$2; rounds=${3:-3}
model=$(scripts/get-model smollm2)
source load-tests/lib.sh
times="$work/times"
for round in $(seq 1 "$rounds"); do
  for build in old new; do
    bin=$old_bin; [ "$build" = new ] && bin=$new_bin
    start_model_server "$bin" "$build" -m "$model"
    python3 - "$port" "$build" "$round" >>"$times" <<'PY'
import json, sys, time, urllib.request
port, build, round_ = sys.argv[1:]
p = json.load(open("load-tests/model-race/prompts.json"))
for i in range(3):
    text = f"Round {round_}, prompt {i}, {time.time()}. " + p["long_unit"] * p["long_units"] + p["long_question"]
    body = {"messages": [{"role": "user", "content": text}], "max_tokens": 1, "temperature": 0}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions",
                                 data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    start = time.perf_counter()
    tokens = json.load(urllib.request.urlopen(req))["usage"]["prompt_tokens"]
    print(build, round_, tokens, f"{time.perf_counter() - start:.3f}")
PY
    kill "$model_pid"; wait "$model_pid" 2>/dev/null || true
  done
done
cat "$times"
medians "$times" '%s: median TTFT %.3f s over %d prompts\n'
