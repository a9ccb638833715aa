//! BlazeFace short range (`face_detection_short_range.tflite`): faces within about 2 m of the camera.
//!
//! Pre-processing: the frame is letterboxed to a square (black bars, centred), shrunk to 128 x 128 and
//! scaled to [-1, 1]. Post-processing: 896 anchors (stride 8: 16 x 16 cells x 2, stride 16: 8 x 8 cells x 6;
//! unit size, centred in their cells), box centre = regressor / 128 + anchor, size = regressor / 128, six
//! keypoints the same way, score = sigmoid(logit clamped to +-100), then MediaPipe's weighted non-maximum
//! suppression (IoU 0.3: overlapping boxes are averaged, weighted by score).

use std::path::Path;

use image::RgbImage;

use super::net::TfliteNet;
use super::warp::{crop_to_tensor, Roi};
use crate::error::Result;

const INPUT: usize = 128;
const ANCHORS: usize = 896;
/// Boxes below this score are dropped (MediaPipe's `min_score_thresh` for the short-range model).
pub const MIN_SCORE: f32 = 0.5;
/// Boxes overlapping more than this (intersection over union) are merged.
const NMS_IOU: f32 = 0.3;

/// Keypoint order of BlazeFace's six keypoints.
pub const RIGHT_EYE: usize = 0;
pub const LEFT_EYE: usize = 1;

/// A face found by the detector, in frame pixels (continuous coordinates: the frame spans [0, w] x [0, h]).
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    /// x0, y0, x1, y1.
    pub bbox: [f32; 4],
    pub score: f32,
    /// Right eye, left eye (the person's), nose tip, mouth centre, right ear tragion, left ear tragion.
    pub keypoints: [[f32; 2]; 6],
}

impl Detection {
    pub fn width(&self) -> f32 {
        self.bbox[2] - self.bbox[0]
    }
    pub fn height(&self) -> f32 {
        self.bbox[3] - self.bbox[1]
    }
    pub fn centre(&self) -> [f32; 2] {
        [(self.bbox[0] + self.bbox[2]) * 0.5, (self.bbox[1] + self.bbox[3]) * 0.5]
    }
}

/// The anchor centres in [0, 1]^2, in the network's output order.
pub fn anchors() -> Vec<[f32; 2]> {
    let mut a = Vec::with_capacity(ANCHORS);
    for (grid, per_cell) in [(16usize, 2usize), (8, 6)] {
        for y in 0..grid {
            for x in 0..grid {
                for _ in 0..per_cell {
                    a.push([(x as f32 + 0.5) / grid as f32, (y as f32 + 0.5) / grid as f32]);
                }
            }
        }
    }
    a
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x.clamp(-100.0, 100.0)).exp())
}

/// Decodes raw outputs (`regressors` 896 x 16, `classificators` 896) into boxes in [0, 1]^2 of the network
/// input, keeping those with score >= `min_score`.
pub fn decode(regressors: &[f32], logits: &[f32], anchors: &[[f32; 2]], min_score: f32) -> Vec<Detection> {
    let s = INPUT as f32;
    let mut out = Vec::new();
    for ((reg, &logit), anchor) in regressors.chunks_exact(16).zip(logits).zip(anchors) {
        let score = sigmoid(logit);
        if score < min_score {
            continue;
        }
        let (cx, cy) = (reg[0] / s + anchor[0], reg[1] / s + anchor[1]);
        let (w, h) = (reg[2] / s, reg[3] / s);
        let mut keypoints = [[0f32; 2]; 6];
        for (k, kp) in keypoints.iter_mut().enumerate() {
            *kp = [reg[4 + 2 * k] / s + anchor[0], reg[5 + 2 * k] / s + anchor[1]];
        }
        out.push(Detection { bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0], score, keypoints });
    }
    out
}

/// Intersection over union of two boxes (0 for empty ones).
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// MediaPipe's weighted NMS: take the best remaining box, average it with every remaining box that overlaps
/// it by more than `iou_threshold` (weights = scores; the best score is kept), drop those, repeat.
pub fn weighted_nms(mut dets: Vec<Detection>, iou_threshold: f32) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut out = Vec::new();
    while let Some(best) = dets.first().cloned() {
        let (group, rest): (Vec<Detection>, Vec<Detection>) = dets.into_iter().partition(|d| iou(&best.bbox, &d.bbox) > iou_threshold);
        dets = rest;
        let total: f32 = group.iter().map(|d| d.score).sum();
        let mut merged = best.clone();
        if group.len() > 1 && total > 0.0 {
            merged.bbox = [0.0; 4];
            merged.keypoints = [[0.0; 2]; 6];
            for d in &group {
                let w = d.score / total;
                for i in 0..4 {
                    merged.bbox[i] += w * d.bbox[i];
                }
                for (m, k) in merged.keypoints.iter_mut().zip(&d.keypoints) {
                    m[0] += w * k[0];
                    m[1] += w * k[1];
                }
            }
        }
        // The group always holds `best` itself (IoU 1), so the loop ends.
        out.push(merged);
        if group.is_empty() {
            break;
        }
    }
    out
}

/// The face detector: one interpreter, reused.
pub struct FaceDetector {
    net: TfliteNet,
    anchors: Vec<[f32; 2]>,
    /// Scores below this are not faces.
    pub min_score: f32,
}

impl FaceDetector {
    /// Loads `face_detection_short_range.tflite` and checks its tensors.
    pub fn open(file: &Path) -> Result<Self> {
        let net = TfliteNet::open(file, &[1, INPUT, INPUT, 3], &[("regressors", ANCHORS * 16), ("classificators", ANCHORS)])?;
        Ok(FaceDetector { net, anchors: anchors(), min_score: MIN_SCORE })
    }

    /// Faces in `img`, best first, in frame pixels (continuous coordinates).
    pub fn detect(&mut self, img: &RgbImage) -> Result<Vec<Detection>> {
        let (w, h) = (img.width() as f32, img.height() as f32);
        if img.width() == 0 || img.height() == 0 {
            return Ok(Vec::new());
        }
        // Letterbox: a square of the long side, centred on the frame.
        let side = w.max(h);
        let roi = Roi { cx: w / 2.0, cy: h / 2.0, size: side, rotation: 0.0 };
        crop_to_tensor(img, &roi, INPUT, 2.0, -1.0, self.net.input_mut()?);
        self.net.invoke()?;
        let dets = decode(self.net.output(0)?, self.net.output(1)?, &self.anchors, self.min_score);
        let (ox, oy) = (roi.cx - side / 2.0, roi.cy - side / 2.0);
        let to_frame = |p: [f32; 2]| [p[0] * side + ox, p[1] * side + oy];
        Ok(weighted_nms(dets, NMS_IOU)
            .into_iter()
            .map(|mut d| {
                let [x0, y0] = to_frame([d.bbox[0], d.bbox[1]]);
                let [x1, y1] = to_frame([d.bbox[2], d.bbox[3]]);
                d.bbox = [x0, y0, x1, y1];
                for k in &mut d.keypoints {
                    *k = to_frame(*k);
                }
                d
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_are_896_anchors_centred_in_their_cells() {
        let a = anchors();
        assert_eq!(a.len(), ANCHORS);
        assert_eq!((a[0], a[1], a[2]), ([0.5 / 16.0, 0.5 / 16.0], [0.5 / 16.0, 0.5 / 16.0], [1.5 / 16.0, 0.5 / 16.0]));
        assert_eq!(a[512], [0.5 / 8.0, 0.5 / 8.0]);
        assert_eq!(a[ANCHORS - 1], [7.5 / 8.0, 7.5 / 8.0]);
    }

    #[test]
    fn decoding_adds_the_anchor_and_divides_by_the_input_size() {
        let anchors = anchors();
        let mut reg = vec![0.0; ANCHORS * 16];
        let mut logits = vec![-10.0; ANCHORS];
        // Anchor 512 sits at (1/16, 1/16); shift its centre by (+12.8, -6.4) input pixels, size 32 x 64.
        reg[512 * 16..512 * 16 + 6].copy_from_slice(&[12.8, -6.4, 32.0, 64.0, 1.28, 2.56]);
        logits[512] = 2.0;
        let d = decode(&reg, &logits, &anchors, 0.5);
        assert_eq!(d.len(), 1);
        let (cx, cy) = (0.0625 + 0.1, 0.0625 - 0.05);
        let want = [cx - 0.125, cy - 0.25, cx + 0.125, cy + 0.25];
        // f32 arithmetic on values of order 1: 1e-6.
        assert!(d[0].bbox.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6), "{:?}", d[0].bbox);
        assert!((d[0].score - 1.0 / (1.0 + (-2.0f32).exp())).abs() < 1e-6);
        assert!((d[0].keypoints[0][0] - 0.0725).abs() < 1e-6 && (d[0].keypoints[0][1] - 0.0825).abs() < 1e-6);
    }

    #[test]
    fn weighted_nms_averages_overlapping_boxes_and_keeps_separate_ones() {
        let det = |x: f32, score: f32| Detection { bbox: [x, 0.0, x + 1.0, 1.0], score, keypoints: [[x, 0.0]; 6] };
        let out = weighted_nms(vec![det(0.0, 0.9), det(0.1, 0.6), det(5.0, 0.7)], 0.3);
        assert_eq!(out.len(), 2);
        // (0.9 * 0 + 0.6 * 0.1) / 1.5 = 0.04; the merged box keeps the best score.
        assert!((out[0].bbox[0] - 0.04).abs() < 1e-6 && out[0].score == 0.9);
        assert_eq!(out[1].bbox[0], 5.0);
        assert!(iou(&[0.0, 0.0, 0.0, 0.0], &[0.0, 0.0, 0.0, 0.0]) == 0.0);
    }
}
