#!/bin/sh
# Fails when a shipped .spv is stale (differs from what build.sh makes of its source now), invalid
# (spirv-val), missing, or no longer produced by build.sh.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$here/build.sh" "$tmp"
status=0
echo "check.sh: $(glslc --version | head -n 1)"
for fresh in "$tmp"/*.spv; do
    name=$(basename "$fresh")
    if [ ! -f "$here/$name" ]; then
        echo "check.sh: $name is not shipped; run kernels/shaders/build.sh" >&2; status=1; continue
    fi
    if ! cmp -s "$fresh" "$here/$name"; then
        echo "check.sh: shipped $name differs from its source's output; run kernels/shaders/build.sh" >&2; status=1
    fi
done
for shipped in "$here"/*.spv; do
    name=$(basename "$shipped")
    [ -f "$tmp/$name" ] || { echo "check.sh: $name is shipped but build.sh no longer makes it" >&2; status=1; }
    spirv-val --target-env vulkan1.1 "$shipped" || { echo "check.sh: spirv-val rejects $name" >&2; status=1; }
done
[ "$status" -eq 0 ] && echo "check.sh: all shaders match their sources and validate"
exit "$status"
