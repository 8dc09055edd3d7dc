#!/usr/bin/env bash
# The same tool call (server-everything's `echo`) made, in one run, alternating:
#   direct          to server-everything in Streamable HTTP mode
#   mistralrs-http  through mistralrs-server's /mcp/stream, forwarding to that same upstream
#   mistralrs-stdio through mistralrs-server, forwarding to server-everything over stdio
#   supergateway    through supergateway 4.0.0 (stdio -> Streamable HTTP, stateful)
#   mcp-proxy       through mcp-proxy 6.7.19 (stdio -> Streamable HTTP)
# and, as a second set, with a steadier upstream (rmcp's `mistralrs-load
# echo-server`, the same echo tool without Node's CPU cost and GC pauses):
#   direct-rust     to the echo server
#   mistralrs-rust  through mistralrs-server, forwarding `rust__echo` to it
# first back to back at each level of clients, then 32 clients paced at each
# rate (calls/s over all clients; latency counted from when a call was due).
# Release builds; everything on 127.0.0.1; every process is stopped at the end.
#
# Usage: load-tests/mcp-forward.sh [seconds per target and level] [levels] [rates]
#        (defaults: 10, 1,32 and 250,500,1000). Writes
#        load-tests/results/mcp-forward{,-paced,-rust,-rust-paced}.json (and PNGs).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
levels=${2:-1,32}
rates=${3:-250,500,1000}
cargo build --release -q -p mistralrs-server -p load-tests
source load-tests/lib.sh
supergateway="$PWD/$node_dir/node_modules/supergateway/dist/index.js"
mcp_proxy="$PWD/$node_dir/node_modules/mcp-proxy/dist/bin/mcp-proxy.mjs"

direct=$(free_port); sg=$(free_port); proxy=$(free_port); rust=$(free_port)
target/release/mistralrs-load echo-server --port "$rust" >"$work/echo.log" 2>&1 &
pids+=($!)
PORT=$direct "$node" "$everything" streamableHttp >"$work/everything.log" 2>&1 &
pids+=($!)
"$node" "$supergateway" --stdio "$node $everything" --outputTransport streamableHttp \
  --stateful --port "$sg" --logLevel none >"$work/supergateway.log" 2>&1 &
pids+=($!)
"$node" "$mcp_proxy" --host 127.0.0.1 --port "$proxy" -- "$node" "$everything" \
  >"$work/mcp-proxy.log" 2>&1 &
pids+=($!)
wait_port "$direct"
wait_port "$rust"
start_server "" "$(printf '[[mcp_client.servers]]\nname = "http"\nurl = "http://127.0.0.1:%s/mcp"\n\n' "$direct")
$(printf '[[mcp_client.servers]]\nname = "rust"\nurl = "http://127.0.0.1:%s/mcp"\n\n' "$rust")
$(everything_stdio stdio)"
wait_port "$sg"; wait_port "$proxy"

mkdir -p load-tests/results
measure() {
  target/release/mistralrs-load mcp-forward \
    --target "direct=http://127.0.0.1:$direct/mcp@echo" \
    --target "mistralrs-http=http://127.0.0.1:$mcp/mcp/stream@http__echo" \
    --target "mistralrs-stdio=http://127.0.0.1:$mcp/mcp/stream@stdio__echo" \
    --target "supergateway=http://127.0.0.1:$sg/mcp@echo" \
    --target "mcp-proxy=http://127.0.0.1:$proxy/mcp@echo" \
    --server-pid "$server_pid" --seconds "$seconds" "$@"
}
measure_rust() {
  target/release/mistralrs-load mcp-forward \
    --target "direct-rust=http://127.0.0.1:$rust/mcp@echo" \
    --target "mistralrs-rust=http://127.0.0.1:$mcp/mcp/stream@rust__echo" \
    --server-pid "$server_pid" --seconds "$seconds" "$@"
}
measure --clients "$levels" --out load-tests/results/mcp-forward.json
measure --clients 32 --rate "$rates" --out load-tests/results/mcp-forward-paced.json
measure_rust --clients "$levels" --out load-tests/results/mcp-forward-rust.json
measure_rust --clients 32 --rate "$rates" --out load-tests/results/mcp-forward-rust-paced.json
