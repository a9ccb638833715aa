#version 450
// Splat pass 3 of 5: each visible Gaussian appends (its index, its depth bits) to the list of every tile
// its rectangle covers, at offsets[tile] + a slot taken with an atomic counter. The order inside a tile is
// arbitrary here; the sort pass makes it (depth, index). Skipped entirely when the scan flagged an
// overflow, so nothing is written beyond the capacity. Twin: kernels/src/twin/splat_bin.rs (`fill`).

layout(local_size_x = 256, local_size_y = 1, local_size_z = 1) in;

layout(std430, set = 0, binding = 0) readonly buffer Projected { uint rec[]; };
layout(std430, set = 0, binding = 1) readonly buffer Offsets { uint offsets[]; };
layout(std430, set = 0, binding = 2) buffer Counts { uint cursor[]; };
layout(std430, set = 0, binding = 3) writeonly buffer List { uint list[]; };
layout(std430, set = 0, binding = 4) writeonly buffer Keys { uint keys[]; };
layout(std430, set = 0, binding = 5) readonly buffer Status { uint status[]; };

layout(push_constant) uniform Params {
    uint n;
    uint width;
    uint height;
    uint grid_x;
    uint grid_y;
    uint capacity;
} p;

void main() {
    if (status[1] != 0u) {
        return;
    }
    uint step = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < p.n; i += step) {
        uint o = 12u * i;
        uint x0 = rec[o + 8u], y0 = rec[o + 9u], x1 = rec[o + 10u], y1 = rec[o + 11u];
        uint depth = rec[o + 6u];
        for (uint ty = y0; ty < y1; ty++) {
            for (uint tx = x0; tx < x1; tx++) {
                uint t = ty * p.grid_x + tx;
                uint at = offsets[t] + atomicAdd(cursor[t], 1u);
                list[at] = i;
                keys[at] = depth;
            }
        }
    }
}
