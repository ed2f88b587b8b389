#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup-viewer-tests.sh
bash scripts/build.sh
ctest --test-dir build -j "$(nproc)" --output-on-failure
