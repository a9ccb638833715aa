#version 450
// y = act(W x + b) for one vector: the StyleUNet's final_linear, its style MLP and every modulation.
// W [n_out, n_in] is read as stored (stored_weights.glsl); int8 scales multiply the finished sum.
// PRENORM first applies StyleGAN2's NormStyleCode to x (x * 1/sqrt(mean(x^2) + 1e-8)), each
// invocation computing the norm itself (n_in is 512: cheaper than a separate pass and a barrier).
// One invocation per output; these are ~1 MFLOP each, so no tiling. Vectors (x, bias, scales, y) sit
// at pushed offsets so one buffer can hold a layer's parameters and its per-frame outputs.
// The CPU twin is kernels/src/twin/matvec.rs.

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;
layout(constant_id = 1) const uint WTYPE = 0;
layout(constant_id = 2) const bool PRENORM = false;
layout(constant_id = 3) const bool LEAKY = false;
layout(constant_id = 4) const float SLOPE = 0.2;

layout(std430, set = 0, binding = 0) readonly buffer Input { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer Weight { uint wq[]; };
layout(std430, set = 0, binding = 2) readonly buffer Vectors { float vec[]; };
layout(std430, set = 0, binding = 3) writeonly buffer Output { float y[]; };

layout(push_constant) uniform Params {
    uint n_in;
    uint n_out;
    uint x_off;
    uint bias_off;
    uint wscale_off;
    uint y_off;
} p;

#include "stored_weights.glsl"

void main() {
    uint o = gl_GlobalInvocationID.x;
    if (o >= p.n_out) {
        return;
    }
    precise float norm = 1.0;
    if (PRENORM) {
        precise float ss = 0.0;
        for (uint i = 0; i < p.n_in; i++) {
            ss = ss + x[p.x_off + i] * x[p.x_off + i];
        }
        norm = 1.0 / sqrt(ss / float(p.n_in) + 1e-8);
    }
    precise float acc = 0.0;
    for (uint i = 0; i < p.n_in; i++) {
        precise float xi = PRENORM ? x[p.x_off + i] * norm : x[p.x_off + i];
        acc = acc + xi * stored_weight(o * p.n_in + i);
    }
    if (WTYPE == 2) {
        acc = acc * vec[p.wscale_off + o];
    }
    acc = acc + vec[p.bias_off + o];
    if (LEAKY && acc < 0.0) {
        acc = acc * SLOPE;
    }
    y[p.y_off + o] = acc;
}
