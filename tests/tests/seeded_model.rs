//! The seeded model (`gaga dev make-checkpoint` + `make-flame`) run through the real lift and frame path:
//! the calibration in `docs/seeded-models.md` must give plausible Gaussians, unsaturated images, and
//! frames that visibly differ when the driving parameters do.

use std::path::PathBuf;

use gaga_converter::dev::{driver, flame, seeded_weights};
use gaga_runtime::driving::{read_driving, read_source_params};
use gaga_runtime::image_io::{load_image, CropBox};
use gaga_runtime::lift::lift;
use gaga_runtime::render::{FrameRenderer, RenderOptions};
use gaga_runtime::{Avatar, DrivingFrame, Image, ModelConfig, SourceParams, WeightMap};

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
    assert!(a.colors.to_f32().iter().chain(&a.opacities).chain(&a.scales).all(|x| x.is_finite()));
    // Opacity: most Gaussians neither invisible nor solid.
    let plausible = a.opacities.iter().filter(|&&o| (0.3..0.95).contains(&o)).count();
    assert!(plausible as f32 > 0.9 * a.count as f32, "{plausible} of {} opacities in 0.3..0.95", a.count);
    // Vertex Gaussians: ~1 cm world units, matching the FLAME vertex spacing.
    let vertex_scale = quantile(&a.scales[..3 * v], 0.5);
    assert!((0.003..0.02).contains(&vertex_scale), "median vertex scale {vertex_scale}");
    // Plane Gaussians: 1.5 plane-pixel spacings, capped at 0.03 world for coarse test planes (seeded
    // logit +- 0.4, so 5-95 % stays inside 0.005-0.045; sigmoid x 0.05 bounds it by 0.05 anyway).
    let (plo, phi) = (quantile(&a.scales[3 * v..], 0.05), quantile(&a.scales[3 * v..], 0.95));
    assert!(plo > 0.005 && phi < 0.045, "plane scale 5-95 % range {plo}..{phi}");
    // Frontal source: the planes pass through z = 0, plane 0 moves away from the camera (-z) by the
    // lifting distance, plane 1 toward it.
    let lift_of_plane0: Vec<f32> = a.positions[3 * v..].chunks_exact(3).take(cfg.plane_size * cfg.plane_size).map(|p| -p[2]).collect();
    let (lo, hi) = (quantile(&lift_of_plane0, 0.05), quantile(&lift_of_plane0, 0.95));
    assert!(lo > 0.02 && hi < 0.8 && hi - lo > 0.1, "plane-0 lifting distance 5-95 % range {lo}..{hi}");
    let colour_std = {
        let m = a.colors.to_f32().iter().sum::<f32>() / a.colors.len() as f32;
        (a.colors.to_f32().iter().map(|c| (c - m).powi(2)).sum::<f32>() / a.colors.len() as f32).sqrt()
    };
    assert!((0.3..3.0).contains(&colour_std), "Gaussian feature std {colour_std}");
    eprintln!(
        "small seeded lift: opacity in 0.3..0.95 {plausible}/{}, vertex scale median {vertex_scale:.4}, plane scale 5-95 % {plo:.4}..{phi:.4}, lift 5-95 % {lo:.3}..{hi:.3}, feature std {colour_std:.2}",
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

// ---- Spread through the refiner, on the bundled defaults ----

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// The portraits to measure on: the synthetic oval always, and the real photo (`assets/fetched/
/// astronaut.png`, 512 x 512, fetched by `scripts/fetch-assets.sh`, not in git) when it is there.
fn portraits(size: usize) -> Vec<(&'static str, Image)> {
    let mut out = vec![("synthetic oval", portrait(size))];
    let photo = repo("assets/fetched/astronaut.png");
    if photo.exists() {
        let img = load_image(&photo, size, Some(CropBox { x: 0, y: 0, size: 512 })).expect("astronaut.png decodes");
        out.push(("astronaut.png", img));
    }
    out
}

fn bundled_defaults() -> (SourceParams, Vec<DrivingFrame>) {
    let source = read_source_params(&repo("assets/defaults/source_params.json")).expect("bundled source params");
    let frames = read_driving(&repo("assets/defaults/expressions.jsonl")).expect("bundled expressions");
    (source, frames)
}

fn mean_std(v: &[f32]) -> (f32, f32) {
    let n = v.len() as f64;
    let m = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / n;
    (m as f32, var.sqrt() as f32)
}

/// One rendered frame: the splat's spread, the refiner's pre-sigmoid spread, the saturated fraction.
struct FrameStats {
    splat: (f32, f32),
    logit: (f32, f32),
    saturated: f32,
    image: Vec<f32>,
}

fn frame_stats(r: &mut FrameRenderer, a: &Avatar, frame: &DrivingFrame, size: usize) -> FrameStats {
    let mut out = Image::new(size, size);
    let t = r.render_traced(a, frame, &mut out).expect("frame renders");
    // The refiner's output before the sigmoid, recovered from the traced sigmoid output (exact to f32
    // rounding away from the tails, and the tails are what `saturated` counts).
    let logit: Vec<f32> = t.rgb.iter().map(|&p| p.clamp(1e-7, 1.0 - 1e-7)).map(|p| (p / (1.0 - p)).ln()).collect();
    let saturated = t.rgb.iter().filter(|&&p| !(0.001..=0.999).contains(&p)).count() as f32 / t.rgb.len() as f32;
    FrameStats { splat: mean_std(&t.splat), logit: mean_std(&logit), saturated, image: out.data }
}

/// Renders frames 0 and 30 of the bundled sequence for every portrait and checks the calibration's
/// promises (bounds: docs/seeded-models.md measures pre-sigmoid std 0.85-0.94 small and 1.05-1.17
/// official; the bands leave room for the other portrait and for later small changes to the pipeline).
fn check_refiner_spread(cfg: &ModelConfig, seed: u64) {
    let w = model(cfg, seed);
    let (source, frames) = bundled_defaults();
    let mut r = FrameRenderer::new(&w, cfg, RenderOptions::default()).expect("renderer");
    for (name, img) in portraits(cfg.image_size) {
        let a = lift(&w, cfg, &img, &source).expect("seeded model lifts");
        let (f0, f30) = (frame_stats(&mut r, &a, &frames[0], cfg.image_size), frame_stats(&mut r, &a, &frames[30], cfg.image_size));
        let p = psnr(&f0.image, &f30.image);
        eprintln!(
            "{name}: splat mean/std {:.2}/{:.2}, pre-sigmoid mean/std {:.2}/{:.2} (frame 30: {:.2}/{:.2}), saturated {:.4}, PSNR frame 0 vs 30 {p:.1} dB",
            f0.splat.0, f0.splat.1, f0.logit.0, f0.logit.1, f30.logit.0, f30.logit.1, f0.saturated
        );
        for (i, f) in [(0, &f0), (30, &f30)] {
            // Under 1 % of values in the sigmoid's flat tails: a saturated image hides refiner bugs.
            assert!(f.saturated < 0.01, "{name} frame {i}: {:.2} % of RGB values saturated", 100.0 * f.saturated);
            // A trained renderer's logits span a few units: std 0.6-1.5 keeps most values in the
            // sigmoid's responsive range without flattening the image to grey.
            assert!((0.6..1.5).contains(&f.logit.1), "{name} frame {i}: pre-sigmoid std {}", f.logit.1);
            // Mean within 2.5 (sigmoid 0.08-0.92): the image is neither black nor white overall.
            assert!(f.logit.0.abs() < 2.5, "{name} frame {i}: pre-sigmoid mean {}", f.logit.0);
            // The splat carries the Gaussian features (unit spread) over a zero background.
            assert!((0.2..3.0).contains(&f.splat.1), "{name} frame {i}: splat std {}", f.splat.1);
        }
        // Frame 30 has the jaw, expressions and head turned away from frame 0.
        assert!(p < 30.0, "{name}: frames 0 and 30 of the bundled sequence differ too little: {p:.1} dB");
    }
}

#[test]
fn seeded_small_model_keeps_the_final_rgb_unsaturated_with_a_normal_spread() {
    check_refiner_spread(&ModelConfig::small(), 0);
}

/// The golden files use seed 7 (`reference/goldens.sh`): they must not saturate either, or the parity
/// test would compare values the sigmoid has flattened.
#[test]
fn seeded_small_model_of_the_golden_seed_is_unsaturated_too() {
    let cfg = ModelConfig::small();
    let w = model(&cfg, 7);
    let (source, frames) = bundled_defaults();
    let mut r = FrameRenderer::new(&w, &cfg, RenderOptions::default()).expect("renderer");
    for (name, img) in portraits(cfg.image_size) {
        let a = lift(&w, &cfg, &img, &source).expect("seeded model lifts");
        let f = frame_stats(&mut r, &a, &frames[0], cfg.image_size);
        eprintln!("seed 7, {name}: pre-sigmoid mean/std {:.2}/{:.2}, saturated {:.4}", f.logit.0, f.logit.1, f.saturated);
        assert!(f.saturated < 0.01, "{name}: {:.2} % of RGB values saturated", 100.0 * f.saturated);
        assert!((0.6..1.6).contains(&f.logit.1) && f.logit.0.abs() < 2.5, "{name}: pre-sigmoid mean/std {:?}", f.logit);
    }
}

/// Official size: 747 MB of seeded weights, ~15 s in release on 2 cores:
/// `cargo test --release -p gaga-tests --test seeded_model -- --ignored official`.
#[test]
#[ignore]
fn seeded_official_model_keeps_the_final_rgb_unsaturated_with_a_normal_spread() {
    check_refiner_spread(&ModelConfig::official(), 0);
}
