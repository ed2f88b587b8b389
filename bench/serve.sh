#!/usr/bin/env bash
# `salient serve` under load, with Debian's `hey` (apt-get install hey):
#   - saliency on the demo CNN through POST /api/explain at 1, 4 and 16 concurrent clients:
#     requests/s, p50 and p99 latency;
#   - server overhead: p50 latency of /api/explain saliency on ResNet-18 (one client) / the same
#     method in-process (salient_bench's median, the same input shape), measured in this one run.
#   bash bench/serve.sh [BUILD_DIR]        (after building; ~3 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
command -v hey >/dev/null || { echo "bench/serve.sh needs hey (apt-get install hey)" >&2; exit 2; }
mkdir -p "$build/bench"
[ -f "$build/bench/resnet18_traced.pt" ] || /usr/bin/python3 tools/export_resnet18.py "$build/bench"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

start() {  # start MODEL WORKERS -> sets port
  "$build/salient" serve --model "$1" --port 0 --workers "$2" --queue 64 >"$work/serve.out" 2>"$work/serve.err" &
  for _ in $(seq 1 200); do
    port=$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/serve.out" | head -n1)
    [ -n "$port" ] && return 0
    sleep 0.1
  done
  cat "$work/serve.err" >&2
  exit 1
}
# hey's summary -> "requests/s p50_ms p99_ms"
summary() {
  awk '/Requests\/sec/ {r=$2} /50%% in/ {p50=$3} /99%% in/ {p99=$3} END {printf "%.1f %.2f %.2f\n", r, p50*1000, p99*1000}'
}

# Demo CNN: one input, saliency.
/usr/bin/python3 - "$work/demo.json" <<'EOF'
import base64, json, sys
png = open("models/samples/7-sneaker.png", "rb").read()
json.dump({"image": base64.b64encode(png).decode(), "method": "saliency"}, open(sys.argv[1], "w"))
EOF
start models/fashion_cnn.pt 2
url="http://127.0.0.1:$port/api/explain"
hey -n 50 -c 4 -m POST -T application/json -D "$work/demo.json" "$url" >/dev/null  # warm-up
echo "| clients | requests/s | p50 ms | p99 ms |"
echo "|---|---|---|---|"
for c in 1 4 16; do
  read -r rps p50 p99 < <(hey -n $((c * 100)) -c "$c" -m POST -T application/json -D "$work/demo.json" "$url" | summary)
  echo "| $c | $rps | $p50 | $p99 |"
done
kill %1; wait 2>/dev/null || true

# ResNet-18: /api/explain saliency (one client, p50) against the in-process method.
/usr/bin/python3 - "$work/resnet.json" <<'EOF'
import base64, io, json, sys
import numpy as np
buf = io.BytesIO()
np.save(buf, np.random.RandomState(0).randn(1, 3, 224, 224).astype(np.float32))
json.dump({"npy": base64.b64encode(buf.getvalue()).decode(), "method": "saliency"}, open(sys.argv[1], "w"))
EOF
start "$build/bench/resnet18_traced.pt" 1
url="http://127.0.0.1:$port/api/explain"
hey -n 10 -c 1 -m POST -T application/json -D "$work/resnet.json" "$url" >/dev/null
read -r _ served_p50 _ < <(hey -n 60 -c 1 -m POST -T application/json -D "$work/resnet.json" "$url" | summary)
kill %1; wait 2>/dev/null || true
"$build/salient_bench" --resnet "$build/bench/resnet18_traced.pt" --threads 2 --benchmark_filter='^resnet18/saliency$' \
  --benchmark_out="$work/inproc.json" --benchmark_out_format=json >/dev/null 2>&1
inproc=$(/usr/bin/python3 -c "import json,sys; print([b['real_time'] for b in json.load(open('$work/inproc.json'))['benchmarks'] if b.get('aggregate_name')=='median'][0])")
/usr/bin/python3 -c "print(f'ResNet-18 saliency: served p50 {$served_p50:.1f} ms / in-process {$inproc:.1f} ms = {$served_p50/$inproc:.3f}')"
