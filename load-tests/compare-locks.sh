#!/usr/bin/env bash
# The same streaming chat load against a plain build (--no-default-features: std
# locks, no lock series) and a prometheus-locks build, alternating rounds in one
# run so machine noise hits both. Prints a markdown table; JSON per run goes to
# load-tests/results/.
#
#   load-tests/compare-locks.sh            # CLIENTS=8 SECONDS_PER_RUN=15 ROUNDS=3
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${CLIENTS:-8}
seconds=${SECONDS_PER_RUN:-15}
rounds=${ROUNDS:-3}
bin=target/compare
mkdir -p "$bin" load-tests/results
cargo build --release -q -p mistralrs-server --no-default-features
cp target/release/mistralrs-server "$bin/server-plain"
cargo build --release -q -p mistralrs-server
cp target/release/mistralrs-server "$bin/server-locks"
cargo build --release -q -p load-tests

run_one() { # variant round
  local log="$bin/$1.log"
  "$bin/server-$1" --port 0 --max-seqs 32 run -m demo >"$log" 2>/dev/null &
  local pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$log" && break; sleep 0.1; done
  local url
  url=$(sed -n 's/^mistralrs-server listening on //p' "$log")
  target/release/mistralrs-load openai-stream --url "$url" --clients "$clients" --seconds "$seconds" \
    --out "load-tests/results/locks-$1-$2.json" >/dev/null
  kill -TERM "$pid"; wait "$pid" || true
}

for round in $(seq "$rounds"); do
  run_one plain "$round"
  run_one locks "$round"
done

python3 - "$rounds" <<'PY'
import json, sys, statistics
rounds = int(sys.argv[1])
def load(v): return [json.load(open(f"load-tests/results/locks-{v}-{r}.json")) for r in range(1, rounds + 1)]
rows = []
for v in ("plain", "locks"):
    runs = load(v)
    med = lambda f: statistics.median(f(r) for r in runs)
    waits = runs[-1]["lock_wait_us"]
    rows.append((v, med(lambda r: r["requests_per_second"]), med(lambda r: r["tokens_per_second"]),
                 med(lambda r: r["request_latency"]["p50_ms"]), med(lambda r: r["request_latency"]["p95_ms"]),
                 med(lambda r: r["inter_token_latency"]["p50_ms"]), sum(r["errors"] for r in runs),
                 ", ".join(f"{k} {w:.1f} µs" for k, w in waits.items() if w) or "-"))
print("| build | req/s | tokens/s | p50 latency ms | p95 latency ms | p50 inter-token ms | errors | avg contended wait (last round) |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r[0]} | {r[1]:.1f} | {r[2]:.0f} | {r[3]:.1f} | {r[4]:.1f} | {r[5]:.2f} | {r[6]} | {r[7]} |")
PY
