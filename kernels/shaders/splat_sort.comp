#version 450
// Splat pass 4 of 5: one workgroup per tile sorts the tile's list by (depth bits, Gaussian index), the
// order of the official 64-bit radix sort (front to back, ties by lower index). Keys are 32-bit: the
// comparison looks at the depth bits, then the index. A bitonic network in its "flip" form (every
// comparator ascending) runs over the list padded to a power of two; padding is a virtual +infinity at
// the end, so comparators touching it never swap and arbitrary lengths need no sentinel writes.
// Lists of up to SHARED_CAP entries are sorted in shared memory (2 x 2048 x 4 B = 16 KiB, the Mali /
// Raspberry Pi 5 floor); longer ones in place in global memory by the same network.
// Also clears the tile's counter for the next frame (the fill pass left it at the tile's length).
// Twin: kernels/src/twin/splat_bin.rs (`sort_tile`).

layout(local_size_x = 256, local_size_y = 1, local_size_z = 1) in;

layout(std430, set = 0, binding = 0) readonly buffer Offsets { uint offsets[]; };
layout(std430, set = 0, binding = 1) coherent buffer List { uint list[]; };
layout(std430, set = 0, binding = 2) coherent buffer Keys { uint keys[]; };
layout(std430, set = 0, binding = 3) writeonly buffer Counts { uint counts[]; };
layout(std430, set = 0, binding = 4) readonly buffer Status { uint status[]; };

layout(push_constant) uniform Params {
    uint n;
    uint width;
    uint height;
    uint grid_x;
    uint grid_y;
    uint capacity;
} p;

const uint SHARED_CAP = 2048u;
shared uint s_key[SHARED_CAP];
shared uint s_id[SHARED_CAP];

bool before(uint ka, uint ia, uint kb, uint ib) {
    return ka < kb || (ka == kb && ia < ib);
}

// Comparator `c` of step (k, s): s == 0 is the flip step of block size k, otherwise a half-cleaner of
// distance s. Returns the two positions, lower first.
uvec2 pair_of(uint c, uint k, uint s) {
    if (s == 0u) {
        uint half_k = k >> 1u;
        uint block = c / half_k;
        uint at = c % half_k;
        return uvec2(block * k + at, block * k + k - 1u - at);
    }
    uint a = (c / s) * 2u * s + c % s;
    return uvec2(a, a + s);
}

void main() {
    uint tile = gl_WorkGroupID.y * p.grid_x + gl_WorkGroupID.x;
    uint lid = gl_LocalInvocationID.x;
    if (tile >= p.grid_x * p.grid_y) {
        return;
    }
    if (lid == 0u) {
        counts[tile] = 0u;
    }
    if (status[1] != 0u) {
        return;
    }
    uint base = offsets[tile];
    uint len = offsets[tile + 1u] - base;
    if (len < 2u) {
        return;
    }
    uint size = 1u;
    while (size < len) {
        size <<= 1u;
    }
    bool in_shared = len <= SHARED_CAP;
    if (in_shared) {
        for (uint e = lid; e < len; e += 256u) {
            s_key[e] = keys[base + e];
            s_id[e] = list[base + e];
        }
        barrier();
    }
    for (uint k = 2u; k <= size; k <<= 1u) {
        for (uint s = 0u; s < k; s = (s == 0u) ? (k >> 2u) : (s >> 1u)) {
            for (uint c = lid; c < size / 2u; c += 256u) {
                uvec2 ab = pair_of(c, k, s);
                if (ab.y >= len) {
                    continue;
                }
                if (in_shared) {
                    uint ka = s_key[ab.x], ia = s_id[ab.x], kb = s_key[ab.y], ib = s_id[ab.y];
                    if (before(kb, ib, ka, ia)) {
                        s_key[ab.x] = kb;
                        s_id[ab.x] = ib;
                        s_key[ab.y] = ka;
                        s_id[ab.y] = ia;
                    }
                } else {
                    uint ka = keys[base + ab.x], ia = list[base + ab.x];
                    uint kb = keys[base + ab.y], ib = list[base + ab.y];
                    if (before(kb, ib, ka, ia)) {
                        keys[base + ab.x] = kb;
                        list[base + ab.x] = ib;
                        keys[base + ab.y] = ka;
                        list[base + ab.y] = ia;
                    }
                }
            }
            if (in_shared) {
                memoryBarrierShared();
            } else {
                memoryBarrierBuffer();
            }
            barrier();
            if (s == 1u || k == 2u) {
                break;
            }
        }
    }
    if (in_shared) {
        for (uint e = lid; e < len; e += 256u) {
            keys[base + e] = s_key[e];
            list[base + e] = s_id[e];
        }
    }
}
