#!/usr/bin/env bash
# `salient serve` under load, with Debian's `hey` (apt-get install hey):
#   - saliency on the demo CNN through POST /api/explain at 1, 4 and 16 concurrent clients:
#     requests/s, p50 and p99 latency;
#   - server overhead: p50 latency of /api/explain saliency on ResNet-18 (one client, a multipart
#     .npy upload) / the same
#     explain in-process (salient_bench's resnet18/explain/saliency: new method instances, the
#     predictions, the method, the record, as the server computes them), measured in this one run.
#   bash bench/serve.sh [BUILD_DIR]        (after building; ~3 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
command -v hey >/dev/null || { echo "bench/serve.sh needs hey (apt-get install hey)" >&2; exit 2; }
mkdir -p "$build/bench"
[ -f "$build/bench/resnet18_traced.pt" ] || /usr/bin/python3 tools/export_resnet18.py "$build/bench"
work=$(mktemp -d)
server=
trap 'if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi; rm -rf "$work"' EXIT

start() {  # start MODEL WORKERS -> sets port
  "$build/salient" serve --model "$1" --port 0 --workers "$2" --queue 64 >"$work/serve.out" 2>"$work/serve.err" &
  server=$!
  for _ in $(seq 1 200); do
    port=$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/serve.out" | head -n1)
    [ -n "$port" ] && return 0
    sleep 0.1
  done
  cat "$work/serve.err" >&2
  exit 1
}
# hey's summary -> "requests/s p50_ms p99_ms"; any answer but 200 is an error of the benchmark.
summary() {
  tee "$work/hey.out" | awk '/Requests\/sec/ {r=$2} /50% in/ {p50=$3} /99% in/ {p99=$3} END {printf "%.1f %.2f %.2f\n", r, p50*1000, p99*1000}'
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
  grep -q "\[200\]" "$work/hey.out" && ! grep -E "^\s+\[[013-9][0-9]{2}\]" "$work/hey.out" || { cat "$work/hey.out" >&2; exit 1; }
  echo "| $c | $rps | $p50 | $p99 |"
done
kill "$server"; wait "$server" 2>/dev/null || true

# ResNet-18: /api/explain saliency (one client, p50) against the in-process explain; the input an
# .npy uploaded as a multipart file part (binary: no base64 to decode).
/usr/bin/python3 - "$work/resnet.multipart" <<'EOF'
import io, sys
import numpy as np
buf = io.BytesIO()
np.save(buf, np.random.RandomState(0).randn(1, 3, 224, 224).astype(np.float32))
part = b'--XyZ\r\nContent-Disposition: form-data; name="npy"; filename="x.npy"\r\nContent-Type: application/octet-stream\r\n\r\n'
open(sys.argv[1], "wb").write(part + buf.getvalue() + b'\r\n--XyZ\r\nContent-Disposition: form-data; name="methods"\r\n\r\nsaliency\r\n--XyZ--\r\n')
EOF
start "$build/bench/resnet18_traced.pt" 1
url="http://127.0.0.1:$port/api/explain"
type="multipart/form-data; boundary=XyZ"
hey -n 10 -c 1 -m POST -T "$type" -D "$work/resnet.multipart" "$url" >/dev/null
read -r _ served_p50 _ < <(hey -n 60 -c 1 -m POST -T "$type" -D "$work/resnet.multipart" "$url" | summary)
grep -q "\[200\]" "$work/hey.out" && ! grep -E "^\s+\[[013-9][0-9]{2}\]" "$work/hey.out" || { cat "$work/hey.out" >&2; exit 1; }
kill "$server"; wait "$server" 2>/dev/null || true
"$build/salient_bench" --resnet "$build/bench/resnet18_traced.pt" --threads 2 --benchmark_filter='^resnet18/explain(-thread)?/saliency/' \
  --benchmark_out="$work/inproc.json" --benchmark_out_format=json >/dev/null 2>&1
/usr/bin/python3 - "$work/inproc.json" "$served_p50" <<'EOF'
import json, sys
med = {b["run_name"].split("/iterations")[0]: b for b in json.load(open(sys.argv[1]))["benchmarks"] if b.get("aggregate_name") == "median"}
served = float(sys.argv[2])
main, thread = med["resnet18/explain/saliency"], med["resnet18/explain-thread/saliency"]
print(f"ResNet-18 /api/explain saliency: served p50 {served:.1f} ms / in-process (main thread) {main['real_time']:.1f} ms = {served / main['real_time']:.2f}")
print(f"  (two OpenMP teams, a second thread computing beside the main thread's team: {thread['real_time']:.1f} ms, cpu/wall {thread['cpu_per_wall']:.2f}; main thread alone {main['cpu_per_wall']:.2f})")
EOF
