// Weights read exactly as stored in the model file, bound as 32-bit words so no 8/16-bit storage
// feature is needed: WTYPE 0 = fp32, 1 = fp16 (two per word, low half first), 2 = int8 (four per
// word, lowest byte first; the per-output-channel scale is applied by the caller after the sum).
// Every conversion here is exact, so the CPU twin (kernels/src/twin/stored.rs) reproduces it.
// Included by refiner_conv.comp and matvec.comp, which declare `wq` and WTYPE.

float stored_weight(uint idx) {
    if (WTYPE == 1) {
        vec2 pair = unpackHalf2x16(wq[idx >> 1]);
        return (idx & 1u) == 0u ? pair.x : pair.y;
    } else if (WTYPE == 2) {
        uint shift = 8u * (idx & 3u);
        int q = int(wq[idx >> 2] << (24u - shift)) >> 24;
        return float(q);
    }
    return uintBitsToFloat(wq[idx]);
}
