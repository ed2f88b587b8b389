#!/usr/bin/env bash
# Prints the benchmark ratios of the docs/performance.md, all measured in this one run.
#   bash bench/run.sh [BUILD_DIR]        (after building; ~8 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
threads=${SALIENT_BENCH_THREADS:-2}
mkdir -p "$build/bench"
[ -f "$build/bench/resnet18_traced.pt" ] || /usr/bin/python3 tools/export_resnet18.py "$build/bench"
[ -f "$build/testdata/fashion_cnn.onnx" ] || /usr/bin/python3 tools/layer_reference.py "$build/testdata"

"$build/salient_bench" --demo models/fashion_cnn.pt --resnet "$build/bench/resnet18_traced.pt" \
  --onnx-demo "$build/testdata/fashion_cnn.onnx" --threads "$threads" \
  --benchmark_enable_random_interleaving=true \
  --benchmark_out="$build/bench/gradients.json" --benchmark_out_format=json >/dev/null 2>"$build/bench/gradients.log"

# Peak memory (max RSS) of a whole `salient explain` process, SmoothGrad-50 on ResNet-18 224x224.
/usr/bin/python3 -c "import numpy as np; np.save('$build/bench/resnet_input.npy', np.random.RandomState(0).randn(1,3,224,224).astype(np.float32))"
mem_json="{"
for b in 10 50; do
  rm -rf "$build/bench/mem-out"
  kb=$( { /usr/bin/time -f '%M' "$build/salient" explain --model "$build/bench/resnet18_traced.pt" \
          --input "$build/bench/resnet_input.npy" --method smoothgrad --samples 50 --batch-size "$b" \
          --threads "$threads" --out "$build/bench/mem-out" >/dev/null; } 2>&1 | tail -n 1 )
  mem_json+="\"$b\": $kb,"
done
mem_json="${mem_json%,}}"
/usr/bin/python3 bench/ratios.py "$build/bench/gradients.json" "$mem_json"

# Text: IG-50 at the langid demo's embeddings against its hand-written LibTorch floor.
echo "text (IG-50 at the embeddings, per input, langid demo): $("$build/salient_bench_text" models/langid "$threads" 3)"
