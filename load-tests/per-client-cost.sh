#!/usr/bin/env bash
# What `session_mode = "per_client"` costs against `shared` (issue 14, item 8):
# server-everything over stdio behind the release server, N clients (Python MCP
# SDK, default 16) opened one after another and kept open; for each, the time
# of its first forwarded `echo` (per_client: the upstream session's set-up, a
# Node process start) and the median of its next 20; then the resident memory
# of the server and its child processes per open client. Same run, shared
# first, then per_client.
#
# Usage: load-tests/per-client-cost.sh [clients]
# (MISTRALRS_SERVER_BIN=path: that server binary instead of a release build.)
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-16}
[ -n "${MISTRALRS_SERVER_BIN:-}" ] || cargo build --release -q -p mistralrs-server
source load-tests/lib.sh
venv=target/test-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r mistralrs-server/tests/python/requirements.txt
for mode in shared per_client; do
  servers=$(everything_stdio everything)
  [ "$mode" = per_client ] && servers+=$'\n'"session_mode = \"per_client\""$'\n'"max_upstream_sessions = $clients"
  start_server "" "$servers"
  sleep 1
  "$venv/bin/python" - "http://127.0.0.1:$mcp/mcp/stream" "$clients" "$mode" "$server_pid" <<'PY'
import contextlib
import json
import statistics
import subprocess
import sys
import time

import anyio, httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

url, clients, mode, pid = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

def tree_rss():
    """Resident MiB of the server and its descendants (the upstreams' processes)."""
    total = 0
    pids = {int(pid)}
    for _ in range(3):
        for p in list(pids):
            kids = subprocess.run(["pgrep", "-P", str(p)], capture_output=True, text=True).stdout.split()
            pids.update(int(k) for k in kids)
    for p in pids:
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total // 1024

async def main():
    first, steady = [], []
    before = tree_rss()
    async with httpx2.AsyncClient(timeout=60) as http, contextlib.AsyncExitStack() as stack:
        for _ in range(clients):
            read, write = await stack.enter_async_context(streamable_http_client(url, http_client=http))
            session = await stack.enter_async_context(ClientSession(read, write))
            await session.initialize()
            start = time.perf_counter()
            await session.call_tool("everything__echo", {"message": "hi"})
            first.append((time.perf_counter() - start) * 1000)
            times = []
            for _ in range(20):
                start = time.perf_counter()
                await session.call_tool("everything__echo", {"message": "hi"})
                times.append((time.perf_counter() - start) * 1000)
            steady.append(statistics.median(times))
        await anyio.sleep(1)
        after = tree_rss()
    print(json.dumps({"mode": mode, "clients": clients,
                      "first_call_ms_median": round(statistics.median(first), 1),
                      "first_call_ms_max": round(max(first), 1),
                      "later_call_ms_median": round(statistics.median(steady), 2),
                      "rss_mib_before": before, "rss_mib_with_clients": after,
                      "rss_mib_per_client": round((after - before) / clients, 1)}))

anyio.run(main)
PY
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
done
