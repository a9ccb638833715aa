#!/usr/bin/env bash
# Installs what scripts/test-aarch64.sh needs to cross-build gaga-kernels for aarch64 and run its tests under
# qemu-user (recipe: platform-notes.md): Debian's rustc-web/cargo-web (they ship the aarch64 standard library
# as libstd-rust-web-dev:arm64, which rustup cannot download here), the aarch64 GNU linker and libc, qemu-user.
# Idempotent: installs only what is missing and says what it does. Needs root (or sudo) when it installs.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

missing=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for p in rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user; do
    have_pkg "$p" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "setup-aarch64: all packages present (rustc-web $(/usr/bin/rustc --version 2>/dev/null | cut -d' ' -f2), qemu-aarch64, aarch64-linux-gnu-gcc)"
    exit 0
fi

if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "setup-aarch64: adding the arm64 dpkg architecture (for libstd-rust-web-dev:arm64)"
    $SUDO dpkg --add-architecture arm64
fi
echo "setup-aarch64: apt-get update"
$SUDO apt-get update -qq
echo "setup-aarch64: installing ${missing[*]} (~320 MB, under a minute)"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup-aarch64: done: $(/usr/bin/rustc --version), $(qemu-aarch64 --version | head -1)"
