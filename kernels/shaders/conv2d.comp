#version 450
// 2-D convolution on [C, H, W] maps with PyTorch's [c_out, c_in, k, k] weights, fp32.
// One invocation per output element: x -> output column, y -> output row, z -> output channel.
// Sums in the reference's order (bias first, then c_in, ky, kx); `precise` forbids fused
// multiply-adds so the CPU twin (kernels/src/twin/conv2d.rs) can reproduce every rounding.
// No shared memory and no subgroup operations: portable down to the Raspberry Pi 5.
// Built twice (build.sh): fp32, and with -DSTORAGE_F16 (activations, weights and bias stored as fp16,
// arithmetic and accumulation in fp32; needs storageBuffer16BitAccess only, not shaderFloat16).

#ifdef STORAGE_F16
#extension GL_EXT_shader_16bit_storage : require
#define sfloat float16_t
#else
#define sfloat float
#endif

layout(local_size_x_id = 0, local_size_y_id = 1, local_size_z = 1) in;
layout(constant_id = 2) const uint KERNEL = 3;
layout(constant_id = 3) const uint STRIDE = 1;
layout(constant_id = 4) const bool HAS_BIAS = true;
layout(constant_id = 5) const bool LEAKY = false;
layout(constant_id = 6) const float SLOPE = 0.2;

layout(std430, set = 0, binding = 0) readonly buffer Input { sfloat x[]; };
layout(std430, set = 0, binding = 1) readonly buffer Weight { sfloat wt[]; };
layout(std430, set = 0, binding = 2) readonly buffer Bias { sfloat bias[]; };
layout(std430, set = 0, binding = 3) writeonly buffer Output { sfloat y[]; };

layout(push_constant) uniform Params {
    uint c_in;
    uint h;
    uint w;
    uint c_out;
    uint oh;
    uint ow;
    uint pad;
} p;

void main() {
    uint ox = gl_GlobalInvocationID.x;
    uint oy = gl_GlobalInvocationID.y;
    uint o = gl_GlobalInvocationID.z;
    if (ox >= p.ow || oy >= p.oh || o >= p.c_out) {
        return;
    }
    precise float acc = HAS_BIAS ? float(bias[o]) : 0.0;
    for (uint i = 0; i < p.c_in; i++) {
        for (uint ky = 0; ky < KERNEL; ky++) {
            int iy = int(oy * STRIDE + ky) - int(p.pad);
            if (iy < 0 || iy >= int(p.h)) {
                continue;
            }
            for (uint kx = 0; kx < KERNEL; kx++) {
                int ix = int(ox * STRIDE + kx) - int(p.pad);
                if (ix < 0 || ix >= int(p.w)) {
                    continue;
                }
                acc = acc + float(x[(i * p.h + uint(iy)) * p.w + uint(ix)]) * float(wt[((o * p.c_in + i) * KERNEL + ky) * KERNEL + kx]);
            }
        }
    }
    if (LEAKY && acc < 0.0) {
        acc = acc * SLOPE;
    }
    y[(o * p.oh + oy) * p.ow + ox] = sfloat(acc);
}
