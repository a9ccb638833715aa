//! The kiosk loop: source -> tracker -> render -> overlay -> display, one frame at a time, measuring
//! capture-to-display latency and FPS. Rendering is a [`Renderer`] (any closure works), so the loop runs
//! and is tested without a model. A frame error (corrupt frame, camera unplugged) is logged and skipped;
//! the display keeps its last picture. Any other error ends the run. When the tracker loses the face, the
//! last pose is held and then eased to the neutral one ([`crate::tracker::hold`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gaga_runtime::DrivingFrame;
use image::RgbImage;

use crate::display::{letterbox, Display};
use crate::error::Result;
use crate::frame::Frame;
use crate::overlay::{draw_overlay, OverlayStats};
use crate::source::FrameSource;
use crate::tracker::hold::{FaceLostEase, LostState};
use crate::tracker::{Tracker, Tracking};

/// Makes the output picture for a camera frame and the current pose (`None`: the neutral pose).
pub trait Renderer {
    fn render(&mut self, camera: &Frame, pose: Option<&DrivingFrame>) -> Result<RgbImage>;
}

impl<F: FnMut(&Frame, Option<&DrivingFrame>) -> Result<RgbImage>> Renderer for F {
    fn render(&mut self, camera: &Frame, pose: Option<&DrivingFrame>) -> Result<RgbImage> {
        self(camera, pose)
    }
}

/// Shows the camera frame itself: the kiosk without a model.
pub fn camera_passthrough(camera: &Frame, _pose: Option<&DrivingFrame>) -> Result<RgbImage> {
    Ok(camera.image.clone())
}

/// How long the loop runs and what it draws.
#[derive(Clone, Debug)]
pub struct LoopOptions {
    /// Stop after this many displayed frames (`None`: until the source ends or `stop` is set).
    pub frames: Option<u64>,
    /// Draw the status line.
    pub overlay: bool,
    /// Give up after this many undecodable frames in a row (a source that only fails). A lost camera is
    /// waited for without limit.
    pub max_consecutive_errors: u32,
    /// Set from another thread (Ctrl-C) to stop after the current frame.
    pub stop: Arc<AtomicBool>,
    /// The pose a lost face eases to (the renderer's neutral pose); `None`: hold, then drop to no pose.
    pub neutral: Option<DrivingFrame>,
    /// How long a lost face's pose is held, then eased.
    pub hold: Duration,
    pub ease: Duration,
}

impl Default for LoopOptions {
    fn default() -> Self {
        LoopOptions {
            frames: None,
            overlay: true,
            max_consecutive_errors: 100,
            stop: Arc::new(AtomicBool::new(false)),
            neutral: None,
            hold: crate::tracker::hold::HOLD,
            ease: crate::tracker::hold::EASE,
        }
    }
}

/// What a run measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KioskReport {
    pub frames_shown: u64,
    pub frame_errors: u64,
    /// Frames in which the tracker found a face.
    pub faces: u64,
    /// Capture-to-display latency of each shown frame, seconds.
    pub latencies: Vec<f64>,
    /// Wall time from the first capture to the last display, seconds.
    pub elapsed: f64,
    /// Tracker time of each shown frame, seconds.
    pub track_times: Vec<f64>,
    /// Render time of each shown frame, seconds.
    pub render_times: Vec<f64>,
}

impl KioskReport {
    /// Displayed frames per second over the run.
    pub fn fps(&self) -> f64 {
        if self.elapsed > 0.0 {
            self.frames_shown as f64 / self.elapsed
        } else {
            0.0
        }
    }
    /// Latency percentile `p` in [0, 1] (nearest rank), milliseconds.
    pub fn latency_ms(&self, p: f64) -> f64 {
        percentile(&self.latencies, p) * 1e3
    }
    /// One line: frames, FPS, median and p95 latency.
    pub fn summary(&self) -> String {
        format!(
            "{} frames, {:.1} fps, capture-to-display latency median {:.1} ms, p95 {:.1} ms, {} frame errors, face in {} frames",
            self.frames_shown,
            self.fps(),
            self.latency_ms(0.5),
            self.latency_ms(0.95),
            self.frame_errors,
            self.faces
        )
    }
}

/// Nearest-rank percentile of unsorted values (0 for none).
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = (p.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// FPS over the last second of displayed frames, for the overlay.
struct RecentFps {
    times: std::collections::VecDeque<Instant>,
}

impl RecentFps {
    fn tick(&mut self, now: Instant) -> f64 {
        self.times.push_back(now);
        while self.times.front().is_some_and(|&t| now.duration_since(t) > Duration::from_secs(1)) {
            self.times.pop_front();
        }
        match (self.times.front(), self.times.len()) {
            (Some(&first), n) if n > 1 => (n - 1) as f64 / now.duration_since(first).as_secs_f64().max(1e-9),
            _ => 0.0,
        }
    }
}

/// Runs the loop until the source ends, `frames` are shown, `stop` is set, or a fatal error.
pub fn run(
    source: &mut dyn FrameSource,
    tracker: &mut dyn Tracker,
    renderer: &mut dyn Renderer,
    display: &mut dyn Display,
    opts: &LoopOptions,
) -> Result<KioskReport> {
    let mut report = KioskReport::default();
    let mut lost = FaceLostEase::new(opts.hold, opts.ease);
    let mut stats = OverlayStats::default();
    let mut fps = RecentFps { times: Default::default() };
    let mut first: Option<Instant> = None;
    let mut errors_in_row = 0;
    while !opts.stop.load(Ordering::Relaxed) && opts.frames.is_none_or(|n| report.frames_shown < n) {
        let frame = match source.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => break,
            // A lost camera is waited for indefinitely (its source paces the retries); only undecodable
            // frames count towards giving up.
            Err(e @ crate::Error::CameraLost { .. }) => {
                log::warn!("{e}");
                report.frame_errors += 1;
                continue;
            }
            Err(e) if e.is_frame_error() && errors_in_row < opts.max_consecutive_errors => {
                log::warn!("{e}; skipped");
                report.frame_errors += 1;
                errors_in_row += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        errors_in_row = 0;
        first.get_or_insert(frame.captured);
        let t_track = Instant::now();
        let tracked = tracker.track(&frame)?;
        let t_render = Instant::now();
        let (pose, state) = match tracked {
            Tracking::Face(p) => {
                report.faces += 1;
                (Some(lost.face(*p, frame.captured)), LostState::Face)
            }
            Tracking::NoFace => lost.lost(frame.captured, opts.neutral.as_ref()),
        };
        stats.tracking = state.label();
        let mut out = renderer.render(&frame, pose.as_ref())?;
        report.track_times.push(t_render.duration_since(t_track).as_secs_f64());
        report.render_times.push(t_render.elapsed().as_secs_f64());
        if let Some((w, h)) = display.native_size().filter(|&s| s != out.dimensions()) {
            out = letterbox(&out, w, h);
        }
        if opts.overlay {
            draw_overlay(&mut out, &stats);
        }
        display.show(&out)?;
        let shown = Instant::now();
        let latency = shown.duration_since(frame.captured).as_secs_f64();
        report.latencies.push(latency);
        report.frames_shown += 1;
        stats.latency_ms = latency * 1e3;
        stats.fps = fps.tick(shown);
        report.elapsed = first.map_or(0.0, |t| shown.duration_since(t).as_secs_f64());
    }
    display.finish()?;
    Ok(report)
}

/// Sets `stop` on Ctrl-C (SIGINT), SIGTERM and SIGHUP (`ctrlc`'s `termination` feature), so `systemctl stop`
/// ends the loop like Ctrl-C and the display is finished (a video closed properly). Only one handler per
/// process; a second call is an error.
pub fn stop_on_ctrl_c(stop: Arc<AtomicBool>) -> Result<()> {
    ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed)).map_err(|e| crate::Error::Other(format!("Ctrl-C handler: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 10.0);
        assert_eq!(percentile(&v, 0.95), 19.0);
        assert_eq!(percentile(&v, 1.0), 20.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    /// Fails `lost` times with `CameraLost`, then `bad` times with `BadFrame`, then gives one frame and ends.
    struct Flaky {
        lost: u32,
        bad: u32,
        done: bool,
    }

    impl FrameSource for Flaky {
        fn next_frame(&mut self) -> Result<Option<Frame>> {
            let err = |what: &str| crate::Error::BadFrame { source_name: "flaky".into(), index: 0, what: what.into() };
            if self.lost > 0 {
                self.lost -= 1;
                return Err(crate::Error::CameraLost { device: "flaky".into(), what: "gone".into(), attempt: 1, retry_ms: 0 });
            }
            if self.bad > 0 {
                self.bad -= 1;
                return Err(err("corrupt"));
            }
            if self.done {
                return Ok(None);
            }
            self.done = true;
            Ok(Some(Frame { image: RgbImage::new(4, 4), captured: Instant::now(), index: 0 }))
        }
        fn describe(&self) -> String {
            "flaky".into()
        }
    }

    struct Count(u32);
    impl Display for Count {
        fn show(&mut self, _frame: &RgbImage) -> Result<()> {
            self.0 += 1;
            Ok(())
        }
        fn describe(&self) -> String {
            "count".into()
        }
    }

    #[test]
    fn a_lost_camera_is_waited_for_but_endless_corrupt_frames_end_the_run() {
        let opts = LoopOptions { max_consecutive_errors: 3, overlay: false, ..Default::default() };
        let mut shown = Count(0);
        let mut src = Flaky { lost: 50, bad: 2, done: false };
        let report = run(&mut src, &mut crate::tracker::PassThrough, &mut camera_passthrough, &mut shown, &opts).expect("recovers");
        assert_eq!((report.frames_shown, report.frame_errors, shown.0), (1, 52, 1));
        let mut src = Flaky { lost: 0, bad: 10, done: false };
        let err = run(&mut src, &mut crate::tracker::PassThrough, &mut camera_passthrough, &mut Count(0), &opts).expect_err("gives up");
        assert!(err.to_string().contains("corrupt"), "{err}");
    }

    /// Frames 100 ms apart by capture time; the tracker sees a face in the first `faces` of them.
    struct Timed {
        t0: Instant,
        next: u64,
        total: u64,
    }
    impl FrameSource for Timed {
        fn next_frame(&mut self) -> Result<Option<Frame>> {
            if self.next == self.total {
                return Ok(None);
            }
            let captured = self.t0 + Duration::from_millis(100 * self.next);
            self.next += 1;
            Ok(Some(Frame { image: RgbImage::new(4, 4), captured, index: self.next - 1 }))
        }
        fn describe(&self) -> String {
            "timed".into()
        }
    }
    struct FaceFor(u64, DrivingFrame);
    impl Tracker for FaceFor {
        fn track(&mut self, f: &Frame) -> Result<Tracking> {
            Ok(if f.index < self.0 { Tracking::Face(Box::new(self.1.clone())) } else { Tracking::NoFace })
        }
        fn name(&self) -> &str {
            "scripted"
        }
    }

    #[test]
    fn a_lost_face_is_held_then_eased_to_the_neutral_pose_in_the_loop() {
        let neutral = crate::render::neutral_pose(4, crate::tracker::fit::FRONTAL_CAMERA);
        let tracked = DrivingFrame { posecode: [0.0, 0.0, 0.0, 0.3, 0.0, 0.0], face: true, ..neutral.clone() };
        // 40 frames at 10 fps: a face for 1 s, then 3 s without (hold 1 s, ease 1.5 s, then neutral).
        let mut src = Timed { t0: Instant::now(), next: 0, total: 40 };
        let mut jaws = Vec::new();
        let mut render = |_: &Frame, pose: Option<&DrivingFrame>| {
            jaws.push(pose.map(|p| p.posecode[3]));
            Ok(RgbImage::new(4, 4))
        };
        let opts = LoopOptions { overlay: false, neutral: Some(neutral), ..Default::default() };
        let report = run(&mut src, &mut FaceFor(10, tracked), &mut render, &mut Count(0), &opts).expect("runs");
        assert_eq!((report.frames_shown, report.faces, report.track_times.len()), (40, 10, 40));
        // Frames 10-19 are within 1 s of the last face (frame 9): held.
        assert!(jaws[..20].iter().all(|j| *j == Some(0.3)), "{jaws:?}");
        // Then the jaw closes monotonically over the 1.5 s ease and the neutral pose (None) follows.
        let easing: Vec<f32> = jaws[20..35].iter().map(|j| j.unwrap_or(0.0)).collect();
        assert!(easing.windows(2).all(|w| w[1] <= w[0]) && easing[0] < 0.3 && easing[0] > 0.25, "{easing:?}");
        assert!(jaws[35..].iter().all(Option::is_none), "{jaws:?}");
    }
}
