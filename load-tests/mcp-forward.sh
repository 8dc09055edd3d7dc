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
# rate (calls/s over all clients; see load-tests/README.md for how that is timed).
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
node_targets=(
  --target "direct=http://127.0.0.1:$direct/mcp@echo"
  --target "mistralrs-http=http://127.0.0.1:$mcp/mcp/stream@http__echo"
  --target "mistralrs-stdio=http://127.0.0.1:$mcp/mcp/stream@stdio__echo"
  --target "supergateway=http://127.0.0.1:$sg/mcp@echo"
  --target "mcp-proxy=http://127.0.0.1:$proxy/mcp@echo"
)
rust_targets=(
  --target "direct-rust=http://127.0.0.1:$rust/mcp@echo"
  --target "mistralrs-rust=http://127.0.0.1:$mcp/mcp/stream@rust__echo"
)
forward() {
  target/release/mistralrs-load mcp-forward --server-pid "$server_pid" --seconds "$seconds" "$@"
}
out=load-tests/results/mcp-forward
forward "${node_targets[@]}" --clients "$levels" --out "$out.json"
forward "${node_targets[@]}" --clients 32 --rate "$rates" --out "$out-paced.json"
forward "${rust_targets[@]}" --clients "$levels" --out "$out-rust.json"
forward "${rust_targets[@]}" --clients 32 --rate "$rates" --out "$out-rust-paced.json"
