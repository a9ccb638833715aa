#!/usr/bin/env bash
# Installs what building and testing gaga needs on a fresh Debian/Ubuntu machine, then fetches the pinned assets.
#   - Rust >= 1.85 (cargo) must already be installed (https://rustup.rs); Debian's own cargo is too old.
#   - Debian packages: Mesa's lavapipe (a CPU Vulkan device) and the validation layers, so the Vulkan tests run
#     without a GPU; glslc and spirv-tools, so CI can prove the shipped SPIR-V matches its GLSL; ffmpeg (ffprobe)
#     to check written videos and decode the driving clip; libclang-dev for the v4l bindings.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "error: cargo not found. Install Rust 1.85 or newer (https://rustup.rs), then run this again." >&2
  exit 1
fi

packages=(mesa-vulkan-drivers libvulkan1 vulkan-validationlayers glslc spirv-tools ffmpeg python3-pip unzip libclang-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

scripts/fetch-assets.sh
