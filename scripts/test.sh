#!/usr/bin/env bash
# The test command (README's second command; CI runs exactly this after scripts/setup.sh).
# Everything here is fast on 2 cores; heavy checks (official-size parity, long fuzzing, benches) are documented
# `--ignored` tests and scripts, never part of this run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Shipped SPIR-V must be what its GLSL compiles to, and valid.
if [ -x kernels/shaders/check.sh ]; then kernels/shaders/check.sh; fi
cargo test --workspace --release
