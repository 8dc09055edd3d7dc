#!/usr/bin/env bash
# MCP sessions ramped 100 -> 1,000 -> 10,000 against a release mistralrs-server,
# each session initializing, listing tools and calling `everything__echo`
# (server-everything forwarded over stdio) in a loop. Writes
# load-tests/results/mcp-sessions.json and .png.
#
# Usage: load-tests/mcp-sessions.sh [stages, default 100,1000,10000] [seconds per stage, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
stages=${1:-100,1000,10000}
seconds=${2:-10}
# 10,000 sessions hold about as many connections on each side.
ulimit -n "$(ulimit -Hn)"
cargo build --release -q -p mistralrs-server -p load-tests
source load-tests/lib.sh
start_server $'[http_mcp]\nmax_sessions = 20000'
mkdir -p load-tests/results
target/release/mistralrs-load mcp-sessions --url "http://127.0.0.1:$mcp/mcp/stream" \
  --sessions "$stages" --seconds "$seconds" --tool everything__echo \
  --arguments '{"message":"hello"}' --server-pid "$server_pid" \
  --out load-tests/results/mcp-sessions.json
