#!/usr/bin/env bash
# Cross-builds gaga-kernels' tests for aarch64-unknown-linux-gnu with Debian's rustc-web and runs the
# quantised-kernel, Winograd and splat tests (`qgemm`, `winograd`, `splat`: the kernels with aarch64 paths
# of their own) under qemu-user twice: as a Cortex-A76 (NEON + dotprod + fp16: the SDOT
# kernel) and as a Cortex-A72 (no dotprod: the widening-multiply NEON kernel), checking that each CPU model
# detects the kernels it should. Tiny inputs: emulated vector code is 20-100x slower, so never time it here.
# Usage: scripts/test-aarch64.sh [extra test filter args]; CARGO_TARGET_DIR defaults to target/aarch64.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-aarch64.sh

export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/aarch64}"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
# No "-L <sysroot>": the binaries are linked against the cross glibc, and mixing two glibcs hangs at thread start.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64
CARGO=/usr/bin/cargo
echo "test-aarch64: $($RUSTC --version), target dir $CARGO_TARGET_DIR"

# --locked: never rewrite the shared Cargo.lock with Debian's cargo.
"$CARGO" test --locked --release --target aarch64-unknown-linux-gnu -p gaga-kernels --lib --no-run

for cpu in cortex-a76 cortex-a72; do
    case $cpu in
        cortex-a76) expect="[NeonDot, Neon, Portable]" ;;
        cortex-a72) expect="[Neon, Portable]" ;;
    esac
    echo "test-aarch64: QEMU_CPU=$cpu, expecting int8 kernels $expect"
    QEMU_CPU=$cpu GAGA_EXPECT_QISA="$expect" "$CARGO" test --locked --release --target aarch64-unknown-linux-gnu \
        -p gaga-kernels --lib -- qgemm winograd splat "$@"
done
echo "test-aarch64: all passed"
