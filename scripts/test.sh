#!/usr/bin/env bash
# The test command (README's second command; CI runs exactly this).
# Everything here is fast on 2 cores; heavy checks (official-size parity, long fuzzing, benches) are documented
# `--ignored` tests and scripts, never part of this run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Shipped SPIR-V must be what its GLSL compiles to, and valid.
kernels/shaders/check.sh
. scripts/build-env.sh
# setup.sh installed lavapipe, so a missing Vulkan device is a failure here, not a skip.
export GAGA_REQUIRE_VULKAN=1
cargo test --workspace --release
# Again with lavapipe's subgroup size 4 instead of 8: no shader may assume a subgroup size.
LP_NATIVE_VECTOR_WIDTH=128 cargo test --release -p gaga-tests --test vulkan_ops --test vulkan_splat --test vulkan_refiner \
  --test vulkan_frame --test vulkan_lift
# The boards' CPUs: the quantised kernels cross-built for aarch64 and run under qemu as a Cortex-A76 (dotprod)
# and a Cortex-A72 (no dotprod), so both the SDOT kernel and its fallback are exercised.
scripts/test-aarch64.sh
