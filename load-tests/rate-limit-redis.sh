#!/usr/bin/env bash
# What sharing rate limits through Redis costs a request. The same forwarded tool
# call (`rust__echo`, rmcp's echo server as the upstream) through two servers that
# differ only in where the limit counters live, alternating in one run:
#   memory  [http_mcp.rate_limit] backend = "memory" (governor, in the process)
#   redis   backend = "redis": a local redis-server (Debian package), one Lua
#           script round trip per request
# Both check a per-IP and a global limit set far above the load, so no call is
# refused and every call pays one check. Back to back at each level of clients,
# then 32 clients paced at each rate. The redis server's own histogram of round
# trips (`mistralrs_rate_limit_backend_seconds`) is printed at the end.
#
# Usage: load-tests/rate-limit-redis.sh [seconds per target and level] [levels] [rates]
#        (defaults: 10, 1,32 and 250,500,1000). Writes
#        load-tests/results/rate-limit-redis{,-paced}.json (and PNGs).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
levels=${2:-1,32}
rates=${3:-250,500,1000}
command -v redis-server >/dev/null || { echo "redis-server is needed (Debian package redis-server)" >&2; exit 1; }
cargo build --release -q -p mistralrs-server -p load-tests
source load-tests/lib.sh

echo_port=$(free_port); redis_port=$(free_port)
target/release/mistralrs-load echo-server --port "$echo_port" >"$work/echo.log" 2>&1 &
pids+=($!)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)
wait_port "$echo_port"; wait_port "$redis_port"

upstream=$(printf '[[mcp_client.servers]]\nname = "rust"\nurl = "http://127.0.0.1:%s/mcp"\n' "$echo_port")
limits=$'per_ip = 1000000.0\nglobal = 10000000.0'
start_server "[http_mcp.rate_limit]
$limits" "$upstream"
memory_mcp=$mcp
start_server "[http_mcp.rate_limit]
backend = \"redis\"
redis_url = \"redis://127.0.0.1:$redis_port\"
$limits" "$upstream"
redis_mcp=$mcp; redis_api=$api

mkdir -p load-tests/results
targets=(
  --target "memory=http://127.0.0.1:$memory_mcp/mcp/stream@rust__echo"
  --target "redis=http://127.0.0.1:$redis_mcp/mcp/stream@rust__echo"
)
out=load-tests/results/rate-limit-redis
target/release/mistralrs-load mcp-forward --seconds "$seconds" "${targets[@]}" \
  --clients "$levels" --out "$out.json"
target/release/mistralrs-load mcp-forward --seconds "$seconds" "${targets[@]}" \
  --clients 32 --rate "$rates" --out "$out-paced.json"
echo "Redis round trips seen by the redis server:"
curl -s "http://127.0.0.1:$redis_api/metrics" | grep '^mistralrs_rate_limit_backend_seconds'
