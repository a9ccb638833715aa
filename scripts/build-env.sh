# Sourced by demo.sh and test.sh: build settings shared by every native build.
# TF Lite (the face tracker's networks, built by the tflite crate) uses SSE2 only by default; on an x86-64-v3
# machine build it for that level (about 4x faster). Never for a cross build. The crate caches the built library:
# run `cargo clean -p tflite` after changing this.
if [ "$(uname -m)" = x86_64 ] && grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo \
   && grep -qw bmi2 /proc/cpuinfo && grep -qw movbe /proc/cpuinfo; then
  export TFLITE_RS_MAKE_EXTRA_CXXFLAGS=${TFLITE_RS_MAKE_EXTRA_CXXFLAGS:--march=x86-64-v3}
fi
