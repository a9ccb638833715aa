#version 450
// Splat pass 5 of 5: one workgroup per 16x16 tile, one invocation per pixel, 32 feature channels
// accumulated in fp32 registers. The tile's sorted list is walked in batches of 256 Gaussians staged in
// shared memory (7 words each: 7 KiB). Per pixel, the official rules in the CPU splatter's order:
// skip when power > 0 or alpha = min(0.99, opacity exp(power)) < 1/255; stop (without blending) when
// T (1 - alpha) < 1e-4; otherwise C += f alpha T. Output C + T bg, channel-major [32, H, W].
// `exp` is the CPU splatter's (`gaga_kernels::splat::project::exp`), not GLSL's, so both agree bit for
// bit. The workgroup leaves early once every pixel has stopped (a shared counter: no subgroup operations).
// Built twice (build.sh): fp32 output, and with -DSTORAGE_F16 an fp16 output image (accumulation stays
// fp32; one rounding at the store; needs storageBuffer16BitAccess only).
// Twin: kernels/src/twin/splat_raster.rs.

#ifdef STORAGE_F16
#extension GL_EXT_shader_16bit_storage : require
#define sfloat float16_t
#else
#define sfloat float
#endif

layout(local_size_x = 16, local_size_y = 16, local_size_z = 1) in;

layout(std430, set = 0, binding = 0) readonly buffer Offsets { uint offsets[]; };
layout(std430, set = 0, binding = 1) readonly buffer List { uint list[]; };
layout(std430, set = 0, binding = 2) readonly buffer Projected { uint rec[]; };
layout(std430, set = 0, binding = 3) readonly buffer Colors { float colors[]; };
layout(std430, set = 0, binding = 4) readonly buffer Camera { float cam[]; };
layout(std430, set = 0, binding = 5) readonly buffer Status { uint status[]; };
layout(std430, set = 0, binding = 6) writeonly buffer Image { sfloat image[]; };

layout(push_constant) uniform Params {
    uint n;
    uint width;
    uint height;
    uint grid_x;
    uint grid_y;
    uint capacity;
} p;

const uint CHANNELS = 32u;
const uint BATCH = 256u;
// Offset of the background in the camera buffer.
const uint BG = 40u;
const float MIN_ALPHA = 0.0039215688593685626983642578125;
const float MAX_ALPHA = 0.9900000095367431640625;
const float MIN_T = 0.0000999999974737875163555145263671875;

shared uint g_id[BATCH];
shared float g_x[BATCH];
shared float g_y[BATCH];
shared float g_a[BATCH];
shared float g_b[BATCH];
shared float g_c[BATCH];
shared float g_o[BATCH];
shared uint stopped;

bool is_nan(float v) {
    return (floatBitsToUint(v) & 0x7fffffffu) > 0x7f800000u;
}

// The CPU splatter's exp: Cephes range reduction, minimax polynomial, 2^n as two factors.
float cpu_exp(float x_in) {
    float x = is_nan(x_in) ? -110.0 : min(max(x_in, -110.0), 88.0);
    precise float shifted = x * 1.44269502162933349609375 + 12582912.0;
    precise float n = shifted - 12582912.0;
    precise float r = (x - n * 0.693359375) - n * -0.000212194441701285541057586669921875;
    precise float r2 = r * r;
    precise float poly = (((((0.000198756912141107022762298583984375 * r + 0.00139819993637502193450927734375) * r
        + 0.008333452045917510986328125) * r + 0.0416657961905002593994140625) * r
        + 0.1666666567325592041015625) * r + 0.5) * r2 + r + 1.0;
    int e = int(floatBitsToUint(shifted)) - 0x4B400000;
    int e1 = e >> 1;
    precise float v = poly * intBitsToFloat((e1 + 127) << 23) * intBitsToFloat((e - e1 + 127) << 23);
    return v;
}

void main() {
    uint lid = gl_LocalInvocationIndex;
    uint px = gl_WorkGroupID.x * 16u + gl_LocalInvocationID.x;
    uint py = gl_WorkGroupID.y * 16u + gl_LocalInvocationID.y;
    uint tile = gl_WorkGroupID.y * p.grid_x + gl_WorkGroupID.x;
    if (status[1] != 0u) {
        return;
    }
    bool inside = px < p.width && py < p.height;
    // Pixels outside the image count as stopped from the start.
    bool done = !inside;
    float acc[CHANNELS];
    for (uint ch = 0u; ch < CHANNELS; ch++) {
        acc[ch] = 0.0;
    }
    float t = 1.0;
    float pxf = float(px);
    float pyf = float(py);
    uint begin = offsets[tile];
    uint end = offsets[tile + 1u];
    for (uint start = begin; start < end; start += BATCH) {
        if (lid == 0u) {
            stopped = 0u;
        }
        barrier();
        if (done) {
            atomicAdd(stopped, 1u);
        }
        uint k = start + lid;
        if (k < end) {
            uint id = list[k];
            uint o = 12u * id;
            g_id[lid] = id;
            g_x[lid] = uintBitsToFloat(rec[o]);
            g_y[lid] = uintBitsToFloat(rec[o + 1u]);
            g_a[lid] = uintBitsToFloat(rec[o + 2u]);
            g_b[lid] = uintBitsToFloat(rec[o + 3u]);
            g_c[lid] = uintBitsToFloat(rec[o + 4u]);
            g_o[lid] = uintBitsToFloat(rec[o + 5u]);
        }
        memoryBarrierShared();
        barrier();
        if (stopped == 256u) {
            break;
        }
        uint count = min(BATCH, end - start);
        for (uint j = 0u; j < count && !done; j++) {
            precise float dx = g_x[j] - pxf;
            precise float dy = g_y[j] - pyf;
            precise float cdy = g_c[j] * dy * dy;
            precise float power = -0.5 * (g_a[j] * dx * dx + cdy) - g_b[j] * dx * dy;
            if (power > 0.0) {
                continue;
            }
            precise float a_raw = g_o[j] * cpu_exp(power);
            float alpha = min(a_raw, MAX_ALPHA);
            if (alpha < MIN_ALPHA) {
                continue;
            }
            precise float test_t = t * (1.0 - alpha);
            if (test_t < MIN_T) {
                done = true;
                break;
            }
            uint base = g_id[j] * CHANNELS;
            for (uint ch = 0u; ch < CHANNELS; ch++) {
                precise float w = colors[base + ch] * alpha * t;
                precise float s = acc[ch] + w;
                acc[ch] = s;
            }
            t = test_t;
        }
        // The next batch overwrites the shared arrays.
        barrier();
    }
    if (!inside) {
        return;
    }
    uint plane = p.width * p.height;
    uint pix = py * p.width + px;
    for (uint ch = 0u; ch < CHANNELS; ch++) {
        precise float v = acc[ch] + t * cam[BG + ch];
        image[ch * plane + pix] = sfloat(v);
    }
}
