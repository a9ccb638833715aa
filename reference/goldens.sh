#!/usr/bin/env bash
# Rebuild gaga, make the seeded checkpoint and FLAME with `gaga dev`, and regenerate the golden tensors with
# the PyTorch reference.
#
#   reference/goldens.sh              # small config -> tests/golden/small.{safetensors,json} (committed)
#   reference/goldens.sh --official   # official size -> a temp dir (not committed), then runs the Rust
#                                     # parity test on it (GAGA_GOLDEN_DIR, the #[ignore]d official test)
#
# Needs torch, numpy, safetensors and pillow in $GAGA_REF_PYTHON (default /opt/gaga-ref-venv/bin/python);
# see reference/README.md. CI never runs this: it only reads the committed goldens.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${GAGA_REF_PYTHON:-/opt/gaga-ref-venv/bin/python}"
CONFIG=small
if [[ "${1:-}" == "--official" ]]; then CONFIG=official; fi
SEED=7

IMAGE="$ROOT/assets/fetched/astronaut.png"
if [[ ! -f "$IMAGE" && -x "$ROOT/scripts/fetch-assets.sh" ]]; then "$ROOT/scripts/fetch-assets.sh"; fi
if [[ ! -f "$IMAGE" ]]; then
  echo "goldens.sh: $IMAGE missing (scikit-image's astronaut.png; see reference/README.md)" >&2
  exit 1
fi
case "$(sha256sum "$IMAGE" | cut -c1-16)" in
  88431cd9653ccd53) ;;
  *) echo "goldens.sh: $IMAGE has an unexpected sha256 (want prefix 88431cd9653ccd53)" >&2; exit 1 ;;
esac

cargo build --release -p gaga --manifest-path "$ROOT/Cargo.toml"
GAGA="$ROOT/target/release/gaga"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

"$GAGA" dev make-checkpoint --config "$CONFIG" --seed "$SEED" -o "$WORK/ckpt.pt"
"$GAGA" dev make-flame --seed "$SEED" -o "$WORK/flame.pt"

if [[ "$CONFIG" == small ]]; then
  OUT_DIR="$ROOT/tests/golden"
else
  OUT_DIR="${GAGA_GOLDEN_DIR:-$(mktemp -d)}"
fi
mkdir -p "$OUT_DIR"
"$PY" "$ROOT/reference/make_goldens.py" \
  --checkpoint "$WORK/ckpt.pt" --flame "$WORK/flame.pt" --image "$IMAGE" --out "$OUT_DIR/$CONFIG" \
  --command "gaga dev make-checkpoint --config $CONFIG --seed $SEED -o ckpt.pt" \
  --command "gaga dev make-flame --seed $SEED -o flame.pt"
chmod 644 "$OUT_DIR/$CONFIG.safetensors" "$OUT_DIR/$CONFIG.json"
echo "goldens written to $OUT_DIR/$CONFIG.{safetensors,json}"

if [[ "$CONFIG" == official ]]; then
  GAGA_GOLDEN_DIR="$OUT_DIR" GAGA_GOLDEN_INPUTS="$WORK" cargo test --release --manifest-path "$ROOT/Cargo.toml" -p gaga-tests \
    --test golden_parity -- --ignored --nocapture official
  echo "official goldens kept in $OUT_DIR (not committed)"
else
  cargo test --manifest-path "$ROOT/Cargo.toml" -p gaga-tests --test golden_parity -- --nocapture
fi
