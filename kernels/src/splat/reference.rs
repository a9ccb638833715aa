//! The plain oracle for `splat`: per pixel, every Gaussian that survives the shared preprocessing and whose
//! tile rectangle covers the pixel's tile, in (depth, index) order, blended with the official rules.
//! Quadratic in everything; for tests on small scenes only.

use super::project::{exp, project, BLOCK};
use super::raster::{MAX_ALPHA, MIN_ALPHA, MIN_T};
use super::{GaussianSet, SplatCamera};

/// Same contract as [`super::splat`], single-threaded, allocating.
pub fn splat(gaussians: &GaussianSet, camera: &SplatCamera, background: &[f32], out: &mut [f32]) {
    let c = gaussians.channels();
    let (w, h) = (camera.width, camera.height);
    assert_eq!(background.len(), c, "reference splat: background length");
    assert_eq!(out.len(), c * h * w, "reference splat: output length");

    let colors = gaussians.colors().to_f32();
    let mut visible: Vec<(usize, super::project::Projected)> =
        (0..gaussians.len()).filter_map(|i| project(gaussians, i, camera).map(|p| (i, p))).collect();
    visible.sort_by(|a, b| a.1.depth.total_cmp(&b.1.depth).then(a.0.cmp(&b.0)));

    for y in 0..h {
        for x in 0..w {
            let (tx, ty) = (x / BLOCK, y / BLOCK);
            let mut t = 1f32;
            let mut acc = vec![0f32; c];
            for (i, p) in visible.iter().filter(|(_, p)| p.rect.contains(tx, ty)) {
                let s = &p.splat;
                let (dx, dy) = (s.x - x as f32, s.y - y as f32);
                let power = -0.5 * (s.conic[0] * dx * dx + s.conic[2] * dy * dy) - s.conic[1] * dx * dy;
                if power > 0.0 {
                    continue;
                }
                let alpha = (s.opacity * exp(power)).min(MAX_ALPHA);
                if alpha < MIN_ALPHA {
                    continue;
                }
                let test_t = t * (1.0 - alpha);
                if test_t < MIN_T {
                    break;
                }
                for (a, &f) in acc.iter_mut().zip(&colors[*i * c..(*i + 1) * c]) {
                    *a += f * alpha * t;
                }
                t = test_t;
            }
            for ch in 0..c {
                out[ch * h * w + y * w + x] = acc[ch] + t * background[ch];
            }
        }
    }
}
