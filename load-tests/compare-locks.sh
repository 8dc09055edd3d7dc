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
print("| build | req/s | tokens/s | p50 latency ms | p95 latency ms | p50 inter-token ms | errors | lock contentions (all rounds) | avg contended wait |")
print("|---|---|---|---|---|---|---|---|---|")
for v in ("plain", "locks"):
    runs = load(v)
    med = lambda f: statistics.median(f(r) for r in runs)
    locks = sorted({k for r in runs for k in r["lock_contentions"]})
    counts = {k: sum(r["lock_contentions"].get(k, 0) for r in runs) for k in locks}
    waits = {k: sum(r["lock_wait_us"].get(k, 0) * r["lock_contentions"].get(k, 0) for r in runs) / counts[k]
             for k in locks if counts[k]}
    contended = ", ".join(f"{k} {int(n)}" for k, n in counts.items() if n) or "-"
    wait = ", ".join(f"{k} {w:.1f} µs" for k, w in waits.items()) or "-"
    print(f"| {v} | {med(lambda r: r['requests_per_second']):.1f} | {med(lambda r: r['tokens_per_second']):.0f} "
          f"| {med(lambda r: r['request_latency']['p50_ms']):.1f} | {med(lambda r: r['request_latency']['p95_ms']):.1f} "
          f"| {med(lambda r: r['inter_token_latency']['p50_ms']):.2f} | {sum(r['errors'] for r in runs)} | {contended} | {wait} |")
PY
