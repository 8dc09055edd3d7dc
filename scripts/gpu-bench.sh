#!/usr/bin/env bash
# Issue 16's GPU run, prepared to run once on the GPU machine (docs/gpu.md):
#
#   here:    scripts/build-gpu-bundle
#   device:  scripts/gpu-bench.sh        (carry target/gpu-bundle; results in $OUT)
#
# For each shape: a random-weight bf16 checkpoint made there with transformers;
# for the first shape, the server's log-probabilities against transformers' on
# the same weights and tokens (a failure fails the run at its end); then the server under
# openai-stream at each client count, and transformers' generate() at the same
# batch sizes, in the same run; on the first shape, the server again with the
# gathering decode path instead of the kernel (its log-probabilities, and 32 and
# 128 clients). Writes $OUT/<shape>/*.json, $OUT/summary.md.
#
# Trying it on a CPU: GPU_BENCH_DEVICE=cpu GPU_BENCH_SHAPES=tiny
# GPU_BENCH_BIN=target/release GPU_BENCH_CLIENTS="1 2" GPU_BENCH_SECONDS=3
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${GPU_BENCH_BIN:-target/gpu-bundle}"
device="${GPU_BENCH_DEVICE:-cuda}"
shapes="${GPU_BENCH_SHAPES:-smollm2-360m llama-3.2-1b}"
clients="${GPU_BENCH_CLIENTS:-1 8 32 128}"
seconds="${GPU_BENCH_SECONDS:-12}"
python="${GPU_BENCH_PYTHON:-python3}"
out="${OUT:-$(mktemp -d)}"
work="$(mktemp -d)"
port=18080
server_pid=
trap '[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"' EXIT
if [ -f "$bin/mistralrs-server.gz" ]; then
  # scripts/build-gpu-bundle gzips them to fit what a device run carries.
  for name in mistralrs-server mistralrs-load; do
    gzip -dc "$bin/$name.gz" > "$work/$name"
    chmod +x "$work/$name"
  done
  bin="$work"
fi

if [ "$device" != cpu ]; then
  # The CUDA libraries the server links (docs/gpu.md): the driver's libcuda and
  # the CUDA 13 wheels PyTorch installed.
  libs="$("$python" - <<'PY'
import glob, os, nvidia
dirs = {os.path.dirname(p) for d in nvidia.__path__ for p in glob.glob(f"{d}/**/lib*.so*", recursive=True)}
print(":".join(sorted(dirs)))
PY
)"
  export LD_LIBRARY_PATH="$libs:/usr/local/nvidia/lib64:/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
  if ldd "$bin/mistralrs-server" | grep "not found"; then
    echo "the server's CUDA libraries are missing (above)" >&2
    exit 1
  fi
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
fi

gpu_memory_used() {
  if [ "$device" = cpu ]; then
    ps -o rss= -p "$server_pid" | awk '{printf "%d MiB RSS\n", $1 / 1024}'
  else
    nvidia-smi --query-gpu=memory.used --format=csv,noheader
  fi
}

# start_server MODEL_DIR LOG [ENV=VALUE...]
start_server() {
  env "${@:3}" "$bin/mistralrs-server" --port "$port" --device "$device" --max-seqs 128 \
    run -m "$1" --name bench > "$2" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 240); do
    "$python" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/health', timeout=2)" \
      2> /dev/null && return 0
    kill -0 "$server_pid" 2>/dev/null || { cat "$2" >&2; return 1; }
    sleep 0.5
  done
  echo "the server did not come up in 120 s" >&2
  cat "$2" >&2
  return 1
}

stop_server() {
  kill "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}

first=true
failed=false
for shape in $shapes; do
  mkdir -p "$out/$shape"
  "$python" scripts/gpu_bench.py make "$shape" "$work/$shape" | tee "$out/$shape/model.json"
  start_server "$work/$shape" "$out/$shape/server.log"
  gpu_memory_used | tee "$out/$shape/memory-loaded.txt"
  if $first; then
    "$python" scripts/gpu_bench.py check "http://127.0.0.1:$port" "$work/$shape" \
      "$out/$shape/logprobs.json" || failed=true
    first=false
  fi
  for n in $clients; do
    "$bin/mistralrs-load" openai-stream --url "http://127.0.0.1:$port" --clients "$n" \
      --seconds "$seconds" --max-tokens 64 --out "$out/$shape/ours-$n.json" > /dev/null
    gpu_memory_used > "$out/$shape/memory-$n.txt"
  done
  stop_server
  if [ "$device" != cpu ] && [ "$shape" = "${shapes%% *}" ]; then
    # The same with the gathering path instead of the decode kernel (docs/gpu.md).
    start_server "$work/$shape" "$out/$shape/server-gather.log" MISTRALRS_PAGED_DECODE=gather
    "$python" scripts/gpu_bench.py check "http://127.0.0.1:$port" "$work/$shape" \
      "$out/$shape/logprobs-gather.json" || failed=true
    for n in $clients; do
      [ "$n" -ge 32 ] || continue
      "$bin/mistralrs-load" openai-stream --url "http://127.0.0.1:$port" --clients "$n" \
        --seconds "$seconds" --max-tokens 64 --out "$out/$shape/gather-$n.json" > /dev/null
    done
    stop_server
  fi
  # shellcheck disable=SC2086 # one argument per batch size
  "$python" scripts/gpu_bench.py transformers "$work/$shape" "$out/$shape/transformers.json" $clients
done

"$python" - "$out" $shapes <<'PY'
import json, sys
from pathlib import Path
out, shapes = Path(sys.argv[1]), sys.argv[2:]
lines = ["| shape | clients | ours tok/s | transformers tok/s | ratio | ours TTFT p50 ms | ours ITL p50 ms | transformers ITL ms | memory |",
         "|---|---|---|---|---|---|---|---|---|"]
for shape in shapes:
    theirs = {r["batch"]: r for r in json.loads((out / shape / "transformers.json").read_text())["rows"]}
    for path in sorted((out / shape).glob("ours-*.json"), key=lambda p: int(p.stem.split("-")[1])):
        n = int(path.stem.split("-")[1])
        ours = json.loads(path.read_text())
        t = theirs[n]
        memory = (out / shape / f"memory-{n}.txt").read_text().strip()
        lines.append(
            f"| {shape} | {n} | {ours['tokens_per_second']:.0f} | {t['tokens_per_second']:.0f} | "
            f"{ours['tokens_per_second'] / t['tokens_per_second']:.2f}x | "
            f"{ours['time_to_first_token']['p50_ms']:.1f} | {ours['inter_token_latency']['p50_ms']:.2f} | "
            f"{t['inter_token_latency_ms']:.2f} | {memory} |")
for path in sorted((out / shapes[0]).glob("gather-*.json"), key=lambda p: int(p.stem.split("-")[1])):
    n = int(path.stem.split("-")[1])
    gather = json.loads(path.read_text())
    kernel = json.loads((out / shapes[0] / f"ours-{n}.json").read_text())
    lines.append(f"| {shapes[0]}, gathering decode path | {n} | {gather['tokens_per_second']:.0f} | | "
                 f"kernel {kernel['tokens_per_second'] / gather['tokens_per_second']:.2f}x | "
                 f"{gather['time_to_first_token']['p50_ms']:.1f} | {gather['inter_token_latency']['p50_ms']:.2f} | | |")
lines.append("")
for name in ("logprobs", "logprobs-gather"):
    path = out / shapes[0] / f"{name}.json"
    if path.exists():
        check = json.loads(path.read_text())
        lines.append(f"{name} against transformers ({shapes[0]}): max |diff| "
                     f"{check['max_abs_logprob_diff']:.4f} (tolerance {check['tolerance']}), "
                     f"top-1 agreement {check['top1_agreement']}")
(out / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
if $failed; then
  echo "log-probabilities differ from transformers' beyond the tolerance (above)" >&2
  exit 1
fi
