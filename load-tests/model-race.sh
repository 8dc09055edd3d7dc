#!/usr/bin/env bash
# The model race: this server against llama.cpp, mistral.rs and transformers on
# the same SmolLM2-135M-Instruct GGUF (Q4_1) and prompts, on this machine's CPU.
# Systems alternate in each round; the summary holds medians over the rounds.
#
#   load-tests/model-race.sh [ROUNDS] [MAX_TOKENS]        (defaults: 3, 128)
#   RACE_SYSTEMS="ours-q4_1 llama.cpp" load-tests/model-race.sh 1 16
#
# Systems: ours-q4_1 (the GGUF as stored), ours-q4_1-1thread (--threads 1),
# ours-q4_1-kv-q8_0 (--kv-cache-dtype q8_0),
# ours-f32 (--dtype f32: every tensor dequantized), llama.cpp (node-llama-cpp
# 3.21.1, installed pinned in load-tests/model-race by npm), mistralrs-gguf
# (PyPI mistralrs 0.9.5, in a venv under target/), transformers-f32 (when
# RACE_TRANSFORMERS_PYTHON names a Python with torch, transformers, gguf and
# accelerate, which loading the GGUF needs; they are too large to install here). Writes load-tests/results/model-race.jsonl
# (every run), model-race.json (medians) and model-race.png (chart), or into
# RACE_RESULTS; RACE_SERVER names a server binary to use instead of building
# the release one; RACE_MODEL another GGUF with SmolLM2's tokenizer (e.g. the
# 1.1B-shaped Q4_K_M file of `cargo run --release -p mistralrs-core --example
# write_shaped_gguf`; the ours-* systems keep their names); RACE_CONTEXT_UNITS
# shortens the long-context prompt (160 units, ~3,900 tokens) for a smoke run. A system that fails is recorded as failing, not retried.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
max_tokens=${2:-128}
systems=${RACE_SYSTEMS:-ours-q4_1 ours-q4_1-1thread ours-f32 llama.cpp mistralrs-gguf}
race=load-tests/model-race
model=${RACE_MODEL:-$(scripts/get-model smollm2)}
results=${RACE_RESULTS:-load-tests/results}
server=${RACE_SERVER:-target/release/mistralrs-server}
mkdir -p "$results"
: >"$results/model-race.jsonl"

venv=target/race-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet -r "$race/requirements.txt"
case " $systems " in *" mistralrs-gguf "*)
  "$venv/bin/pip" install --quiet mistralrs==0.9.5
esac
case " $systems " in *" llama.cpp "*)
  [ -d "$race/node_modules/node-llama-cpp" ] || (cd "$race" && npm ci --no-audit --no-fund --loglevel=error)
esac
[ -n "${RACE_SERVER:-}" ] || cargo build --release -p mistralrs-server

pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# ours FLAGS...: a fresh server on the GGUF, the driver against it, then stop.
ours() {
  local port log
  port=$(free_port); log=$(mktemp)
  RUST_LOG=warn "$server" --port "$port" run -m "$model" --name smollm2 "$@" >"$log" 2>&1 &
  pids+=($!)
  local pid=$!
  for _ in $(seq 1 600); do grep -q "listening on" "$log" && break; sleep 0.1; done
  grep -q "listening on" "$log" || { cat "$log" >&2; return 1; }
  "$venv/bin/python" "$race/race.py" ours "http://127.0.0.1:$port" "$race/prompts.json" "$max_tokens" "$pid"
  kill "$pid"; wait "$pid" 2>/dev/null || true; rm -f "$log"
}

run_system() {
  case "$1" in
    ours-q4_1) ours ;;
    ours-q4_1-1thread) ours --threads 1 ;;
    ours-q4_1-kv-q8_0) ours --kv-cache-dtype q8_0 ;;
    ours-f32) ours --kv-cache-dtype f32 --dtype f32 ;;
    llama.cpp) (cd "$race" && node llamacpp.mjs "$model" prompts.json "$max_tokens") ;;
    mistralrs-gguf) "$venv/bin/python" "$race/race.py" mistralrs "$model" "$race/prompts.json" "$max_tokens" 2>/dev/null ;;
    transformers-f32) "$RACE_TRANSFORMERS_PYTHON" "$race/transformers_driver.py" "$model" "$race/prompts.json" "$max_tokens" 2>/dev/null ;;
    *) echo "unknown system $1" >&2; return 1 ;;
  esac
}

for round in $(seq 1 "$rounds"); do
  for system in $systems; do
    line=$(run_system "$system" | tail -1) || true
    case "$line" in "{"*) ;; *) line='{"run_error": "failed (see the output above)"}' ;; esac
    echo "round $round $system: $line" >&2
    printf '%s\n' "$line" | "$venv/bin/python" -c \
      "import json,sys; d=json.loads(sys.stdin.read()); d.update(system='$system', round=$round); print(json.dumps(d))" \
      >>"$results/model-race.jsonl"
  done
done
"$venv/bin/python" "$race/race.py" summary "$results/model-race.jsonl" "$results/model-race"
