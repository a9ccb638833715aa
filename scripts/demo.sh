#!/usr/bin/env bash
# The main job on bundled defaults (README's first command): set up, build, make an official-layout model with
# seeded weights, lift a real public-domain portrait, and drive it with the bundled scripted expression sequence.
#   out/demo/model.gaga      the converted model (fp32; official size)
#   out/demo/astronaut.gav   the lifted avatar
#   out/demo/frames/         PNG frames, and out/demo/astronaut.avi (Motion-JPEG video)
#   out/demo/carphone.jsonl  driving parameters tracked from the real carphone clip (gaga track)
#   out/demo/carphone_frames/, out/demo/carphone.avi  the avatar driven by that clip
# With the real licence-gated files, replace the two `gaga dev` lines by your GAGAvatar.pt and FLAME_with_eye.pt
# (see README "Using the real checkpoint").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. scripts/build-env.sh
cargo build --release -p gaga
gaga=target/release/gaga
out=out/demo
mkdir -p "$out"

if [ ! -f "$out/model.gaga" ]; then
  $gaga dev make-checkpoint --config official --seed 1 -o "$out/GAGAvatar-seeded.pt"
  $gaga dev make-flame --seed 1 -o "$out/FLAME-seeded.pt"
  $gaga convert --checkpoint "$out/GAGAvatar-seeded.pt" --flame "$out/FLAME-seeded.pt" --precision fp32 -o "$out/model.gaga"
  rm -f "$out/GAGAvatar-seeded.pt"
fi
$gaga inspect "$out/model.gaga" | head -n 20

# astronaut.png is 512x512 but shows the whole upper body; the crop is the tracker's head box x 1.65 (spec 2.1).
$gaga lift --model "$out/model.gaga" --image assets/fetched/astronaut.png --crop 92,-33,267 \
  --params assets/defaults/source_params.json -o "$out/astronaut.gav"
$gaga reenact --model "$out/model.gaga" --avatar "$out/astronaut.gav" --driver assets/defaults/expressions.jsonl \
  -o "$out/frames" --video "$out/astronaut.avi"

# A real talking-head clip drives the same avatar through the on-device tracker (MediaPipe networks + FLAME fit).
$gaga track --model "$out/model.gaga" --video assets/fetched/carphone_pristine.mp4 -o "$out/carphone.jsonl"
$gaga reenact --model "$out/model.gaga" --avatar "$out/astronaut.gav" --driver "$out/carphone.jsonl" \
  -o "$out/carphone_frames" --video "$out/carphone.avi"
echo "done: $out/frames/ + $out/astronaut.avi (scripted), $out/carphone_frames/ + $out/carphone.avi (tracked clip)"
echo "(seeded weights: see README for what they can and cannot show)"
