#version 450
// Splat pass 2 of 5: one workgroup turns the per-tile pair counts into list offsets (exclusive prefix
// sum, offsets[tiles] = total pairs), records the frame's totals in `status` and flags an overflow when
// the pairs exceed the list capacity (the later passes then do nothing and the host returns an error).
// Counts are cleared here so the fill pass can reuse them as per-tile cursors.
// status: [0] pairs this frame, [1] 1 when pairs > capacity, [2] visible counter (cleared), [3] visible.
// Twin: kernels/src/twin/splat_bin.rs (`scan`).

layout(local_size_x = 256, local_size_y = 1, local_size_z = 1) in;

layout(std430, set = 0, binding = 0) buffer Counts { uint counts[]; };
layout(std430, set = 0, binding = 1) writeonly buffer Offsets { uint offsets[]; };
layout(std430, set = 0, binding = 2) buffer Status { uint status[]; };

layout(push_constant) uniform Params {
    uint n;
    uint width;
    uint height;
    uint grid_x;
    uint grid_y;
    uint capacity;
} p;

shared uint partial[256];
shared uint wrapped_any;

void main() {
    uint tiles = p.grid_x * p.grid_y;
    uint lid = gl_LocalInvocationID.x;
    // Each invocation owns a contiguous run of tiles.
    uint per = (tiles + 255u) / 256u;
    uint begin = min(lid * per, tiles);
    uint end = min(begin + per, tiles);
    if (lid == 0u) {
        wrapped_any = 0u;
    }
    barrier();
    uint sum = 0u;
    for (uint t = begin; t < end; t++) {
        uint next = sum + counts[t];
        if (next < sum) {
            atomicOr(wrapped_any, 1u);
        }
        sum = next;
    }
    partial[lid] = sum;
    barrier();
    if (lid == 0u) {
        uint run = 0u;
        bool wrapped = wrapped_any != 0u;
        for (uint k = 0u; k < 256u; k++) {
            uint v = partial[k];
            partial[k] = run;
            wrapped = wrapped || (run + v < run);
            run += v;
        }
        status[0] = run;
        status[1] = (wrapped || run > p.capacity) ? 1u : 0u;
        status[3] = status[2];
        status[2] = 0u;
        offsets[tiles] = run;
    }
    barrier();
    uint run = partial[lid];
    for (uint t = begin; t < end; t++) {
        uint v = counts[t];
        offsets[t] = run;
        run += v;
        counts[t] = 0u;
    }
}
