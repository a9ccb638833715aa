use gaga_kernels::testing::{assert_close, seeded, Tolerance};

use super::testing::{has_jaw_weight, insert_seeded_flame};
use super::*;
use crate::weights::WeightMap;

fn seeded_model() -> (WeightMap, ModelConfig) {
    let cfg = ModelConfig::small();
    let mut w = WeightMap::default();
    insert_seeded_flame(&mut w, &cfg, 7);
    (w, cfg)
}

fn t(w: &WeightMap, name: &str) -> Vec<f64> {
    w.tensors[name].1.iter().map(|&x| x as f64).collect()
}

/// Plain f64 transcription of `lbs.py` with 4x4 homogeneous matrices, as the oracle.
fn reference_lbs(w: &WeightMap, cfg: &ModelConfig, shape: &[f32], exp: &[f32], pose: &[f32; 6], eye: &[f32; 6]) -> Vec<f32> {
    let (v, j, s, e) = (cfg.flame.vertices, cfg.flame.joints, cfg.flame.shape_params, cfg.flame.expr_params);
    let (tmpl, dirs, pdirs, reg, wts) =
        (t(w, "flame.v_template"), t(w, "flame.shapedirs"), t(w, "flame.posedirs"), t(w, "flame.J_regressor"), t(w, "flame.weights"));
    let betas: Vec<f64> = shape.iter().chain(exp).map(|&x| x as f64).collect();
    let vs: Vec<f64> = (0..v * 3).map(|i| tmpl[i] + (0..s + e).map(|l| dirs[i * (s + e) + l] * betas[l]).sum::<f64>()).collect();
    let jx: Vec<[f64; 3]> = (0..j).map(|jj| std::array::from_fn(|k| (0..v).map(|vi| reg[jj * v + vi] * vs[vi * 3 + k]).sum())).collect();
    let full = [pose[0], pose[1], pose[2], 0.0, 0.0, 0.0, pose[3], pose[4], pose[5], eye[0], eye[1], eye[2], eye[3], eye[4], eye[5]];
    let rots: Vec<[[f64; 3]; 3]> = (0..j)
        .map(|jj| {
            let r: Vec<f64> = full[jj * 3..jj * 3 + 3].iter().map(|&x| x as f64).collect();
            let ang = r.iter().map(|x| (x + 1e-8).powi(2)).sum::<f64>().sqrt();
            let (x, y, z) = (r[0] / ang, r[1] / ang, r[2] / ang);
            let k = [[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]];
            std::array::from_fn(|a| {
                std::array::from_fn(|b| {
                    let kk: f64 = (0..3).map(|m| k[a][m] * k[m][b]).sum();
                    (a == b) as i32 as f64 + ang.sin() * k[a][b] + (1.0 - ang.cos()) * kk
                })
            })
        })
        .collect();
    let parents = [0usize, 0, 1, 1, 1];
    let mut g = vec![[[0f64; 4]; 4]; j];
    for jj in 0..j {
        let mut local = [[0f64; 4]; 4];
        for a in 0..3 {
            local[a][..3].copy_from_slice(&rots[jj][a]);
            local[a][3] = jx[jj][a] - if jj > 0 { jx[parents[jj]][a] } else { 0.0 };
        }
        local[3][3] = 1.0;
        g[jj] = if jj == 0 {
            local
        } else {
            std::array::from_fn(|a| std::array::from_fn(|b| (0..4).map(|m| g[parents[jj]][a][m] * local[m][b]).sum()))
        };
    }
    for (jj, gj) in g.iter_mut().enumerate() {
        for a in 0..3 {
            gj[a][3] -= (0..3).map(|b| gj[a][b] * jx[jj][b]).sum::<f64>();
        }
    }
    let pf: Vec<f64> =
        (1..j).flat_map(|jj| (0..9).map(move |q| (jj, q))).map(|(jj, q)| rots[jj][q / 3][q % 3] - (q / 3 == q % 3) as i32 as f64).collect();
    let mut out = vec![0f32; v * 3];
    for vi in 0..v {
        let p: Vec<f64> =
            (0..3).map(|k| vs[vi * 3 + k] + (0..pf.len()).map(|q| pdirs[(vi * 3 + k) * pf.len() + q] * pf[q]).sum::<f64>()).collect();
        for a in 0..3 {
            let x: f64 = (0..j).map(|jj| wts[vi * j + jj] * ((0..3).map(|b| g[jj][a][b] * p[b]).sum::<f64>() + g[jj][a][3])).sum();
            out[vi * 3 + a] = (x * cfg.flame.scale as f64) as f32;
        }
    }
    out
}

fn codes(cfg: &ModelConfig) -> (Vec<f32>, Vec<f32>) {
    (seeded(11, cfg.flame.shape_params), seeded(12, cfg.flame.expr_params))
}

#[test]
fn rodrigues_quarter_turn_about_z_maps_x_to_y() {
    let r = rodrigues([0.0, 0.0, std::f32::consts::FRAC_PI_2]);
    let want = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]];
    // f32 sin/cos of pi/2 and the 1e-8 offset leave errors of a few ulps.
    assert_close("rodrigues", r.as_flattened(), want.as_flattened(), Tolerance::Custom { abs: 1e-6, rel: 0.0 });
}

#[test]
fn rodrigues_of_zero_is_exactly_identity() {
    let r = rodrigues([0.0; 3]);
    assert_eq!(r, [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
}

#[test]
fn zero_pose_and_expression_give_template_plus_shape_blendshapes_times_scale() {
    let (w, cfg) = seeded_model();
    let mut flame = Flame::new(&w, &cfg).expect("seeded FLAME loads");
    let (shape, _) = codes(&cfg);
    flame.set_identity(&shape).expect("identity");
    let mut out = vec![0f32; cfg.flame.vertices * 3];
    flame.pose(&[0.0; 100][..cfg.flame.expr_params], &[0.0; 6], &[0.0; 6], "0", &mut out).expect("pose");
    let (tmpl, dirs) = (&w.tensors["flame.v_template"].1, &w.tensors["flame.shapedirs"].1);
    let d = cfg.flame.shape_params + cfg.flame.expr_params;
    let want: Vec<f32> = (0..out.len())
        .map(|i| {
            (tmpl[i] as f64 + (0..shape.len()).map(|l| dirs[i * d + l] as f64 * shape[l] as f64).sum::<f64>()) as f32 * cfg.flame.scale
        })
        .collect();
    // Identity rotations; only the chain's J_i - J_p + J_p round trip differs from exact (fp32 ulps).
    assert_close("rest pose", &out, &want, Tolerance::Fp32);
}

/// The seeded FLAME (its expression directions as scaled i16 rows with `narrow`) posed once, and the f64
/// reference.
fn posed_and_reference(narrow: bool) -> (Vec<f32>, Vec<f32>) {
    let (w, cfg) = seeded_model();
    let mut flame = Flame::new(&w, &cfg).expect("seeded FLAME loads");
    if narrow {
        let f32_bytes = flame.expression_direction_bytes();
        flame.narrow_expression_directions();
        let rows = cfg.flame.vertices * 3;
        assert_eq!(flame.expression_direction_bytes(), f32_bytes / 2 + 4 * rows, "two bytes a value, a scale a row");
    }
    let (shape, exp) = codes(&cfg);
    let pose = [0.1, -0.2, 0.05, 0.3, 0.02, -0.01];
    let eye = [0.05, 0.1, 0.0, -0.05, 0.1, 0.02];
    flame.set_identity(&shape).expect("identity");
    let mut out = vec![0f32; cfg.flame.vertices * 3];
    flame.pose(&exp, &pose, &eye, "0", &mut out).expect("pose");
    (out, reference_lbs(&w, &cfg, &shape, &exp, &pose, &eye))
}

#[test]
fn posed_vertices_match_the_f64_lbs_reference() {
    let (out, want) = posed_and_reference(false);
    // fp32 sums of 400 blendshape terms and 5023 regressor terms against f64: ~1e-6 relative.
    assert_close("posed vertices", &out, &want, Tolerance::Custom { abs: 1e-6, rel: 1e-5 });
}

#[test]
fn pure_jaw_rotation_moves_only_jaw_weighted_vertices() {
    let (w, cfg) = seeded_model();
    let mut flame = Flame::new(&w, &cfg).expect("seeded FLAME loads");
    let (shape, exp) = codes(&cfg);
    flame.set_identity(&shape).expect("identity");
    let n = cfg.flame.vertices * 3;
    let (mut rest, mut open) = (vec![0f32; n], vec![0f32; n]);
    flame.pose(&exp, &[0.0; 6], &[0.0; 6], "rest", &mut rest).expect("pose");
    flame.pose(&exp, &[0.0, 0.0, 0.0, 0.4, 0.0, 0.0], &[0.0; 6], "open", &mut open).expect("pose");
    let mut moved = 0;
    for v in 0..cfg.flame.vertices {
        let d = (0..3).map(|k| (open[v * 3 + k] - rest[v * 3 + k]).abs()).fold(0f32, f32::max);
        if has_jaw_weight(v) {
            moved += (d > 1e-4) as usize;
        } else {
            assert!(d < 1e-6, "vertex {v} without jaw weight moved by {d}");
        }
    }
    assert!(moved > cfg.flame.vertices / 4, "only {moved} jaw-weighted vertices moved");
}

#[test]
fn wrong_code_lengths_are_errors_naming_the_field() {
    let (w, cfg) = seeded_model();
    let mut flame = Flame::new(&w, &cfg).expect("seeded FLAME loads");
    let err = flame.set_identity(&[0.0; 3]).expect_err("short shapecode");
    assert!(err.to_string().contains("shapecode"), "{err}");
    flame.set_identity(&vec![0.0; cfg.flame.shape_params]).expect("identity");
    let mut out = vec![0f32; cfg.flame.vertices * 3];
    let err = flame.pose(&[0.0; 5], &[0.0; 6], &[0.0; 6], "frame_7", &mut out).expect_err("short expcode");
    assert!(err.to_string().contains("expcode") && err.to_string().contains("frame_7"), "{err}");
}

#[test]
fn bad_kintree_is_an_error_not_a_panic() {
    let (mut w, cfg) = seeded_model();
    let j = cfg.flame.joints;
    let mut kt = w.tensors["flame.kintree_table"].1.clone();
    kt[2] = 4.0; // joint 2's parent after itself
    w.insert("flame.kintree_table", vec![2, j], kt);
    let err = Flame::new(&w, &cfg).err().expect("bad parent rejected");
    assert!(err.to_string().contains("parent of joint 2"), "{err}");
}

/// i16 expression directions (an int8 session's): about half the bytes, and posed vertices as close to the
/// f64 reference as fp32 directions are (each term moves by at most 2^-16 of its row's largest). The f16
/// directions they replace needed 2e-5 here.
#[test]
fn i16_expression_directions_pose_as_close_to_the_reference_as_f32() {
    let (out, want) = posed_and_reference(true);
    assert_close("posed vertices, i16 directions", &out, &want, Tolerance::Custom { abs: 1e-6, rel: 1e-5 });
}
