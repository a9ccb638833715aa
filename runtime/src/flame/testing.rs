//! Seeded FLAME arrays in the official layout, for tests and benches that must not need the
//! licence-gated asset. The values are shaped like real FLAME data where it matters: skinning weights
//! and joint regressor rows are non-negative and sum to 1, and the jaw's pose correctives are zero
//! wherever the jaw weight is zero (so a jaw rotation moves only jaw-weighted vertices).

use gaga_kernels::testing::seeded;

use crate::config::ModelConfig;
use crate::weights::WeightMap;

/// Index of the jaw joint in FLAME.
pub const JAW: usize = 2;

/// Whether seeded vertex `v` has a non-zero jaw skinning weight (one vertex in three).
pub fn has_jaw_weight(v: usize) -> bool {
    v.is_multiple_of(3)
}

/// Inserts `flame.*` tensors for `cfg.flame` into `w`.
pub fn insert_seeded_flame(w: &mut WeightMap, cfg: &ModelConfig, seed: u64) {
    let f = &cfg.flame;
    let (v, j) = (f.vertices, f.joints);
    let d = f.shape_params + f.expr_params;
    let pose_dim = (j - 1) * 9;
    let scaled = |s: u64, n: usize, k: f32| seeded(seed.wrapping_mul(31).wrapping_add(s), n).into_iter().map(|x| x * k).collect::<Vec<_>>();

    w.insert("flame.v_template", vec![v, 3], scaled(1, v * 3, 0.1));
    w.insert("flame.shapedirs", vec![v, 3, d], scaled(2, v * 3 * d, 1e-3));

    let mut weights = scaled(3, v * j, 0.5).into_iter().map(|x| x + 0.5).collect::<Vec<_>>();
    for vi in 0..v {
        let row = &mut weights[vi * j..(vi + 1) * j];
        if !has_jaw_weight(vi) {
            row[JAW] = 0.0;
        }
        let sum: f32 = row.iter().sum();
        row.iter_mut().for_each(|x| *x /= sum);
    }
    let mut posedirs = scaled(4, v * 3 * pose_dim, 1e-3);
    for vi in (0..v).filter(|&vi| !has_jaw_weight(vi)) {
        for k in 0..3 {
            let row = &mut posedirs[(vi * 3 + k) * pose_dim..(vi * 3 + k + 1) * pose_dim];
            row[(JAW - 1) * 9..JAW * 9].iter_mut().for_each(|x| *x = 0.0);
        }
    }
    w.insert("flame.weights", vec![v, j], weights);
    w.insert("flame.posedirs", vec![v, 3, pose_dim], posedirs);

    // Each joint averages its own tenth of the vertices.
    let mut reg = vec![0f32; j * v];
    for jj in 0..j {
        let members: Vec<usize> = (0..v).filter(|vi| vi % 10 == jj).collect();
        for &vi in &members {
            reg[jj * v + vi] = 1.0 / members.len() as f32;
        }
    }
    w.insert("flame.J_regressor", vec![j, v], reg);

    // Official FLAME parents are [-1, 0, 1, 1, 1]; the root entry is ignored.
    let mut kintree = vec![0f32; 2 * j];
    for jj in 0..j {
        kintree[jj] = match jj {
            0 => 4294967295.0,
            1 => 0.0,
            _ => 1.0,
        };
        kintree[j + jj] = jj as f32;
    }
    w.insert("flame.kintree_table", vec![2, j], kintree);
    let faces = (0..f.faces * 3).map(|i| ((i * 7 + i / 3) % v) as f32).collect();
    w.insert("flame.faces", vec![f.faces, 3], faces);
}
