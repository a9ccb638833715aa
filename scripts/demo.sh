#!/usr/bin/env bash
# The main job on bundled defaults (README's first command): set up, build, make an official-layout model with
# seeded weights, lift a real public-domain portrait, and drive it with the bundled scripted expression sequence.
#   out/demo/model.gaga      the converted model (fp32; official size)
#   out/demo/astronaut.gav   the lifted avatar
#   out/demo/frames/         PNG frames, and out/demo/astronaut.avi (Motion-JPEG video)
# With the real licence-gated files, replace the two `gaga dev` lines by your GAGAvatar.pt and FLAME_with_eye.pt
# (see README "Using the real checkpoint").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
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
echo "done: $out/frames/ and $out/astronaut.avi (seeded weights: see README for what they can show)"
