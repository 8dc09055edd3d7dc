#!/usr/bin/env bash
# Mixed load for 60 s (or $1) against a release mistralrs-server while
# server-everything (forwarded over stdio) is killed every 15 s, clients hang up
# mid-stream and malformed requests arrive; then the scenario checks that nothing
# was lost or leaked (it exits non-zero if a check fails). Writes
# load-tests/results/soak-faults.json and .png.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
cargo build --release -q -p mistralrs-server -p load-tests
source load-tests/lib.sh
start_server ""
mkdir -p load-tests/results
target/release/mistralrs-load soak-faults --url "http://127.0.0.1:$api" \
  --mcp "http://127.0.0.1:$mcp/mcp/stream" --seconds "$seconds" \
  --chat-clients 4 --mcp-clients 4 --forwarded-tool everything__echo --kill-every 15 \
  --out load-tests/results/soak-faults.json
