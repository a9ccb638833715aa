#version 450
// Multi-head softmax self-attention on packed qkv [n, 3 * dim] (q | k | v, heads side by side), the
// naive way: one invocation per (query row, head) computes its scores twice (once for the max, once
// for the exponentials), accumulates the unnormalised weighted sum of v in a HEAD_DIM array, and
// divides by the sum of exponentials at the end (as the CPU kernel does). fp32 throughout, no shared
// memory. `scale` = head_dim^-0.5 comes from the host. The CPU twin is kernels/src/twin/lift_dense.rs.

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;
layout(constant_id = 1) const uint HEAD_DIM = 64;

layout(std430, set = 0, binding = 0) readonly buffer Qkv { float qkv[]; };
layout(std430, set = 0, binding = 1) writeonly buffer Output { float y[]; };

layout(push_constant) uniform Params {
    uint n;
    uint heads;
    float scale;
} p;

float score(uint i, uint j, uint h) {
    uint dim = p.heads * HEAD_DIM;
    uint qb = i * 3 * dim + h * HEAD_DIM;
    uint kb = j * 3 * dim + dim + h * HEAD_DIM;
    precise float s = 0.0;
    for (uint e = 0; e < HEAD_DIM; e++) {
        s = s + qkv[qb + e] * qkv[kb + e];
    }
    return s * p.scale;
}

void main() {
    uint i = gl_GlobalInvocationID.x;
    uint h = gl_GlobalInvocationID.y;
    if (i >= p.n || h >= p.heads) {
        return;
    }
    uint dim = p.heads * HEAD_DIM;
    float m = -3.402823466e38;
    for (uint j = 0; j < p.n; j++) {
        m = max(m, score(i, j, h));
    }
    precise float acc[HEAD_DIM];
    for (uint e = 0; e < HEAD_DIM; e++) {
        acc[e] = 0.0;
    }
    precise float sum = 0.0;
    for (uint j = 0; j < p.n; j++) {
        precise float pj = exp(score(i, j, h) - m);
        sum = sum + pj;
        uint vb = j * 3 * dim + 2 * dim + h * HEAD_DIM;
        for (uint e = 0; e < HEAD_DIM; e++) {
            acc[e] = acc[e] + pj * qkv[vb + e];
        }
    }
    for (uint e = 0; e < HEAD_DIM; e++) {
        y[i * dim + h * HEAD_DIM + e] = acc[e] / sum;
    }
}
