#version 450
// StyleGAN2 demodulation factors for one modulated conv, per frame, without touching its weights:
//   f_o = gain / sqrt(sum_i q[o, i] * s_i * s_i + 1e-8)
// where q[o, i] = sum_k w[o, i, k]^2 is precomputed at load and s is this frame's modulation
// (already in `vec` at s_off). Sums in fp32 in input-channel order, like the CPU refiner.
// One invocation per output channel. The CPU twin is kernels/src/twin/demod.rs.

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;

layout(std430, set = 0, binding = 0) readonly buffer SquareSums { float q[]; };
layout(std430, set = 0, binding = 1) buffer Vectors { float vec[]; };

layout(push_constant) uniform Params {
    uint c_in;
    uint c_out;
    uint s_off;
    uint f_off;
    float gain;
} p;

void main() {
    uint o = gl_GlobalInvocationID.x;
    if (o >= p.c_out) {
        return;
    }
    precise float sum = 0.0;
    for (uint i = 0; i < p.c_in; i++) {
        float s = vec[p.s_off + i];
        sum = sum + q[o * p.c_in + i] * s * s;
    }
    vec[p.f_off + o] = p.gain / sqrt(sum + 1e-8);
}
