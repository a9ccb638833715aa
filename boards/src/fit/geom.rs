//! Small fixed-size f64 geometry for the fit: 3x3 matrices, axis-angle rotations (FLAME's `batch_rodrigues`
//! without its 1e-8 offset, which moves a landmark by under 1e-7 px) and their analytic derivatives.

// Fixed-size 3x3 matrix code reads better with explicit indices.
#![allow(clippy::needless_range_loop)]

pub type Mat3 = [[f64; 3]; 3];
pub type Vec3 = [f64; 3];

pub const IDENTITY: Mat3 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

/// `[v]x`, the matrix with `[v]x w = v x w`.
pub fn skew(v: Vec3) -> Mat3 {
    [[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]]
}

pub fn mul(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut out = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            out[i][j] = a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j];
        }
    }
    out
}

pub fn mul_vec(a: &Mat3, v: Vec3) -> Vec3 {
    [
        a[0][0] * v[0] + a[0][1] * v[1] + a[0][2] * v[2],
        a[1][0] * v[0] + a[1][1] * v[1] + a[1][2] * v[2],
        a[2][0] * v[0] + a[2][1] * v[1] + a[2][2] * v[2],
    ]
}

pub fn transpose(a: &Mat3) -> Mat3 {
    let mut out = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            out[i][j] = a[j][i];
        }
    }
    out
}

pub fn cross(a: Vec3, b: Vec3) -> Vec3 {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

fn norm(v: Vec3) -> f64 {
    (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
}

/// Axis-angle to rotation matrix (column convention, `R v` rotates `v` by |r| about r).
pub fn rodrigues(r: Vec3) -> Mat3 {
    let angle = norm(r);
    if angle < 1e-12 {
        return IDENTITY;
    }
    let k = skew([r[0] / angle, r[1] / angle, r[2] / angle]);
    let kk = mul(&k, &k);
    let (s, c) = angle.sin_cos();
    let mut out = IDENTITY;
    for i in 0..3 {
        for j in 0..3 {
            out[i][j] += s * k[i][j] + (1.0 - c) * kk[i][j];
        }
    }
    out
}

/// `dR/dr_i` for i = 0..3 at `r` (Gallego and Yezzi, "A compact formula for the derivative of a 3-D
/// rotation in exponential coordinates", 2015): `(r_i [r]x + [r x (I - R) e_i]x) R / |r|^2`, and `[e_i]x`
/// at r = 0.
pub fn rodrigues_derivatives(r: Vec3) -> [Mat3; 3] {
    let angle2 = r[0] * r[0] + r[1] * r[1] + r[2] * r[2];
    let mut out = [[[0.0; 3]; 3]; 3];
    if angle2 < 1e-16 {
        for (i, d) in out.iter_mut().enumerate() {
            let mut e = [0.0; 3];
            e[i] = 1.0;
            *d = skew(e);
        }
        return out;
    }
    let rot = rodrigues(r);
    let rx = skew(r);
    for (i, d) in out.iter_mut().enumerate() {
        // (I - R) e_i is column i of I - R.
        let col = [
            -rot[0][i] + if i == 0 { 1.0 } else { 0.0 },
            -rot[1][i] + if i == 1 { 1.0 } else { 0.0 },
            -rot[2][i] + if i == 2 { 1.0 } else { 0.0 },
        ];
        let b = skew(cross(r, col));
        let mut a = [[0.0; 3]; 3];
        for p in 0..3 {
            for q in 0..3 {
                a[p][q] = (r[i] * rx[p][q] + b[p][q]) / angle2;
            }
        }
        *d = mul(&a, &rot);
    }
    out
}

/// Re-orthonormalises a near-rotation (Gram-Schmidt on the rows), so accumulated updates stay a rotation
/// to f64 precision.
pub fn orthonormalize(m: &Mat3) -> Mat3 {
    let r0 = m[0];
    let n0 = norm(r0).max(1e-300);
    let r0 = [r0[0] / n0, r0[1] / n0, r0[2] / n0];
    let d = r0[0] * m[1][0] + r0[1] * m[1][1] + r0[2] * m[1][2];
    let r1 = [m[1][0] - d * r0[0], m[1][1] - d * r0[1], m[1][2] - d * r0[2]];
    let n1 = norm(r1).max(1e-300);
    let r1 = [r1[0] / n1, r1[1] / n1, r1[2] / n1];
    [r0, r1, cross(r0, r1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rodrigues_derivatives_match_central_differences() {
        // Central differences with h = 1e-6 have O(h^2) = 1e-12 truncation and ~1e-10 rounding error.
        for r in [[0.0, 0.0, 0.0], [0.3, -0.2, 0.1], [1e-9, 0.0, 2e-9], [-1.2, 0.4, 2.0]] {
            let d = rodrigues_derivatives(r);
            for i in 0..3 {
                let h = 1e-6;
                let (mut a, mut b) = (r, r);
                a[i] += h;
                b[i] -= h;
                let (ra, rb) = (rodrigues(a), rodrigues(b));
                for p in 0..3 {
                    for q in 0..3 {
                        let fd = (ra[p][q] - rb[p][q]) / (2.0 * h);
                        assert!((fd - d[i][p][q]).abs() < 1e-7, "r {r:?} d/dr{i} [{p}][{q}]: {} vs {fd}", d[i][p][q]);
                    }
                }
            }
        }
    }

    #[test]
    fn rodrigues_is_a_rotation_by_the_vector_length_about_its_axis() {
        let r = rodrigues([0.0, 0.0, std::f64::consts::FRAC_PI_2]);
        let v = mul_vec(&r, [1.0, 0.0, 0.0]);
        assert!((v[0]).abs() < 1e-15 && (v[1] - 1.0).abs() < 1e-15 && v[2].abs() < 1e-15, "{v:?}");
        let m = mul(&r, &transpose(&r));
        for i in 0..3 {
            for j in 0..3 {
                assert!((m[i][j] - IDENTITY[i][j]).abs() < 1e-15);
            }
        }
    }

    #[test]
    fn orthonormalize_repairs_a_slightly_scaled_rotation() {
        let mut m = rodrigues([0.2, 0.5, -0.3]);
        m[1][2] += 1e-4;
        m[0][0] *= 1.001;
        let o = orthonormalize(&m);
        let p = mul(&o, &transpose(&o));
        for i in 0..3 {
            for j in 0..3 {
                assert!((p[i][j] - IDENTITY[i][j]).abs() < 1e-14);
            }
        }
    }
}
