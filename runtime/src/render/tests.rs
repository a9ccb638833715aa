use gaga_kernels::splat::{splat, SplatCamera, SplatScratch};

use super::testing::{driving_frame, seeded_frame_weights, synthetic_avatar};
use super::*;
use crate::flame::Flame;

fn setup() -> (ModelConfig, crate::weights::WeightMap, Avatar) {
    let cfg = ModelConfig::small();
    let w = seeded_frame_weights(&cfg, 5);
    let avatar = synthetic_avatar(&cfg, 5);
    (cfg, w, avatar)
}

#[test]
fn traced_stages_match_direct_calls_and_the_avatar_is_untouched() {
    let (cfg, w, avatar) = setup();
    let before = avatar.clone();
    let mut r = FrameRenderer::new(&w, &cfg, RenderOptions::default()).expect("renderer");
    let s = cfg.image_size;
    let mut out = Image::new(s, s);
    let frame = driving_frame(&cfg, 1);
    let trace = r.render_traced(&avatar, &frame, &mut out).expect("render");
    assert_eq!(avatar, before, "render mutated the avatar");

    let mut flame = Flame::new(&w, &cfg).expect("flame");
    flame.set_identity(&avatar.shapecode).expect("identity");
    let mut verts = vec![0f32; cfg.flame.vertices * 3];
    flame.pose(&frame.expcode, &frame.posecode, &frame.eyecode, &frame.key, &mut verts).expect("pose");
    assert_eq!(trace.flame_vertices, verts);

    let set = avatar.gaussians(&verts).expect("set");
    let mut img = vec![0f32; cfg.gaussian_channels * s * s];
    let cam = SplatCamera::from_transform(&frame.transform, cfg.focal, s, s);
    splat(&set, &cam, &vec![0.0; cfg.gaussian_channels], &mut img, &mut SplatScratch::new());
    assert_eq!(trace.splat, img);
    assert!(img.iter().any(|v| *v != 0.0), "nothing visible in the synthetic frame");

    let clamped: Vec<f32> = trace.rgb.iter().map(|v| v.clamp(0.0, 1.0)).collect();
    assert_eq!(out.data, clamped);
    assert!(out.data.iter().all(|v| (0.0..=1.0).contains(v)));
    let t = r.times();
    assert!(t.flame > 0.0 && t.splat > 0.0 && t.refine > 0.0, "{t:?}");
}

#[test]
fn stored_noise_frames_are_reproducible_and_expression_changes_the_frame() {
    let (cfg, w, avatar) = setup();
    let mut r = FrameRenderer::new(&w, &cfg, RenderOptions::default()).expect("renderer");
    let s = cfg.image_size;
    let (mut a, mut b, mut c) = (Image::new(s, s), Image::new(s, s), Image::new(s, s));
    r.render(&avatar, &driving_frame(&cfg, 0), &mut a).expect("frame 0");
    r.render(&avatar, &driving_frame(&cfg, 3), &mut b).expect("frame 3");
    r.render(&avatar, &driving_frame(&cfg, 0), &mut c).expect("frame 0 again");
    assert_eq!(a, c);
    assert_ne!(a, b);
}

#[test]
fn avatar_from_another_model_is_an_error_naming_the_field() {
    let (cfg, w, avatar) = setup();
    let mut r = FrameRenderer::new(&w, &cfg, RenderOptions::default()).expect("renderer");
    let s = cfg.image_size;
    let mut out = Image::new(s, s);
    let frame = driving_frame(&cfg, 0);

    let mut other = synthetic_avatar(&ModelConfig { plane_size: 8, ..cfg.clone() }, 1);
    let err = r.render(&other, &frame, &mut out).expect_err("count mismatch");
    assert!(err.to_string().contains("count"), "{err}");

    other = avatar.clone();
    other.shapecode.truncate(10);
    let err = r.render(&other, &frame, &mut out).expect_err("shapecode mismatch");
    assert!(err.to_string().contains("shapecode") && err.to_string().contains("found 10"), "{err}");

    other = avatar.clone();
    other.opacities.pop();
    let err = r.render(&other, &frame, &mut out).expect_err("opacities mismatch");
    assert!(err.to_string().contains("opacities") || err.to_string().contains("means"), "{err}");

    let mut bad_frame = frame.clone();
    bad_frame.expcode.push(0.0);
    let err = r.render(&avatar, &bad_frame, &mut out).expect_err("expcode mismatch");
    assert!(err.to_string().contains("expcode") && err.to_string().contains("seeded_0"), "{err}");

    let mut small = Image::new(8, 8);
    assert!(r.render(&avatar, &frame, &mut small).is_err());
}

#[test]
fn frames_after_the_first_reuse_cached_covariances_and_match_an_uncached_splat_bit_for_bit() {
    let (cfg, w, avatar) = setup();
    let mut r = FrameRenderer::new(&w, &cfg, RenderOptions::default()).expect("renderer");
    let s = cfg.image_size;
    let mut out = Image::new(s, s);
    // Two frames, two cameras: the second turns the head 0.2 rad about y and moves it back.
    let mut turned = driving_frame(&cfg, 4);
    let (c, sn) = (0.2f32.cos(), 0.2f32.sin());
    turned.transform = [[-c, 0.0, sn, 0.0], [0.0, 1.0, 0.0, 0.0], [-sn, 0.0, -c, 9.5]];
    for frame in [driving_frame(&cfg, 2), turned] {
        let trace = r.render_traced(&avatar, &frame, &mut out).expect("render");
        let set = avatar.gaussians(&trace.flame_vertices).expect("set");
        let cam = SplatCamera::from_transform(&frame.transform, cfg.focal, s, s);
        let mut uncached = SplatScratch::new();
        uncached.set_covariance_cache(false);
        let mut img = vec![f32::NAN; cfg.gaussian_channels * s * s];
        splat(&set, &cam, &vec![0.0; cfg.gaussian_channels], &mut img, &mut uncached);
        assert!(trace.splat.iter().zip(&img).all(|(a, b)| a.to_bits() == b.to_bits()), "frame {}: splat differs", frame.key);
    }
}

#[test]
fn an_fp32_renderer_keeps_f32_colours_and_renders_f16_colours_as_their_widened_values() {
    let (cfg, w, avatar) = setup();
    let mut r = FrameRenderer::new(&w, &cfg, RenderOptions::default()).expect("renderer");
    assert!(!r.tolerates_f16_colors(), "an fp32 refiner keeps the PyTorch-checked f32 path");
    // Prepared: f32 colours kept, covariances computed once in place of scales and rotations, and the
    // same frames bit for bit (the splat's own `cov3d`).
    let prepared = r.prepare_avatar(avatar.clone());
    assert_eq!(prepared.colors, avatar.colors);
    assert!(prepared.scales.is_empty() && prepared.rotations.is_empty());
    assert_eq!(prepared.covariances.len(), 6 * avatar.count);
    for i in 0..2 {
        let (s, frame) = (cfg.image_size, driving_frame(&cfg, i));
        let (mut a, mut b) = (Image::new(s, s), Image::new(s, s));
        r.render(&prepared, &frame, &mut a).expect("prepared avatar");
        r.render(&avatar, &frame, &mut b).expect("avatar as lifted");
        assert!(a == b, "frame {i}: the prepared avatar renders differently");
    }
    assert_eq!(r.prepare_avatar(prepared.clone()), prepared, "preparing twice changes nothing");
    // An avatar given f16 colours anyway renders exactly as the same colours widened to f32.
    let mut half = avatar.clone();
    half.colors = half.colors.into_f16();
    assert!(half.colors.is_f16());
    let mut wide = half.clone();
    wide.colors = wide.colors.into_f32();
    let s = cfg.image_size;
    let (mut a, mut b) = (Image::new(s, s), Image::new(s, s));
    let frame = driving_frame(&cfg, 2);
    let ta = r.render_traced(&half, &frame, &mut a).expect("f16 frame");
    let tb = r.render_traced(&wide, &frame, &mut b).expect("widened frame");
    assert!(ta.splat == tb.splat && a == b, "f16 colours rendered differently from their widened values");
}
