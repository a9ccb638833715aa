#version 450
// LayerNorm over the rows of x [n, dim]: mean and biased variance as plain fp32 sums in index order
// (two passes, like PyTorch's reference definition), then (v - mean) * inv * gamma + beta.
// One invocation per row; the rows are short (dim <= 1024) and few (<= 1370). `precise` forbids fused
// multiply-adds so the CPU twin (kernels/src/twin/lift_dense.rs) can follow every rounding but sqrt's.

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;

layout(std430, set = 0, binding = 0) readonly buffer Input { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer Gamma { float gamma[]; };
layout(std430, set = 0, binding = 2) readonly buffer Beta { float beta[]; };
layout(std430, set = 0, binding = 3) writeonly buffer Output { float y[]; };

layout(push_constant) uniform Params {
    uint n;
    uint dim;
    float eps;
} p;

void main() {
    uint r = gl_GlobalInvocationID.x;
    if (r >= p.n) {
        return;
    }
    uint base = r * p.dim;
    precise float sum = 0.0;
    for (uint i = 0; i < p.dim; i++) {
        sum = sum + x[base + i];
    }
    precise float mean = sum / float(p.dim);
    precise float sq = 0.0;
    for (uint i = 0; i < p.dim; i++) {
        precise float d = x[base + i] - mean;
        sq = sq + d * d;
    }
    precise float var = sq / float(p.dim);
    precise float inv = 1.0 / sqrt(var + p.eps);
    for (uint i = 0; i < p.dim; i++) {
        precise float v = (x[base + i] - mean) * inv;
        y[base + i] = v * gamma[i] + beta[i];
    }
}
