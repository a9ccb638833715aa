//! Tracking a whole source into driving frames, one per input frame (what `gaga track` writes): frames
//! without a face, and frames that could not be decoded, become `face: false` frames carrying the last pose
//! (the neutral one before the first face), so a replay stays frame-aligned with the input.

use std::io::Write;
use std::time::Instant;

use gaga_runtime::{driving, DrivingFrame};

use super::{Tracker, Tracking};
use crate::error::{Error, Result};
use crate::kiosk::percentile;
use crate::source::FrameSource;

/// Give up after this many undecodable frames in a row (a source that only fails).
const MAX_BAD_IN_ROW: u32 = 100;

/// What a tracking run saw.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrackSummary {
    pub frames: u64,
    pub faces: u64,
    /// Frames the source could not decode.
    pub bad_frames: u64,
    /// Tracker time of each decoded frame, seconds.
    pub times: Vec<f64>,
}

impl TrackSummary {
    /// Fraction of frames with a face.
    pub fn face_rate(&self) -> f64 {
        if self.frames > 0 {
            self.faces as f64 / self.frames as f64
        } else {
            0.0
        }
    }

    /// One line: frames, face rate, tracker median and p95 milliseconds.
    pub fn line(&self) -> String {
        format!(
            "{} frames, face in {} ({:.1}%), {} undecodable; tracker {:.1} ms/frame median, {:.1} ms p95",
            self.frames,
            self.faces,
            self.face_rate() * 100.0,
            self.bad_frames,
            percentile(&self.times, 0.5) * 1e3,
            percentile(&self.times, 0.95) * 1e3
        )
    }
}

/// Tracks `source` until it ends (or `limit` frames), calling `each` with every frame's driving parameters
/// (key `frame_<index>`), in order.
pub fn track_frames(
    source: &mut dyn FrameSource,
    tracker: &mut dyn Tracker,
    neutral: DrivingFrame,
    limit: Option<u64>,
    mut each: impl FnMut(&DrivingFrame, &TrackSummary) -> Result<()>,
) -> Result<TrackSummary> {
    let mut sum = TrackSummary::default();
    let mut last = DrivingFrame { face: false, ..neutral };
    let mut bad_in_row = 0u32;
    while limit.is_none_or(|n| sum.frames < n) {
        let tracked = match source.next_frame() {
            Ok(None) => break,
            Ok(Some(frame)) => {
                bad_in_row = 0;
                let start = Instant::now();
                let t = tracker.track(&frame)?;
                sum.times.push(start.elapsed().as_secs_f64());
                Some(t)
            }
            Err(e) if e.is_frame_error() && bad_in_row < MAX_BAD_IN_ROW => {
                log::warn!("{e}; written as a frame without a face");
                bad_in_row += 1;
                sum.bad_frames += 1;
                None
            }
            Err(e) => return Err(e),
        };
        let mut out = match tracked {
            Some(Tracking::Face(p)) => {
                sum.faces += 1;
                last = *p;
                last.clone()
            }
            _ => DrivingFrame { face: false, ..last.clone() },
        };
        out.key = format!("frame_{}", sum.frames);
        sum.frames += 1;
        each(&out, &sum)?;
    }
    Ok(sum)
}

/// [`track_frames`] writing JSON lines (docs/driving-format.md) to `out`; `name` names it in errors.
pub fn track_to_jsonl(
    source: &mut dyn FrameSource,
    tracker: &mut dyn Tracker,
    neutral: DrivingFrame,
    limit: Option<u64>,
    out: &mut dyn Write,
    name: &str,
    mut progress: impl FnMut(&TrackSummary),
) -> Result<TrackSummary> {
    let io = |e: std::io::Error| Error::io(name, e);
    let sum = track_frames(source, tracker, neutral, limit, |f, s| {
        out.write_all(driving::to_jsonl(std::slice::from_ref(f)).as_bytes()).map_err(io)?;
        progress(s);
        Ok(())
    })?;
    out.flush().map_err(io)?;
    Ok(sum)
}
