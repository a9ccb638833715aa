#version 450
// Transposed convolution with kernel = stride = k and no padding (DPT's resize_layers 0 and 1): every
// output pixel has exactly one input pixel, y[o, oy, ox] = b[o] + sum_i x[i, oy/k, ox/k] * W[i, o, oy%k, ox%k]
// with PyTorch's [c_in, c_out, k, k] weights, summed over i in order, no fused multiply-adds.
// The output starts at y_off so it can land after the image channels of layer_rn's input.
// One invocation per output element. The CPU twin is kernels/src/twin/lift_maps.rs.

layout(local_size_x_id = 0, local_size_y_id = 1, local_size_z = 1) in;

layout(std430, set = 0, binding = 0) readonly buffer Input { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer Weight { float wt[]; };
layout(std430, set = 0, binding = 2) readonly buffer Bias { float bias[]; };
layout(std430, set = 0, binding = 3) buffer Output { float y[]; };

layout(push_constant) uniform Params {
    uint c_in;
    uint h;
    uint w;
    uint c_out;
    uint k;
    uint y_off;
} p;

void main() {
    uint ox = gl_GlobalInvocationID.x;
    uint oy = gl_GlobalInvocationID.y;
    uint o = gl_GlobalInvocationID.z;
    uint ow = p.w * p.k;
    uint oh = p.h * p.k;
    if (ox >= ow || oy >= oh || o >= p.c_out) {
        return;
    }
    uint iy = oy / p.k;
    uint ix = ox / p.k;
    uint ky = oy % p.k;
    uint kx = ox % p.k;
    precise float acc = bias[o];
    for (uint i = 0; i < p.c_in; i++) {
        acc = acc + x[(i * p.h + iy) * p.w + ix] * wt[((i * p.c_out + o) * p.k + ky) * p.k + kx];
    }
    y[p.y_off + (o * oh + oy) * ow + ox] = acc;
}
