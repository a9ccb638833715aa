//! The on-device face tracker: MediaPipe face detection and face mesh, the fitting crop, a FLAME fit and
//! temporal smoothing, as one [`Tracker`].
//!
//! Per frame, like MediaPipe's face-mesh graph: while a face is tracked, the mesh runs on a crop predicted
//! from the previous frame's points; only when its presence drops below [`MIN_PRESENCE`] (or there was no
//! face) does the detector run, followed by the mesh on the detected box. The time per frame is therefore
//! bounded by one detector and two mesh runs (about 2 + 2 x 5 ms on this machine's class of CPU with
//! x86-64-v3 flags), plus the fit.

use std::path::{Path, PathBuf};

use gaga_runtime::image_io::CropBox;
use gaga_runtime::SourceParams;
use image::RgbImage;

use super::crop::{CropSmoother, FitCrop};
use super::detect::{Detection, FaceDetector};
use super::fit::LandmarkFit;
use super::mesh::{roi_from_detection, roi_from_mesh, FaceMesh, Mesh};
use super::smooth::PoseSmoother;
use super::warp::Roi;
use super::{Tracker, Tracking};
use crate::error::Result;
use crate::frame::Frame;
use crate::landmarks::FaceLandmarks;

/// Mesh presence below this means the face is lost (MediaPipe's `min_tracking_confidence` default).
pub const MIN_PRESENCE: f32 = 0.5;
/// Side of the fitting picture the landmarks are given in (the avatar camera's image).
pub const CROP_PIXELS: u32 = 512;
/// Crops smaller than this many pixels are not faces worth tracking.
const MIN_ROI_PIXELS: f32 = 8.0;

/// The detector and mesh model files under a folder (`assets/fetched/` as `scripts/fetch-assets.sh` fills it).
pub fn model_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("face_detection_short_range.tflite"), dir.join("face_landmark.tflite"))
}

/// One tracked face.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackedFace {
    /// The mesh in frame pixels (continuous coordinates).
    pub mesh: Mesh,
    /// The detection, when the detector ran for this frame.
    pub detection: Option<Detection>,
    /// The fitting crop used (smoothed for video).
    pub crop: FitCrop,
    /// The mesh in the crop's `CROP_PIXELS` picture: what the fit gets.
    pub landmarks: FaceLandmarks,
}

/// Counters for logs and benches.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TrackerCounts {
    pub frames: u64,
    pub faces: u64,
    pub detector_runs: u64,
    pub mesh_runs: u64,
}

/// MediaPipe face detection + face mesh + a fit, frame by frame.
pub struct MediaPipeTracker {
    detector: FaceDetector,
    mesh: FaceMesh,
    fit: Box<dyn LandmarkFit>,
    roi: Option<Roi>,
    crop: CropSmoother,
    pose: PoseSmoother,
    last: Option<TrackedFace>,
    counts: TrackerCounts,
    /// Presence below which the face counts as lost.
    pub min_presence: f32,
}

impl MediaPipeTracker {
    /// Loads both networks (each interpreter is built once, here) and takes the fit.
    pub fn open(detector: &Path, mesh: &Path, fit: Box<dyn LandmarkFit>) -> Result<Self> {
        Ok(MediaPipeTracker {
            detector: FaceDetector::open(detector)?,
            mesh: FaceMesh::open(mesh)?,
            fit,
            roi: None,
            crop: CropSmoother::default(),
            pose: PoseSmoother::default(),
            last: None,
            counts: TrackerCounts::default(),
            min_presence: MIN_PRESENCE,
        })
    }

    /// The face found in the last frame, if any.
    pub fn last_face(&self) -> Option<&TrackedFace> {
        self.last.as_ref()
    }

    pub fn counts(&self) -> TrackerCounts {
        self.counts
    }

    /// Forgets every temporal state: tracked crop, crop and pose smoothing, the fit's history.
    pub fn reset(&mut self) {
        self.roi = None;
        self.crop.reset();
        self.pose.reset();
        self.fit.reset();
        self.last = None;
    }

    /// Detector (when needed) and mesh: the face in frame pixels, or `None`.
    fn find_mesh(&mut self, img: &RgbImage) -> Result<Option<(Mesh, Option<Detection>)>> {
        if let Some(roi) = self.roi.take() {
            self.counts.mesh_runs += 1;
            let m = self.mesh.run(img, &roi)?;
            if m.presence >= self.min_presence {
                return Ok(Some((m, None)));
            }
        }
        self.counts.detector_runs += 1;
        let Some(det) = self.detector.detect(img)?.into_iter().next() else { return Ok(None) };
        let roi = roi_from_detection(&det);
        if roi.size.is_nan() || roi.size < MIN_ROI_PIXELS {
            return Ok(None);
        }
        self.counts.mesh_runs += 1;
        let m = self.mesh.run(img, &roi)?;
        Ok((m.presence >= self.min_presence).then_some((m, Some(det))))
    }

    /// The face in a video frame (tracked crop, smoothed fitting crop), or `None`.
    pub fn landmarks(&mut self, img: &RgbImage) -> Result<Option<TrackedFace>> {
        let found = self.find_mesh(img)?;
        let Some((mesh, detection)) = found else {
            self.reset();
            return Ok(None);
        };
        self.roi = roi_from_mesh(&mesh).filter(|r| r.size >= MIN_ROI_PIXELS);
        let crop = self.crop.update(FitCrop::for_box(mesh.bbox()));
        let landmarks = crop.landmarks(&mesh.points, mesh.presence, CROP_PIXELS);
        let face = TrackedFace { mesh, detection, crop, landmarks };
        self.last = Some(face.clone());
        Ok(Some(face))
    }

    /// A still photo: fresh detection, no history; the crop rounded to whole pixels so the landmarks match
    /// exactly what `lift` cuts with that [`CropBox`].
    pub fn still(&mut self, img: &RgbImage) -> Result<Option<(CropBox, TrackedFace)>> {
        self.reset();
        let found = self.find_mesh(img)?;
        self.reset();
        let Some((mesh, detection)) = found else { return Ok(None) };
        let b = FitCrop::for_box(mesh.bbox()).rounded();
        let crop = FitCrop::from_box(b);
        let landmarks = crop.landmarks(&mesh.points, mesh.presence, CROP_PIXELS);
        Ok(Some((b, TrackedFace { mesh, detection, crop, landmarks })))
    }

    /// Crop and fit a source photo for `lift`: the crop box and the source parameters, or `None` without a
    /// face.
    pub fn fit_source(&mut self, img: &RgbImage) -> Result<Option<(CropBox, SourceParams)>> {
        let Some((b, face)) = self.still(img)? else { return Ok(None) };
        Ok(Some((b, self.fit.fit_source(&face.landmarks)?)))
    }

    /// Fits video frames with this identity (the avatar's FLAME shape), when the fit uses one.
    pub fn set_identity(&mut self, shapecode: &[f32]) -> Result<()> {
        self.fit.set_identity(shapecode)
    }

    /// The fit's name, for logs.
    pub fn fit_name(&self) -> &str {
        self.fit.name()
    }
}

impl Tracker for MediaPipeTracker {
    fn track(&mut self, frame: &Frame) -> Result<Tracking> {
        self.counts.frames += 1;
        let Some(face) = self.landmarks(&frame.image)? else { return Ok(Tracking::NoFace) };
        let (mut pose, rms) = self.fit.fit_frame(&face.landmarks)?;
        log::trace!("frame {}: fit rms {rms:.2} px", frame.index);
        pose.key = format!("frame_{}", frame.index);
        pose.face = true;
        self.pose.apply(&mut pose);
        self.counts.faces += 1;
        Ok(Tracking::Face(Box::new(pose)))
    }
    fn name(&self) -> &str {
        "mediapipe"
    }
}
