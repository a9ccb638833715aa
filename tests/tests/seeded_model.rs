//! The seeded model (`gaga dev make-checkpoint` + `make-flame`) run through the real lift and frame path:
//! the calibration in `docs/seeded-models.md` must give plausible Gaussians, unsaturated images, and
//! frames that visibly differ when the driving parameters do.

use gaga_converter::dev::{driver, flame, seeded_weights};
use gaga_runtime::lift::lift;
use gaga_runtime::render::{FrameRenderer, RenderOptions};
use gaga_runtime::{Avatar, Image, ModelConfig, WeightMap};

fn model(cfg: &ModelConfig, seed: u64) -> WeightMap {
    let mut w = seeded_weights(cfg, seed);
    w.tensors.extend(flame::build(seed).to_weight_map().tensors);
    w
}

/// A smooth stand-in portrait: a lit oval face on a dark background.
fn portrait(size: usize) -> Image {
    let mut img = Image::new(size, size);
    for y in 0..size {
        for x in 0..size {
            let (u, v) = (x as f32 / size as f32 * 2.0 - 1.0, y as f32 / size as f32 * 2.0 - 1.0);
            let face = ((u / 0.45).powi(2) + (v / 0.6).powi(2) < 1.0) as u8 as f32;
            for c in 0..3 {
                let tint = [0.85, 0.65, 0.55][c];
                img.data[c * size * size + y * size + x] = 0.1 + face * (tint - 0.2 * v) + 0.05 * (u * 5.0 + c as f32).sin();
            }
        }
    }
    img
}

fn quantile(values: &[f32], q: f32) -> f32 {
    let mut v = values.to_vec();
    v.sort_by(f32::total_cmp);
    v[((v.len() - 1) as f32 * q) as usize]
}

fn psnr(a: &[f32], b: &[f32]) -> f32 {
    let mse = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f32>() / a.len() as f32;
    10.0 * (1.0 / mse.max(1e-12)).log10()
}

fn lifted(cfg: &ModelConfig, w: &WeightMap) -> Avatar {
    lift(w, cfg, &portrait(cfg.image_size), &driver::frontal_source()).expect("seeded model lifts")
}

#[test]
fn seeded_small_model_lifts_plausible_gaussians() {
    let cfg = ModelConfig::small();
    let w = model(&cfg, 0);
    let a = lifted(&cfg, &w);
    let v = cfg.flame.vertices;
    assert!(a.colors.iter().chain(&a.opacities).chain(&a.scales).all(|x| x.is_finite()));
    // Opacity: most Gaussians neither invisible nor solid.
    let plausible = a.opacities.iter().filter(|&&o| (0.3..0.95).contains(&o)).count();
    assert!(plausible as f32 > 0.9 * a.count as f32, "{plausible} of {} opacities in 0.3..0.95", a.count);
    // Vertex Gaussians: ~1 cm world units, matching the FLAME vertex spacing.
    let vertex_scale = quantile(&a.scales[..3 * v], 0.5);
    assert!((0.003..0.02).contains(&vertex_scale), "median vertex scale {vertex_scale}");
    // Frontal source: the planes pass through z = 0, plane 0 moves away from the camera (-z) by the
    // lifting distance, plane 1 toward it.
    let lift_of_plane0: Vec<f32> = a.positions[3 * v..].chunks_exact(3).take(cfg.plane_size * cfg.plane_size).map(|p| -p[2]).collect();
    let (lo, hi) = (quantile(&lift_of_plane0, 0.05), quantile(&lift_of_plane0, 0.95));
    assert!(lo > 0.02 && hi < 0.8 && hi - lo > 0.1, "plane-0 lifting distance 5-95 % range {lo}..{hi}");
    let colour_std = {
        let m = a.colors.iter().sum::<f32>() / a.colors.len() as f32;
        (a.colors.iter().map(|c| (c - m).powi(2)).sum::<f32>() / a.colors.len() as f32).sqrt()
    };
    assert!((0.3..3.0).contains(&colour_std), "Gaussian feature std {colour_std}");
    eprintln!(
        "small seeded lift: opacity in 0.3..0.95 {plausible}/{}, vertex scale median {vertex_scale:.4}, lift 5-95 % {lo:.3}..{hi:.3}, feature std {colour_std:.2}",
        a.count
    );
}

#[test]
fn seeded_small_model_renders_unsaturated_frames_that_follow_the_driver() {
    let cfg = ModelConfig::small();
    let w = model(&cfg, 0);
    let a = lifted(&cfg, &w);
    let frames = driver::scripted(40, 0, &driver::frontal_source());
    let mut renderer = FrameRenderer::new(&w, &cfg, RenderOptions::default()).expect("renderer");
    let s = cfg.image_size;
    let mut render = |i: usize| {
        let mut out = Image::new(s, s);
        renderer.render(&a, &frames[i], &mut out).expect("frame renders");
        out.data
    };
    let (first, again, later) = (render(0), render(0), render(16));
    assert_eq!(first, again, "stored noise makes frames reproducible");
    let saturated = first.iter().filter(|&&x| !(0.01..=0.99).contains(&x)).count();
    assert!((saturated as f32) < 0.1 * first.len() as f32, "{saturated} of {} values saturated", first.len());
    let mean = first.iter().sum::<f32>() / first.len() as f32;
    assert!((0.15..0.85).contains(&mean), "mean intensity {mean}");
    // Frame 16: jaw open, expressions and eyes moved, head turned ~0.3 rad.
    let p = psnr(&first, &later);
    eprintln!("small seeded frame: mean {mean:.3}, saturated {saturated}/{}, PSNR frame 0 vs 16 {p:.1} dB", first.len());
    assert!(p < 30.0, "frames 0 and 16 differ too little: {p:.1} dB");
}

/// The official-size model holds 747 MB of seeded weights in memory and lifts in ~10 s (release, 2 cores),
/// too heavy for every CI run: `cargo test --release -p gaga-tests --test seeded_model -- --ignored`.
#[test]
#[ignore]
fn seeded_official_model_lifts_plausible_gaussians() {
    let cfg = ModelConfig::official();
    let w = model(&cfg, 0);
    let a = lifted(&cfg, &w);
    let plausible = a.opacities.iter().filter(|&&o| (0.3..0.95).contains(&o)).count();
    assert!(plausible as f32 > 0.9 * a.count as f32, "{plausible} of {} opacities in 0.3..0.95", a.count);
    let plane_scale = quantile(&a.scales[3 * cfg.flame.vertices..], 0.5);
    assert!((0.003..0.02).contains(&plane_scale), "median plane scale {plane_scale}");
}


// ---- calibration measurement (temporary) ----
use gaga_runtime::lift::lift_traced;
use gaga_runtime::driving::{read_driving, read_source_params};
use gaga_runtime::image_io::load_image;
use std::path::PathBuf;

fn msd(v: &[f32]) -> (f32, f32) {
    let n = v.len() as f64;
    let m = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let s = (v.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / n).sqrt();
    (m as f32, s as f32)
}

fn measure(cfg: &ModelConfig, seed: u64) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let w = model(cfg, seed);
    let img = load_image(&root.join("assets/fetched/astronaut.png"), cfg.image_size, Some(gaga_runtime::image_io::CropBox { x: 0, y: 0, size: 512 })).unwrap();
    let src = read_source_params(&root.join("assets/defaults/source_params.json")).unwrap();
    let frames = read_driving(&root.join("assets/defaults/expressions.jsonl")).unwrap();
    let (a, t) = lift_traced(&w, cfg, &img, &src).unwrap();
    let v = cfg.flame.vertices;
    eprintln!("seed {seed}: global {:?} fmap {:?} colors {:?}", msd(&t.global_feature), msd(&t.feature_map), msd(&a.colors));
    eprintln!("opacity q {:.3} {:.3} {:.3}", quantile(&a.opacities, 0.05), quantile(&a.opacities, 0.5), quantile(&a.opacities, 0.95));
    eprintln!("vscale q {:.4} {:.4} {:.4}", quantile(&a.scales[..3*v], 0.05), quantile(&a.scales[..3*v], 0.5), quantile(&a.scales[..3*v], 0.95));
    eprintln!("pscale q {:.4} {:.4} {:.4}", quantile(&a.scales[3*v..], 0.05), quantile(&a.scales[3*v..], 0.5), quantile(&a.scales[3*v..], 0.95));
    let mut r = FrameRenderer::new(&w, cfg, RenderOptions::default()).unwrap();
    let s = cfg.image_size;
    let mut outs = vec![];
    for i in [0usize, 30] {
        let mut out = Image::new(s, s);
        let tr = r.render_traced(&a, &frames[i], &mut out).unwrap();
        let logit: Vec<f32> = tr.rgb.iter().map(|&p| (p.clamp(1e-7, 1.0 - 1e-7) / (1.0 - p.clamp(1e-7, 1.0 - 1e-7))).ln()).collect();
        let sat = tr.rgb.iter().filter(|&&p| !(0.001..=0.999).contains(&p)).count() as f32 / tr.rgb.len() as f32;
        let per_c: Vec<(f32, f32)> = logit.chunks(s * s).map(msd).collect();
        eprintln!("frame {i}: splat {:?} logit {:?} per-channel {:?} sat {sat:.4} rgb {:?}", msd(&tr.splat), msd(&logit), per_c, msd(&tr.rgb));
        outs.push(out.data);
    }
    eprintln!("psnr 0 vs 30: {:.2}", psnr(&outs[0], &outs[1]));
}

#[test]
#[ignore]
fn zz_measure_small() {
    for seed in [0, 7, 1, 2, 3, 4, 5] { measure(&ModelConfig::small(), seed); }
}
#[test]
#[ignore]
fn zz_measure_official() {
    measure(&ModelConfig::official(), 0);
}
