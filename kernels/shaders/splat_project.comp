#version 450
// Splat pass 1 of 5: per-Gaussian preprocessing, step for step as the CPU splatter's
// `gaga_kernels::splat::project` (the official `preprocessCUDA`): near cull at view z <= 0.2, 3D
// covariance from the unnormalised quaternion, EWA projection with the +0.3 blur, conic, 3-sigma radius,
// pixel position, tile rectangle, depth. Visible Gaussians add 1 to each touched tile's counter.
// Every float operation is `precise` (no fused multiply-add) and in the CPU order, so the twin
// (kernels/src/twin/splat_project.rs) reproduces it; the double-precision `ndc2Pix` of the CUDA source is
// reproduced in fp32 by an error-free split (no shaderFloat64 needed).
// Record per Gaussian (12 words): x, y, conic a, b, c, opacity, depth (bits order like values, > 0.2),
// radius, tile rect x0, y0, x1, y1 (x1 == x0 when culled).

layout(local_size_x = 256, local_size_y = 1, local_size_z = 1) in;

layout(std430, set = 0, binding = 0) readonly buffer Positions { float pos[]; };
// Per Gaussian: scale xyz, quaternion wxyz, opacity (NaN when a colour is not finite: culled).
layout(std430, set = 0, binding = 1) readonly buffer Attributes { float attr[]; };
// view[16] row-major (row-vector convention), proj[16], tan_fov[2], focal_px[2], pad[4], background[32].
layout(std430, set = 0, binding = 2) readonly buffer Camera { float cam[]; };
layout(std430, set = 0, binding = 3) writeonly buffer Projected { uint rec[]; };
layout(std430, set = 0, binding = 4) buffer Counts { uint counts[]; };
// status[2]: visible Gaussians this frame (the scan pass copies it to status[3] and clears it).
layout(std430, set = 0, binding = 5) buffer Status { uint status[]; };

layout(push_constant) uniform Params {
    uint n;
    uint width;
    uint height;
    uint grid_x;
    uint grid_y;
    uint capacity;
} p;

const float NEAR_Z = 0.20000000298023223876953125;
const float EPS_W = 1.0000000116860974230803549289703369140625E-7;
const float CLAMP_FOV = 1.2999999523162841796875;
const float BLUR = 0.300000011920928955078125;
const float MIN_DISC = 0.100000001490116119384765625;

bool finite(float v) {
    return (floatBitsToUint(v) & 0x7f800000u) != 0x7f800000u;
}

bool is_nan(float v) {
    return (floatBitsToUint(v) & 0x7fffffffu) > 0x7f800000u;
}

// Rust's f32::max / f32::min: a NaN operand yields the other operand.
float rmax(float a, float b) {
    return is_nan(a) ? b : (is_nan(b) ? a : (a < b ? b : a));
}

float rmin(float a, float b) {
    return is_nan(a) ? b : (is_nan(b) ? a : (b < a ? b : a));
}

// glm-style column-major 3x3 product: out[c][r] = a[0][r] b[c][0] + a[1][r] b[c][1] + a[2][r] b[c][2].
void mul3(in float a[9], in float b[9], out float o[9]) {
    for (int c = 0; c < 3; c++) {
        for (int r = 0; r < 3; r++) {
            precise float s = a[r] * b[3 * c] + a[3 + r] * b[3 * c + 1] + a[6 + r] * b[3 * c + 2];
            o[3 * c + r] = s;
        }
    }
}

void transpose3(in float a[9], out float o[9]) {
    for (int c = 0; c < 3; c++) {
        for (int r = 0; r < 3; r++) {
            o[3 * c + r] = a[3 * r + c];
        }
    }
}

// (v + 1) * s - 1 in double, rounded to float, as the CUDA source's ndc2Pix; then * 0.5.
// Computed as the correctly rounded fp32 sum (s - 1) + hi*s + lo*s, where v = hi + lo splits v into two
// 12-bit halves so both products are exact (s <= 4096 has at most 12 significant bits); a three-term sum
// rounded once (TwoSum + round-to-odd, Boldo & Melquiond) equals the double computation whenever that
// is exact, i.e. except for |v| < 2^-29 (a point within 2^-20 px of the image centre).
float two_sum_err(float a, float b, float s) {
    precise float bb = s - a;
    precise float e = (a - (s - bb)) + (b - bb);
    return e;
}

float ndc2pix(float v, uint size) {
    precise float sf = float(size);
    precise float c = sf - 1.0;
    if (!(abs(v) < 1.0e30)) {
        precise float q = (v + 1.0) * sf - 1.0;
        precise float h = q * 0.5;
        return h;
    }
    precise float big = v * 4097.0;
    precise float hi = big - (big - v);
    precise float lo = v - hi;
    precise float ph = hi * sf;
    precise float pl = lo * sf;
    // Boldo-Melquiond: RN(a + b + c) = RN(th + RO(tl + ul)) with (uh, ul) = TwoSum(b, c), (th, tl) = TwoSum(a, uh).
    precise float uh = ph + pl;
    precise float ul = two_sum_err(ph, pl, uh);
    precise float th = c + uh;
    precise float tl = two_sum_err(c, uh, th);
    precise float w = tl + ul;
    precise float we = two_sum_err(tl, ul, w);
    if (we != 0.0 && (floatBitsToUint(w) & 1u) == 0u) {
        // Round to odd: step one ulp toward the discarded part.
        bool away = (we > 0.0) == (w > 0.0);
        w = uintBitsToFloat(away ? floatBitsToUint(w) + 1u : floatBitsToUint(w) - 1u);
    }
    precise float r = th + w;
    precise float h = r * 0.5;
    return h;
}

// getRect's bound: truncated toward zero, saturating (NaN -> 0), clamped to [0, n].
uint rect_bound(float v, uint n) {
    if (!(v >= 1.0)) {
        return 0u;
    }
    if (v >= float(n)) {
        return n;
    }
    return uint(v);
}

void cull(uint i) {
    for (uint k = 0u; k < 12u; k++) {
        rec[12u * i + k] = 0u;
    }
}

void project(uint i) {
    float mean[3] = float[3](pos[3u * i], pos[3u * i + 1u], pos[3u * i + 2u]);
    float a[8];
    bool ok = finite(mean[0]) && finite(mean[1]) && finite(mean[2]);
    for (uint k = 0u; k < 8u; k++) {
        a[k] = attr[8u * i + k];
        ok = ok && finite(a[k]);
    }
    if (!ok) {
        cull(i);
        return;
    }
    // to_view / to_clip: f(j) = m[0][j] p0 + m[1][j] p1 + m[2][j] p2 + m[3][j] (row-major m[row][col]).
    float t[3];
    for (int j = 0; j < 3; j++) {
        precise float s = cam[j] * mean[0] + cam[4 + j] * mean[1] + cam[8 + j] * mean[2] + cam[12 + j];
        t[j] = s;
    }
    if (is_nan(t[2]) || t[2] <= NEAR_Z) {
        cull(i);
        return;
    }
    float hom[4];
    for (int j = 0; j < 4; j++) {
        precise float s = cam[16 + j] * mean[0] + cam[20 + j] * mean[1] + cam[24 + j] * mean[2] + cam[28 + j];
        hom[j] = s;
    }
    precise float pw = 1.0 / (hom[3] + EPS_W);
    precise float ndx = hom[0] * pw;
    precise float ndy = hom[1] * pw;
    float px = ndc2pix(ndx, p.width);
    float py = ndc2pix(ndy, p.height);

    // cov3d: M = S R(q), Sigma = M^T M (column-major, glm order).
    float qr = a[3], qx = a[4], qy = a[5], qz = a[6];
    float rot[9];
    {
        precise float r00 = 1.0 - 2.0 * (qy * qy + qz * qz);
        precise float r01 = 2.0 * (qx * qy - qr * qz);
        precise float r02 = 2.0 * (qx * qz + qr * qy);
        precise float r10 = 2.0 * (qx * qy + qr * qz);
        precise float r11 = 1.0 - 2.0 * (qx * qx + qz * qz);
        precise float r12 = 2.0 * (qy * qz - qr * qx);
        precise float r20 = 2.0 * (qx * qz - qr * qy);
        precise float r21 = 2.0 * (qy * qz + qr * qx);
        precise float r22 = 1.0 - 2.0 * (qx * qx + qy * qy);
        rot = float[9](r00, r01, r02, r10, r11, r12, r20, r21, r22);
    }
    float sm[9] = float[9](a[0], 0.0, 0.0, 0.0, a[1], 0.0, 0.0, 0.0, a[2]);
    float m[9];
    mul3(sm, rot, m);
    float mt[9];
    transpose3(m, mt);
    float sigma[9];
    mul3(mt, m, sigma);

    // cov2d: EWA with the Jacobian's x/z, y/z clamped to +-1.3 tanfov.
    float fx = cam[34], fy = cam[35];
    precise float limx = CLAMP_FOV * cam[32];
    precise float limy = CLAMP_FOV * cam[33];
    float tz = t[2];
    precise float rx = t[0] / tz;
    precise float tx = rmin(rmax(rx, -limx), limx) * tz;
    precise float ry = t[1] / tz;
    precise float ty = rmin(rmax(ry, -limy), limy) * tz;
    precise float tz2 = tz * tz;
    precise float j00 = fx / tz;
    precise float j02 = -(fx * tx) / tz2;
    precise float j11 = fy / tz;
    precise float j12 = -(fy * ty) / tz2;
    float jm[9] = float[9](j00, 0.0, j02, 0.0, j11, j12, 0.0, 0.0, 0.0);
    float w[9] = float[9](cam[0], cam[4], cam[8], cam[1], cam[5], cam[9], cam[2], cam[6], cam[10]);
    float tm[9];
    mul3(w, jm, tm);
    // Upper triangle of Sigma as computeCov3D returns it, mirrored (Sigma[0][1] etc., never Sigma[1][0]).
    float vrk[9] = float[9](sigma[0], sigma[1], sigma[2], sigma[1], sigma[4], sigma[5], sigma[2], sigma[5], sigma[8]);
    float tmt[9];
    transpose3(tm, tmt);
    float vrkt[9];
    transpose3(vrk, vrkt);
    float left[9];
    mul3(tmt, vrkt, left);
    float cv[9];
    mul3(left, tm, cv);
    precise float c0 = cv[0] + BLUR;
    float c1 = cv[1];
    precise float c2 = cv[4] + BLUR;

    precise float det = c0 * c2 - c1 * c1;
    if (det == 0.0) {
        cull(i);
        return;
    }
    precise float det_inv = 1.0 / det;
    precise float ca = c2 * det_inv;
    precise float cb = -c1 * det_inv;
    precise float cc = c0 * det_inv;
    precise float mid = 0.5 * (c0 + c2);
    precise float disc = sqrt(rmax(mid * mid - det, MIN_DISC));
    precise float l1 = mid + disc;
    precise float l2 = mid - disc;
    precise float radius = ceil(3.0 * sqrt(rmax(l1, l2)));
    if (!(finite(ca) && finite(cb) && finite(cc) && finite(radius) && finite(px) && finite(py))) {
        cull(i);
        return;
    }
    // `radius as i32` saturates; the rectangle uses it as f32 again.
    float r = min(radius, 2147483648.0);
    precise float x0f = (px - r) / 16.0;
    precise float y0f = (py - r) / 16.0;
    precise float x1f = (px + r + 16.0 - 1.0) / 16.0;
    precise float y1f = (py + r + 16.0 - 1.0) / 16.0;
    uint x0 = rect_bound(x0f, p.grid_x), y0 = rect_bound(y0f, p.grid_y);
    uint x1 = rect_bound(x1f, p.grid_x), y1 = rect_bound(y1f, p.grid_y);
    if (x1 <= x0 || y1 <= y0) {
        cull(i);
        return;
    }
    uint o = 12u * i;
    rec[o] = floatBitsToUint(px);
    rec[o + 1u] = floatBitsToUint(py);
    rec[o + 2u] = floatBitsToUint(ca);
    rec[o + 3u] = floatBitsToUint(cb);
    rec[o + 4u] = floatBitsToUint(cc);
    rec[o + 5u] = floatBitsToUint(a[7]);
    rec[o + 6u] = floatBitsToUint(tz);
    rec[o + 7u] = uint(r);
    rec[o + 8u] = x0;
    rec[o + 9u] = y0;
    rec[o + 10u] = x1;
    rec[o + 11u] = y1;
    for (uint ty = y0; ty < y1; ty++) {
        for (uint tx = x0; tx < x1; tx++) {
            atomicAdd(counts[ty * p.grid_x + tx], 1u);
        }
    }
    atomicAdd(status[2], 1u);
}

void main() {
    uint step = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < p.n; i += step) {
        project(i);
    }
}
