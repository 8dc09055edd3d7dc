#!/usr/bin/env bash
# Why mistralrs-http's tail grows in mcp-forward.sh's later steps: server-everything's
# Streamable HTTP mode keeps every SSE event of a session in memory (its example
# InMemoryEventStore, for resumption). A gateway holds one upstream session for its
# whole life, so that session's store only grows; clients connecting directly open
# and close their own sessions. Four 10 s runs of 32 clients paced at 1,000 calls/s,
# first direct (new sessions each run), then through mistralrs-server (its one
# upstream session), each with server-everything's resident memory after the run.
#
# Usage: load-tests/upstream-session-growth.sh [runs] (default 4).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-4}
cargo build --release -q -p mistralrs-server -p load-tests
source load-tests/lib.sh
rss() { echo $(($(awk '/VmRSS/{print $2}' "/proc/$1/status") / 1024)); }

for path in direct through; do
  port=$(free_port)
  PORT=$port "$node" "$everything" streamableHttp >"$work/everything-$path.log" 2>&1 &
  upstream=$!
  pids+=("$upstream")
  wait_port "$port"
  start_server "" "$(printf '[[mcp_client.servers]]\nname = "http"\nurl = "http://127.0.0.1:%s/mcp"\n' "$port")"
  target="direct=http://127.0.0.1:$port/mcp@echo"
  [ "$path" = through ] && target="through=http://127.0.0.1:$mcp/mcp/stream@http__echo"
  echo "$path: server-everything RSS before: $(rss "$upstream") MiB"
  for run in $(seq 1 "$runs"); do
    target/release/mistralrs-load mcp-forward --target "$target" --clients 32 \
      --rate 1000 --seconds 10 --rounds 1 >"$work/run.json"
    python3 - "$work/run.json" "$path" "$run" "$(rss "$upstream")" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["measurements"][0]
l = m["latency"]
print(f"{sys.argv[2]} run {sys.argv[3]}: p50 {l['p50_ms']:.2f} p95 {l['p95_ms']:.2f} "
      f"p99 {l['p99_ms']:.2f} ms; server-everything RSS {sys.argv[4]} MiB")
PY
  done
  kill "$upstream" "$server_pid"
  wait "$upstream" "$server_pid" 2>/dev/null || true
done
