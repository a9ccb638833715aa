#version 450
// The lift's linear layers: y[t, o] = act(b[o] + sum_i x[t, i] * W[o, i]) for n rows, W [n_out, n_in]
// as PyTorch stores it, fp32 accumulation in input order, no fused multiply-adds (`precise`).
// Rows of x and y sit at pushed offsets and strides, so one shader also writes a projection
// transposed into a [C, H*W] map (DPT) or into the columns of a wider row (vertex generator).
// ACT: 0 none, 1 ReLU, 2 GELU (erf form; erfc from its Chebyshev fit, fractional error < 1.2e-7).
// One invocation per output element: x -> output feature, y -> row. The CPU twin is
// kernels/src/twin/lift_dense.rs.

layout(local_size_x_id = 0, local_size_y_id = 1, local_size_z = 1) in;
layout(constant_id = 2) const uint ACT = 0;
layout(constant_id = 3) const bool HAS_BIAS = true;

layout(std430, set = 0, binding = 0) readonly buffer Input { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer Weight { float wt[]; };
layout(std430, set = 0, binding = 2) readonly buffer Bias { float bias[]; };
layout(std430, set = 0, binding = 3) buffer Output { float y[]; };

layout(push_constant) uniform Params {
    uint n;
    uint n_in;
    uint n_out;
    uint x_off;
    uint x_row;
    uint y_off;
    uint y_row;
    uint y_col;
} p;

// erfc(z) for z >= 0 times the sign rule; the twin spells out the same polynomial.
float erfc_cheb(float z) {
    precise float a = abs(z);
    precise float t = 1.0 / (1.0 + 0.5 * a);
    precise float poly = -0.82215223 + t * 0.17087277;
    poly = 1.48851587 + t * poly;
    poly = -1.13520398 + t * poly;
    poly = 0.27886807 + t * poly;
    poly = -0.18628806 + t * poly;
    poly = 0.09678418 + t * poly;
    poly = 0.37409196 + t * poly;
    poly = 1.00002368 + t * poly;
    poly = -1.26551223 + t * poly;
    precise float r = t * exp(-a * a + poly);
    return z >= 0.0 ? r : 2.0 - r;
}

void main() {
    uint o = gl_GlobalInvocationID.x;
    uint t = gl_GlobalInvocationID.y;
    if (o >= p.n_out || t >= p.n) {
        return;
    }
    precise float acc = HAS_BIAS ? bias[o] : 0.0;
    uint xb = p.x_off + t * p.x_row;
    uint wb = o * p.n_in;
    for (uint i = 0; i < p.n_in; i++) {
        acc = acc + x[xb + i] * wt[wb + i];
    }
    if (ACT == 1) {
        acc = max(acc, 0.0);
    } else if (ACT == 2) {
        // gelu(v) = 0.5 v (1 + erf(v / sqrt 2)) = 0.5 v erfc(-v / sqrt 2)
        precise float z = -acc * 0.70710678118654752;
        acc = 0.5 * acc * erfc_cheb(z);
    }
    y[p.y_off + t * p.y_row + o * p.y_col] = acc;
}
