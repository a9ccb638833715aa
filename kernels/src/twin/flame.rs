//! Twin of `flame_lbs.comp`: per vertex, expression blendshapes and pose correctives on the identity
//! mesh, then linear blend skinning with host-computed joint transforms and the FLAME scale.

use super::SpecValue;

/// Workgroup of `flame_lbs.comp` (invocations along x, one per vertex).
pub const WORKGROUP: u32 = 64;

/// Push constants of `flame_lbs.comp`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct FlamePush {
    pub vertices: u32,
    /// Expression coefficients E.
    pub expr: u32,
    /// Columns per coordinate of `shapedirs` (shape + expression); expression columns are the last E.
    pub stride: u32,
    /// Pose-feature length P (`(joints - 1) * 9`).
    pub pose: u32,
    pub joints: u32,
    pub scale: f32,
}

impl FlamePush {
    /// Length of the per-frame `params` buffer: expcode, pose feature, `[J, 3, 4]` transforms.
    pub fn params_len(&self) -> usize {
        (self.expr + self.pose + 12 * self.joints) as usize
    }

    /// Workgroups along x.
    pub fn dispatch(&self) -> (u32, u32, u32) {
        (super::groups(self.vertices as usize, WORKGROUP), 1, 1)
    }
}

/// Specialization constants in `constant_id` order.
pub fn spec_constants() -> Vec<SpecValue> {
    vec![SpecValue::U32(WORKGROUP)]
}

/// What `flame_lbs.comp` computes: `positions[..3 V]` from the buffers bound at 0..4.
pub fn flame_lbs(p: &FlamePush, identity: &[f32], shapedirs: &[f32], posedirs: &[f32], lbs: &[f32], params: &[f32], positions: &mut [f32]) {
    let (v, e, d, pd, j) = (p.vertices as usize, p.expr as usize, p.stride as usize, p.pose as usize, p.joints as usize);
    assert!(identity.len() >= 3 * v && shapedirs.len() >= 3 * v * d && posedirs.len() >= 3 * v * pd, "flame twin: mesh lengths");
    assert!(lbs.len() >= v * j && params.len() >= p.params_len() && positions.len() >= 3 * v, "flame twin: buffer lengths");
    let shape = d - e;
    let tf = e + pd;
    for vi in 0..v {
        let mut q = [0f32; 3];
        for (k, qk) in q.iter_mut().enumerate() {
            let row = vi * 3 + k;
            let mut ex = 0f32;
            for i in 0..e {
                ex += shapedirs[row * d + shape + i] * params[i];
            }
            let mut c = 0f32;
            for i in 0..pd {
                c += posedirs[row * pd + i] * params[e + i];
            }
            *qk = (identity[row] + ex) + c;
        }
        let mut m = [0f32; 12];
        for (a, ma) in m.iter_mut().enumerate() {
            let mut s = 0f32;
            for jj in 0..j {
                s += lbs[vi * j + jj] * params[tf + jj * 12 + a];
            }
            *ma = s;
        }
        for a in 0..3 {
            let x = m[a * 4] * q[0] + m[a * 4 + 1] * q[1];
            let y = x + m[a * 4 + 2] * q[2];
            positions[vi * 3 + a] = (y + m[a * 4 + 3]) * p.scale;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, seeded, Tolerance};

    /// The textbook formula in f64: v' = s * (sum_j w_j G_j) (T + S_e psi + P theta), G_j = [R | t].
    #[allow(clippy::too_many_arguments)]
    fn reference(p: &FlamePush, identity: &[f32], sd: &[f32], pd: &[f32], lbs: &[f32], params: &[f32]) -> Vec<f32> {
        let (v, e, d, np, j) = (p.vertices as usize, p.expr as usize, p.stride as usize, p.pose as usize, p.joints as usize);
        let mut out = vec![0f32; 3 * v];
        for vi in 0..v {
            let rest: Vec<f64> = (0..3)
                .map(|k| {
                    let row = vi * 3 + k;
                    let expr: f64 = (0..e).map(|i| sd[row * d + d - e + i] as f64 * params[i] as f64).sum();
                    let pose: f64 = (0..np).map(|i| pd[row * np + i] as f64 * params[e + i] as f64).sum();
                    identity[row] as f64 + expr + pose
                })
                .collect();
            for a in 0..3 {
                let g = |c: usize| (0..j).map(|jj| lbs[vi * j + jj] as f64 * params[e + np + jj * 12 + a * 4 + c] as f64).sum::<f64>();
                let x = g(0) * rest[0] + g(1) * rest[1] + g(2) * rest[2] + g(3);
                out[vi * 3 + a] = (x * p.scale as f64) as f32;
            }
        }
        out
    }

    #[test]
    fn flame_twin_matches_the_skinning_formula() {
        let p = FlamePush { vertices: 37, expr: 7, stride: 12, pose: 36, joints: 5, scale: 5.0 };
        let (v, d) = (37, 12);
        let identity = seeded(1, 3 * v);
        let sd: Vec<f32> = seeded(2, 3 * v * d).iter().map(|x| x * 0.01).collect();
        let pd: Vec<f32> = seeded(3, 3 * v * 36).iter().map(|x| x * 0.01).collect();
        let lbs: Vec<f32> = seeded(4, v * 5).iter().map(|x| 0.2 + 0.1 * x).collect();
        let params = seeded(5, p.params_len());
        let mut got = vec![0f32; 3 * v];
        flame_lbs(&p, &identity, &sd, &pd, &lbs, &params, &mut got);
        // f32 sums of at most 36 terms of magnitude ~1 against an f64 oracle: relative error ~1e-6.
        assert_close("flame_lbs twin", &got, &reference(&p, &identity, &sd, &pd, &lbs, &params), Tolerance::Fp32);
    }

    #[test]
    fn identity_transforms_and_zero_codes_return_the_scaled_identity() {
        let p = FlamePush { vertices: 5, expr: 2, stride: 4, pose: 9, joints: 2, scale: 2.0 };
        let identity = seeded(7, 15);
        let mut params = vec![0f32; p.params_len()];
        for jj in 0..2 {
            for a in 0..3 {
                params[11 + jj * 12 + a * 4 + a] = 1.0;
            }
        }
        let mut got = vec![0f32; 15];
        flame_lbs(&p, &identity, &seeded(8, 60), &seeded(9, 135), &[0.5; 10], &params, &mut got);
        let want: Vec<f32> = identity.iter().map(|x| x * 2.0).collect();
        assert_close("scaled identity", &got, &want, Tolerance::Custom { abs: 0.0, rel: 0.0 });
    }
}
