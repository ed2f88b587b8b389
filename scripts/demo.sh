#!/usr/bin/env bash
# Sets up, builds and explains the bundled sample images with the bundled Fashion-MNIST CNN.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
./build/salient explain --model models/fashion_cnn.pt --input models/samples/*.png \
  --method saliency,smoothgrad --out demo-out
echo "maps, grids and explanation.json files are under demo-out/<image>/"
