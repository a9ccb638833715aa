#!/bin/sh
# Compiles the GLSL compute shaders here into the SPIR-V shipped beside them.
# Usage: kernels/shaders/build.sh [output-dir]   (default: this directory)
# The list below is every shipped .spv: output name, source, extra glslc flags (precision variants
# come from one source and a -D macro, as in ncnn). check.sh runs this same script into a temp dir.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here}
command -v glslc >/dev/null || { echo "build.sh: glslc not found (apt-get install glslc)" >&2; exit 1; }
while read -r name src flags; do
    [ -n "$name" ] || continue
    # Vulkan 1.1 SPIR-V (1.3) runs on every target board; -O keeps the NoContraction decorations.
    # shellcheck disable=SC2086
    glslc --target-env=vulkan1.1 -O $flags -o "$out/$name.spv" "$here/$src"
done <<LIST
conv2d conv2d.comp
conv2d_f16 conv2d.comp -DSTORAGE_F16
bilinear bilinear.comp
elementwise elementwise.comp
flame_lbs flame_lbs.comp
refiner_conv refiner_conv.comp
matvec matvec.comp
demod demod.comp
splat_project splat_project.comp
splat_scan splat_scan.comp
splat_fill splat_fill.comp
splat_sort splat_sort.comp
splat_raster splat_raster.comp
splat_raster_f16 splat_raster.comp -DSTORAGE_F16
lift_linear lift_linear.comp
lift_layernorm lift_layernorm.comp
lift_attention lift_attention.comp
lift_maps lift_maps.comp
lift_deconv lift_deconv.comp
LIST
