#!/usr/bin/env bash
# Installs Salient's build and test dependencies from Debian 12's packages (run as root).
set -euo pipefail
pkgs=(cmake ninja-build g++ ccache time zlib1g-dev
      libtorch-dev libopencv-dev libcli11-dev nlohmann-json3-dev libcpp-httplib-dev libboost-dev pkg-config
      libgtest-dev libbenchmark-dev libonnx-dev libprotobuf-dev libutf8proc-dev
      python3-torch python3-torchvision python3-numpy dataset-fashion-mnist fonts-dejavu-core)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
