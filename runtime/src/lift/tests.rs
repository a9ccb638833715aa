//! Lift tests on `ModelConfig::small()` with seeded weights: shapes of every stage, both quirks, the plane
//! geometry, the preprocessing, and errors that name what is wrong.

use super::generators::{normalize_across_rows, vertex_gaussians};
use super::testing::seeded_weights;
use super::*;
use crate::weights::WeightMap;
use gaga_kernels::act::sigmoid_scalar;
use gaga_kernels::testing::{assert_close, seeded, Tolerance};

const FRONTAL: crate::types::Transform = [[-1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 9.0144]];

fn source(cfg: &ModelConfig) -> (Image, SourceParams) {
    let s = cfg.image_size;
    let data = seeded(42, 3 * s * s).into_iter().map(|v| 0.5 + 0.5 * v).collect();
    let image = Image { width: s, height: s, data };
    (image, SourceParams { shapecode: seeded(43, cfg.flame.shape_params), transform: FRONTAL })
}

/// Zeroes a layer's weight and sets the chosen bias entries, so its raw outputs there are known exactly.
fn constant_outputs(w: &mut WeightMap, layer: &str, channels: std::ops::Range<usize>, value: f32) {
    let weight = w.tensors.get_mut(&format!("{layer}.weight")).expect("weight exists");
    let per_out: usize = weight.0.iter().skip(1).product();
    for c in channels.clone() {
        weight.1[c * per_out..(c + 1) * per_out].fill(0.0);
    }
    let bias = w.tensors.get_mut(&format!("{layer}.bias")).expect("bias exists");
    bias.1[channels].fill(value);
}

#[test]
fn lift_gives_every_stage_its_shape_and_the_official_order() {
    let cfg = ModelConfig::small();
    let w = seeded_weights(&cfg);
    let (image, src) = source(&cfg);
    let (avatar, trace) = lift_traced(&w, &cfg, &image, &src).expect("lift runs");
    let (d, p, v) = (&cfg.dino, cfg.plane_size, cfg.flame.vertices);
    let n = v + 2 * p * p;
    assert_eq!(trace.dino_input.len(), 3 * d.input_size * d.input_size);
    assert_eq!(trace.dino_layers.len(), 4);
    assert!(trace.dino_layers.iter().all(|l| l.len() == d.grid() * d.grid() * d.dim));
    assert_eq!(trace.global_feature, trace.dino_layers[3][..d.dim].to_vec());
    assert_eq!(trace.feature_map.len(), cfg.feature_dim * p * p);
    assert_eq!(trace.plane_points.len(), 3 * p * p);
    assert_eq!(trace.direnc.len(), 27);
    assert_eq!((avatar.count, avatar.channels), (n, 32));
    assert_eq!(avatar.positions.len(), 3 * n);
    assert_eq!(avatar.colors.len(), 32 * n);
    assert_eq!((avatar.opacities.len(), avatar.scales.len(), avatar.rotations.len()), (n, 3 * n, 4 * n));
    assert_eq!(avatar.shapecode, src.shapecode);
    assert!(avatar.positions[..3 * v].iter().all(|&x| x == 0.0), "vertex positions are placeholders");
    assert!(avatar.opacities.iter().all(|&o| o > 0.0 && o < 1.0));
    assert!(avatar.scales.iter().all(|&s| s > 0.0 && s < 0.05));
    // Plane Gaussians carry unit quaternions (per-pixel normalisation).
    for q in avatar.rotations[4 * v..].chunks(4) {
        assert!((q.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
    }
    let (plain, times) = lift_timed(&w, &cfg, &image, &src).expect("lift runs");
    assert_eq!(plain, avatar, "tracing does not change the result");
    assert!(times.total >= times.dino && times.dino > 0.0);
    assert!(trace.times.total > 0.0 && trace.times.stage_times().len() == 6);
}

#[test]
fn planes_sit_behind_and_in_front_of_the_lifting_plane_along_the_camera_axis() {
    let cfg = ModelConfig::small();
    let w = seeded_weights(&cfg);
    let (image, src) = source(&cfg);
    let (avatar, trace) = lift_traced(&w, &cfg, &image, &src).expect("lift runs");
    let (v, pp) = (cfg.flame.vertices, cfg.plane_size * cfg.plane_size);
    let dir = trace.plane_dirs;
    for (plane, sign) in [(0usize, 1.0f32), (1, -1.0)] {
        for i in 0..pp {
            let pos = &avatar.positions[3 * (v + plane * pp + i)..][..3];
            let base = &trace.plane_points[3 * i..][..3];
            let off: Vec<f32> = (0..3).map(|k| pos[k] - base[k]).collect();
            let along = off[0] * dir[0] + off[1] * dir[1] + off[2] * dir[2];
            // Offset = sign * sigmoid(.) * dir: in (0, 1) along the axis, nothing across it.
            assert!(sign * along > 0.0 && sign * along < 1.0, "plane {plane} pixel {i}: {along}");
            let across: f32 = (0..3).map(|k| (off[k] - along * dir[k]).abs()).sum();
            assert!(across < 1e-5, "plane {plane} pixel {i} leaves the camera axis by {across}");
        }
    }
}

#[test]
fn both_lifting_generators_read_the_same_feature_map() {
    let cfg = ModelConfig::small();
    let mut w = seeded_weights(&cfg);
    let l0 = w.tensors.iter().filter(|(k, _)| k.starts_with("gs_generator_l0.")).map(|(k, t)| (k.clone(), t.clone())).collect::<Vec<_>>();
    for (k, t) in l0 {
        w.tensors.insert(k.replace("gs_generator_l0.", "gs_generator_l1."), t);
    }
    let (image, src) = source(&cfg);
    let (avatar, trace) = lift_traced(&w, &cfg, &image, &src).expect("lift runs");
    let (v, pp) = (cfg.flame.vertices, cfg.plane_size * cfg.plane_size);
    let c = cfg.gaussian_channels;
    assert_eq!(avatar.colors.to_f32()[c * v..c * (v + pp)], avatar.colors.to_f32()[c * (v + pp)..]);
    // Same offsets with opposite signs: the two positions average to the plane point.
    for i in 0..pp {
        for k in 0..3 {
            let mid = 0.5 * (avatar.positions[3 * (v + i) + k] + avatar.positions[3 * (v + pp + i) + k]);
            assert!((mid - trace.plane_points[3 * i + k]).abs() < 1e-5);
        }
    }
}

#[test]
fn quirk_1_squashes_all_channels_of_grid_columns_0_to_2_only() {
    let cfg = ModelConfig::small();
    let mut w = seeded_weights(&cfg);
    let c = cfg.gaussian_channels;
    constant_outputs(&mut w, "gs_generator_l0.gaussian_conv.6", 0..c, 5.0);
    let (image, src) = source(&cfg);
    let avatar = lift(&w, &cfg, &image, &src).expect("lift runs");
    let (v, p) = (cfg.flame.vertices, cfg.plane_size);
    for i in 0..p * p {
        let want = if i % p < 3 { sigmoid_scalar(5.0) } else { 5.0 };
        let colors = &avatar.colors.to_f32()[c * (v + i)..][..c];
        assert!(colors.iter().all(|&x| x == want), "pixel (row {}, col {}): {colors:?}", i / p, i % p);
    }
}

#[test]
fn vertex_colours_squash_rgb_only_and_quirk_2_normalises_across_vertices() {
    let cfg = ModelConfig::small();
    let mut w = seeded_weights(&cfg);
    let c = cfg.gaussian_channels;
    constant_outputs(&mut w, "gs_generator_g.color_layers.2", 0..c, 5.0);
    let global = seeded(7, cfg.dino.dim);
    let direnc = crate::camera::harmonic_encoding(&[0.0, 0.0, -1.0], 4);
    let g = vertex_gaussians(&w, &cfg, &global, &direnc).expect("generator runs");
    for colors in g.colors.chunks(c) {
        assert!(colors[..3].iter().all(|&x| x == sigmoid_scalar(5.0)));
        assert!(colors[3..].iter().all(|&x| x == 5.0));
    }
    for k in 0..4 {
        let norm = g.rotations.iter().skip(k).step_by(4).map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "component {k} has norm {norm} across the vertices");
    }
    let longest = g.rotations.chunks(4).map(|q| q.iter().map(|x| x * x).sum::<f32>().sqrt()).fold(0f32, f32::max);
    assert!(longest < 0.5, "quaternions stay short (longest {longest}), they are not unit length");
}

/// The vertex generator's equations for one vertex, in f64.
fn naive_vertex(w: &WeightMap, cfg: &ModelConfig, vertex: usize, global: &[f32], direnc: &[f32]) -> Vec<f64> {
    let t = |n: &str| &w.tensors[n].1;
    let dense = |x: &[f64], layer: &str, relu: bool| -> Vec<f64> {
        let (wt, b) = (t(&format!("{layer}.weight")), t(&format!("{layer}.bias")));
        (0..b.len())
            .map(|o| {
                let y = b[o] as f64 + x.iter().enumerate().map(|(i, v)| wt[o * x.len() + i] as f64 * v).sum::<f64>();
                if relu {
                    y.max(0.0)
                } else {
                    y
                }
            })
            .collect()
    };
    let hb = cfg.head_base_dim;
    let mut x: Vec<f64> = t("head_base")[vertex * hb..(vertex + 1) * hb].iter().chain(global).map(|&v| v as f64).collect();
    for (i, l) in [0, 2, 4, 6].iter().enumerate() {
        x = dense(&x, &format!("gs_generator_g.feature_layers.{l}"), i < 3);
    }
    x.extend(direnc.iter().map(|&v| v as f64));
    let hidden = dense(&x, "gs_generator_g.color_layers.0", true);
    let mut colors = dense(&hidden, "gs_generator_g.color_layers.2", false);
    colors[..3].iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp()));
    colors
}

#[test]
fn vertex_generator_matches_its_equations_for_single_vertices() {
    let cfg = ModelConfig::small();
    let w = seeded_weights(&cfg);
    let global = seeded(7, cfg.dino.dim);
    let direnc = crate::camera::harmonic_encoding(&[0.3, -0.2, -0.93], 4);
    let g = vertex_gaussians(&w, &cfg, &global, &direnc).expect("generator runs");
    let c = cfg.gaussian_channels;
    for vertex in [0, 1234, cfg.flame.vertices - 1] {
        let want: Vec<f32> = naive_vertex(&w, &cfg, vertex, &global, &direnc).iter().map(|&v| v as f32).collect();
        // f32 through 6 layers vs f64: a few ulps of the largest value per layer.
        assert_close(&format!("vertex {vertex}"), &g.colors[vertex * c..][..c], &want, Tolerance::Custom { abs: 1e-5, rel: 1e-5 });
    }
}

#[test]
fn normalising_across_rows_divides_each_column_by_its_norm() {
    let mut x = vec![3.0, 0.0, 4.0, 1.0];
    normalize_across_rows(&mut x, 2);
    assert_eq!(x, vec![0.6, 0.0, 0.8, 1.0]);
    let mut zeros = vec![0.0; 4];
    normalize_across_rows(&mut zeros, 2);
    assert_eq!(zeros, vec![0.0; 4], "eps keeps an all-zero column finite");
}

#[test]
fn preprocess_upsampling_equals_plain_bilinear_then_imagenet_normalisation() {
    let cfg = ModelConfig::small();
    let (image, _) = source(&cfg);
    let (s, d) = (cfg.image_size, cfg.dino.input_size);
    assert!(d > s, "the small config upsamples like 512 -> 518");
    let got = preprocess(&cfg, &image);
    let mut want = vec![0.0; 3 * d * d];
    gaga_kernels::reference::bilinear(&image.data, 3, s, s, d, d, false, &mut want);
    for (c, plane) in want.chunks_mut(d * d).enumerate() {
        plane.iter_mut().for_each(|v| *v = (*v - IMAGENET_MEAN[c]) / IMAGENET_STD[c]);
    }
    // Same interpolation weights computed two ways: fp32 rounding only.
    assert_close("preprocess", &got, &want, Tolerance::Fp32);
}

#[test]
fn preprocess_maps_a_grey_image_to_its_normalised_value() {
    let cfg = ModelConfig::official();
    let s = cfg.image_size;
    let image = Image { width: s, height: s, data: vec![0.5; 3 * s * s] };
    let out = preprocess(&cfg, &image);
    for c in 0..3 {
        let want = (0.5 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        let plane = &out[c * 518 * 518..][..518 * 518];
        assert!(plane.iter().all(|v| (v - want).abs() < 1e-5), "channel {c}");
    }
}

#[test]
fn bad_inputs_fail_naming_the_field() {
    let cfg = ModelConfig::small();
    let w = seeded_weights(&cfg);
    let (image, src) = source(&cfg);
    let small = Image::new(cfg.image_size - 1, cfg.image_size);
    let err = lift(&w, &cfg, &small, &src).expect_err("wrong size").to_string();
    assert!(err.contains("image") && err.contains("63x64"), "{err}");
    let short = SourceParams { shapecode: vec![0.0; 3], ..src.clone() };
    let err = lift(&w, &cfg, &image, &short).expect_err("short shapecode").to_string();
    assert!(err.contains("shapecode") && err.contains("300") && err.contains('3'), "{err}");
    let mut missing = w.clone();
    missing.tensors.remove("gs_generator_l1.gaussian_conv.4.bias");
    let err = lift(&missing, &cfg, &image, &src).expect_err("missing tensor").to_string();
    assert!(err.contains("gs_generator_l1.gaussian_conv.4.bias"), "{err}");
}

/// The official sizes end to end (about 0.85 TFLOP on seeded weights; minutes on 2 cores):
/// `cargo test -p gaga-runtime --release --lib official_size_lift -- --ignored --nocapture`
#[test]
#[ignore]
fn official_size_lift_runs_and_reports_its_stage_times() {
    let cfg = ModelConfig::official();
    let w = seeded_weights(&cfg);
    let (image, src) = source(&cfg);
    let (avatar, trace) = lift_traced(&w, &cfg, &image, &src).expect("lift runs");
    assert_eq!(avatar.count, 180_255);
    assert!(avatar.colors.to_f32().iter().all(|v| v.is_finite()));
    for (stage, secs) in trace.times.stage_times() {
        println!("{stage:>24}: {:8.2} s", secs);
    }
}
