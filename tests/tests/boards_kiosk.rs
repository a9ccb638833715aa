//! The kiosk loop without a model: frames from a source through the placeholder tracker, a render
//! closure and the overlay into a framebuffer file, with latency and FPS measured.

use gaga_tests::test_dir;
use std::path::Path;

use gaga_boards::display::{FbLayout, FramebufferDisplay};
use gaga_boards::image::{Rgb, RgbImage};
use gaga_boards::kiosk::{self, LoopOptions};
use gaga_boards::source::video::ffmpeg_available;
use gaga_boards::source::{FrameSource, ImageFolderSource, VideoFileSource};
use gaga_boards::tracker::PassThrough;
use gaga_boards::{Frame, Result};

/// Reads pixel (x, y) of an XRGB8888 framebuffer file of width `w`.
fn fb_pixel(bytes: &[u8], w: usize, x: usize, y: usize) -> [u8; 3] {
    let o = 4 * (y * w + x);
    [bytes[o + 2], bytes[o + 1], bytes[o]]
}

#[test]
fn kiosk_runs_ten_frames_into_a_framebuffer_file() {
    let tmp = test_dir("boards-kiosk-folder");
    let dir = tmp.path();
    for i in 0..12u8 {
        RgbImage::from_pixel(64, 48, Rgb([i * 20, 100, 50])).save(dir.join(format!("f{i:02}.png"))).expect("png");
    }
    let mut source = ImageFolderSource::open(dir).expect("folder");
    let fb_path = dir.join("fb.raw");
    let mut display = FramebufferDisplay::create_file(&fb_path, FbLayout::parse("64x48", "32").expect("layout")).expect("fb");
    let mut seen_poses = Vec::new();
    let mut render = |f: &Frame, pose: Option<&gaga_runtime::DrivingFrame>| -> Result<RgbImage> {
        seen_poses.push(pose.is_some());
        Ok(f.image.clone())
    };
    let opts = LoopOptions { frames: Some(10), ..Default::default() };
    let report = kiosk::run(&mut source, &mut PassThrough, &mut render, &mut display, &opts).expect("loop");
    assert_eq!(report.frames_shown, 10);
    assert_eq!(report.latencies.len(), 10);
    assert_eq!((report.faces, report.frame_errors), (0, 0));
    // The pass-through tracker never finds a face: the renderer always gets the neutral pose.
    assert_eq!(seen_poses, [false; 10]);
    assert!(report.fps() > 0.0 && report.latency_ms(0.95) >= report.latency_ms(0.5));
    let bytes = std::fs::read(&fb_path).expect("fb file");
    assert_eq!(bytes.len(), 64 * 48 * 4);
    // Frame 9 is on screen: its colour below the status line, the overlay's black band at the top left.
    assert_eq!(fb_pixel(&bytes, 64, 32, 40), [180, 100, 50]);
    assert_eq!(fb_pixel(&bytes, 64, 2, 2), [0, 0, 0]);
}

#[test]
fn kiosk_skips_corrupt_frames_and_goes_on() {
    let tmp = test_dir("boards-kiosk-corrupt");
    let dir = tmp.path();
    RgbImage::from_pixel(8, 8, Rgb([1, 2, 3])).save(dir.join("a.png")).expect("png");
    std::fs::write(dir.join("b.jpg"), b"\xFF\xD8\xFF\xE0 cut").expect("bad jpeg");
    RgbImage::from_pixel(8, 8, Rgb([4, 5, 6])).save(dir.join("c.png")).expect("png");
    let mut source = ImageFolderSource::open(dir).expect("folder");
    let mut display = FramebufferDisplay::create_file(&dir.join("fb.raw"), FbLayout::parse("8x8", "16").expect("layout")).expect("fb");
    let opts = LoopOptions { overlay: false, ..Default::default() };
    let report = kiosk::run(&mut source, &mut PassThrough, &mut kiosk::camera_passthrough, &mut display, &opts).expect("loop");
    assert_eq!((report.frames_shown, report.frame_errors), (2, 1));
}

#[test]
fn kiosk_plays_carphone_through_ffmpeg() {
    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/fetched/carphone_pristine.mp4");
    if !clip.is_file() || !ffmpeg_available() {
        eprintln!("skipped: needs {} and ffmpeg", clip.display());
        return;
    }
    let mut source = VideoFileSource::open(&clip).expect("carphone");
    let desc = source.describe();
    let tmp = test_dir("boards-kiosk-carphone");
    let mut display =
        FramebufferDisplay::create_file(&tmp.path().join("fb.raw"), FbLayout::parse("176x144", "16").expect("layout")).expect("fb");
    let opts = LoopOptions { frames: Some(10), ..Default::default() };
    let report = kiosk::run(&mut source, &mut PassThrough, &mut kiosk::camera_passthrough, &mut display, &opts).expect(&desc);
    assert_eq!(report.frames_shown, 10);
    eprintln!("carphone: {}", report.summary());
}

#[test]
fn kiosk_renders_the_neutral_pose_through_a_cpu_session_when_no_face_is_tracked() {
    use gaga_boards::render::{neutral_pose, SessionRenderer};
    use gaga_converter::dev::{driver, flame, seeded_weights};
    use gaga_runtime::backend::cpu::CpuBackend;
    use gaga_runtime::backend::{Backend, Budget};
    use gaga_runtime::{Image, ModelConfig};

    let cfg = ModelConfig::small();
    let mut w = seeded_weights(&cfg, 0);
    w.tensors.extend(flame::build(0).to_weight_map().tensors);
    let source = driver::frontal_source();
    let mut session = CpuBackend::default().prepare(&w, &cfg, Budget::UNLIMITED).expect("session");
    let mut photo = Image::new(cfg.image_size, cfg.image_size);
    photo.data.iter_mut().enumerate().for_each(|(i, v)| *v = (i % 7) as f32 / 7.0);
    let avatar = session.lift(&photo, &source).expect("lift");
    let neutral = neutral_pose(cfg.flame.expr_params, source.transform);
    // The reference: the same session type rendering the neutral pose directly.
    let mut want = Image::new(cfg.image_size, cfg.image_size);
    CpuBackend::default().prepare(&w, &cfg, Budget::UNLIMITED).expect("session").render(&avatar, &neutral, &mut want).expect("render");
    let mut renderer = SessionRenderer::new(session, avatar, neutral, cfg.image_size);

    let tmp = test_dir("boards-kiosk-session");
    let dir = tmp.path();
    for i in 0..3u8 {
        RgbImage::from_pixel(16, 16, Rgb([i * 50, 0, 0])).save(dir.join(format!("{i}.png"))).expect("png");
    }
    let mut src = ImageFolderSource::open(dir).expect("folder");
    let s = cfg.image_size as u32;
    let fb = dir.join("fb.raw");
    let mut display = FramebufferDisplay::create_file(&fb, FbLayout::parse(&format!("{s}x{s}"), "32").expect("layout")).expect("fb");
    let opts = LoopOptions { overlay: false, ..Default::default() };
    let report = kiosk::run(&mut src, &mut PassThrough, &mut renderer, &mut display, &opts).expect("loop");
    assert_eq!(report.frames_shown, 3);
    // The screen holds the neutral render, exactly as 8-bit rounding of the direct render gives it.
    let bytes = std::fs::read(&fb).expect("fb");
    let want8 = gaga_boards::frame::from_planar(&want);
    for (x, y, px) in want8.enumerate_pixels() {
        assert_eq!(fb_pixel(&bytes, s as usize, x as usize, y as usize), px.0, "pixel ({x},{y})");
    }
}
