#version 450
// Bilinear resampling of [C, H, W] maps with PyTorch's index rules (no antialias).
// One invocation per output element: x -> column, y -> row, z -> channel.
// The axis scales are computed on the host (in/out, or (in-1)/(out-1) with align_corners) and
// passed in, because GLSL division is not correctly rounded; `precise` forbids fused
// multiply-adds. The CPU twin is kernels/src/twin/bilinear.rs.

layout(local_size_x_id = 0, local_size_y_id = 1, local_size_z = 1) in;
layout(constant_id = 2) const bool ALIGN_CORNERS = false;

layout(std430, set = 0, binding = 0) readonly buffer Input { float x[]; };
layout(std430, set = 0, binding = 1) writeonly buffer Output { float y[]; };

layout(push_constant) uniform Params {
    uint c;
    uint h;
    uint w;
    uint oh;
    uint ow;
    float scale_y;
    float scale_x;
} p;

// Source index pair and the weight of the second tap for destination `dst` on one axis.
void taps(uint dst, uint in_len, float scale, out uint i0, out uint i1, out float l1) {
    precise float src;
    if (ALIGN_CORNERS) {
        src = float(dst) * scale;
    } else {
        src = max((float(dst) + 0.5) * scale - 0.5, 0.0);
    }
    i0 = min(uint(floor(src)), in_len - 1);
    i1 = min(i0 + 1, in_len - 1);
    l1 = src - float(i0);
}

void main() {
    uint ox = gl_GlobalInvocationID.x;
    uint oy = gl_GlobalInvocationID.y;
    uint ch = gl_GlobalInvocationID.z;
    if (ox >= p.ow || oy >= p.oh || ch >= p.c) {
        return;
    }
    uint y0, y1, x0, x1;
    precise float ly1, lx1;
    taps(oy, p.h, p.scale_y, y0, y1, ly1);
    taps(ox, p.w, p.scale_x, x0, x1, lx1);
    precise float ly0 = 1.0 - ly1;
    precise float lx0 = 1.0 - lx1;
    uint base = ch * p.h * p.w;
    precise float top = lx0 * x[base + y0 * p.w + x0] + lx1 * x[base + y0 * p.w + x1];
    precise float bottom = lx0 * x[base + y1 * p.w + x0] + lx1 * x[base + y1 * p.w + x1];
    precise float v = ly0 * top + ly1 * bottom;
    y[(ch * p.oh + oy) * p.ow + ox] = v;
}
