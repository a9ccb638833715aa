#version 450
// The StyleUNet's convolutions (stride 1, "same" padding, KERNEL 1 or 3) on [C, H, W] fp32 maps, with
// weights as stored (fp32 / fp16 / int8, see stored_weights.glsl) and the refiner's epilogues fused:
//   acc    = sum_i s_i * (sum_{ky,kx} x * w)      (s_i = 1 unless MODULATED: StyleGAN2 modulation
//                                                 applied to activations, weights untouched)
//   v      = acc [* wscale_o if int8] [* f_o if DEMOD] [+ strength * noise_p if NOISE]
//   v      = v + bias_o, or with EPILOGUE >= 2: v + (bias_o + aux_p) (a residual / to-RGB skip)
//   v      = LeakyReLU(v) if LEAKY;  EPILOGUE 1: v * scale + shift (SFT, aux = [scale | shift])
//   EPILOGUE 3: v = clamp(sigmoid(v), 0, 1) (the final RGB)
// One invocation per output element (x: column, y: row, z: channel), no shared memory, no subgroups:
// portable to the Pi 5; `precise` forbids fused multiply-adds so the CPU twin
// (kernels/src/twin/refiner_conv.rs) matches bit for bit except the sigmoid's exp.
// Per-channel vectors (bias, int8 scales, s, f) live in one fp32 buffer at pushed offsets.

layout(local_size_x_id = 0, local_size_y_id = 1, local_size_z = 1) in;
layout(constant_id = 2) const uint KERNEL = 3;
layout(constant_id = 3) const uint WTYPE = 0;
layout(constant_id = 4) const bool HAS_BIAS = true;
layout(constant_id = 5) const bool MODULATED = false;
layout(constant_id = 6) const bool DEMOD = false;
layout(constant_id = 7) const bool NOISE = false;
layout(constant_id = 8) const bool LEAKY = false;
layout(constant_id = 9) const float SLOPE = 0.2;
layout(constant_id = 10) const uint EPILOGUE = 0;

layout(std430, set = 0, binding = 0) readonly buffer Input { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer Weight { uint wq[]; };
layout(std430, set = 0, binding = 2) readonly buffer Vectors { float vec[]; };
layout(std430, set = 0, binding = 3) readonly buffer Noise { float noise[]; };
layout(std430, set = 0, binding = 4) readonly buffer Aux { float aux[]; };
layout(std430, set = 0, binding = 5) writeonly buffer Output { float y[]; };

layout(push_constant) uniform Params {
    uint c_in;
    uint h;
    uint w;
    uint c_out;
    uint bias_off;
    uint wscale_off;
    uint s_off;
    uint f_off;
    uint noise_off;
    float strength;
    uint aux_off;
    uint y_off;
} p;

#include "stored_weights.glsl"

void main() {
    uint ox = gl_GlobalInvocationID.x;
    uint oy = gl_GlobalInvocationID.y;
    uint o = gl_GlobalInvocationID.z;
    if (ox >= p.w || oy >= p.h || o >= p.c_out) {
        return;
    }
    int pad = int(KERNEL / 2u);
    precise float acc = 0.0;
    for (uint i = 0; i < p.c_in; i++) {
        precise float part = 0.0;
        for (uint ky = 0; ky < KERNEL; ky++) {
            int iy = int(oy + ky) - pad;
            if (iy < 0 || iy >= int(p.h)) {
                continue;
            }
            for (uint kx = 0; kx < KERNEL; kx++) {
                int ix = int(ox + kx) - pad;
                if (ix < 0 || ix >= int(p.w)) {
                    continue;
                }
                part = part + x[(i * p.h + uint(iy)) * p.w + uint(ix)] * stored_weight(((o * p.c_in + i) * KERNEL + ky) * KERNEL + kx);
            }
        }
        if (MODULATED) {
            part = vec[p.s_off + i] * part;
        }
        acc = acc + part;
    }
    uint pix = oy * p.w + ox;
    uint idx = o * p.h * p.w + pix;
    precise float v = acc;
    if (WTYPE == 2) {
        v = v * vec[p.wscale_off + o];
    }
    if (DEMOD) {
        v = v * vec[p.f_off + o];
    }
    if (NOISE) {
        v = v + p.strength * noise[p.noise_off + pix];
    }
    if (EPILOGUE >= 2) {
        precise float extra = HAS_BIAS ? vec[p.bias_off + o] + aux[p.aux_off + idx] : aux[p.aux_off + idx];
        v = v + extra;
    } else if (HAS_BIAS) {
        v = v + vec[p.bias_off + o];
    }
    if (LEAKY && v < 0.0) {
        v = v * SLOPE;
    }
    if (EPILOGUE == 1) {
        uint n = p.c_out * p.h * p.w;
        v = v * aux[p.aux_off + idx] + aux[p.aux_off + n + idx];
    } else if (EPILOGUE == 3) {
        v = clamp(1.0 / (1.0 + exp(-v)), 0.0, 1.0);
    }
    y[p.y_off + idx] = v;
}
