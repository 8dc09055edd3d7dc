#!/usr/bin/env bash
# Forwarding overhead of two server builds, same run: one forwarded `echo` call
# (rmcp's echo server as the upstream, server_prefix naming, no limits) through
# each build's /mcp/stream, alternating, back to back at 1 and 32 clients, then
# 32 clients paced at 250 and 1,000 calls/s. For "did this change make
# forwarding slower": build the old commit into another binary first, e.g.
#   git worktree add /tmp/old <rev> && (cd /tmp/old && CARGO_TARGET_DIR=$PWD/../main/target \
#     cargo build --release -p mistralrs-server) && cp target/release/mistralrs-server /tmp/srv-old
# Usage: load-tests/forward-before-after.sh OLD_BINARY NEW_BINARY [seconds]
# Writes load-tests/results/forward-before-after{,-paced}.json (and PNGs).
set -euo pipefail
cd "$(dirname "$0")/.."
old_bin=$1; new_bin=$2; seconds=${3:-10}
cargo build --release -q -p load-tests
source load-tests/lib.sh
echo_port=$(free_port)
target/release/mistralrs-load echo-server --port "$echo_port" >"$work/echo.log" 2>&1 &
pids+=($!)
wait_port "$echo_port"
printf '[mcp_client]\nenabled = true\n[[mcp_client.servers]]\nname = "rust"\nurl = "http://127.0.0.1:%s/mcp"\n' \
  "$echo_port" >"$work/forward.toml"
start_build() {
  api=$(free_port); mcp=$(free_port)
  RUST_LOG=warn "$1" --port "$api" --http-mcp-port "$mcp" --config "$work/forward.toml" \
    run -m demo >"$work/$2.log" 2>&1 &
  pids+=($!)
  wait_port "$api"; wait_port "$mcp"
}
start_build "$old_bin" old; old_mcp=$mcp
start_build "$new_bin" new; new_mcp=$mcp
mkdir -p load-tests/results
targets=(
  --target "before=http://127.0.0.1:$old_mcp/mcp/stream@rust__echo"
  --target "after=http://127.0.0.1:$new_mcp/mcp/stream@rust__echo"
)
out=load-tests/results/forward-before-after
target/release/mistralrs-load mcp-forward --seconds "$seconds" "${targets[@]}" --clients 1,32 --out "$out.json"
target/release/mistralrs-load mcp-forward --seconds "$seconds" "${targets[@]}" --clients 32 \
  --rate 250,1000 --out "$out-paced.json"
