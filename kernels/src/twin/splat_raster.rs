//! Twin of `splat_raster.comp`: one invocation blends one pixel over its tile's sorted list, with the
//! official rules in the CPU splatter's order and its `exp`. The shader stages the list in batches of
//! 256 in shared memory and leaves when every pixel of the tile has stopped; neither changes what a
//! pixel computes, so the twin walks the list directly.

use half::f16;

use crate::splat::project::exp;

use super::splat::{SplatPush, BACKGROUND_OFFSET, CHANNELS, REC_WORDS};

/// `1.0f / 255.0f`: weaker contributions are skipped.
pub const MIN_ALPHA: f32 = 1.0 / 255.0;
/// Alpha is clamped here.
pub const MAX_ALPHA: f32 = 0.99;
/// A pixel stops when its transmittance would fall below this.
pub const MIN_T: f32 = 0.0001;

/// What the invocation for pixel `(x, y)` (inside the image) writes to `image` (`[CHANNELS, H, W]`):
/// `tile_list` is its tile's sorted Gaussian indices, `rec` the records, `colors` `[N, CHANNELS]`,
/// `cam` the camera buffer (background at `BACKGROUND_OFFSET`).
#[allow(clippy::too_many_arguments)]
pub fn raster_pixel(p: &SplatPush, x: usize, y: usize, tile_list: &[u32], rec: &[u32], colors: &[f32], cam: &[f32], image: &mut [f32]) {
    let mut acc = [0f32; CHANNELS];
    let mut t = 1f32;
    let (pxf, pyf) = (x as f32, y as f32);
    for &id in tile_list {
        let r = &rec[id as usize * REC_WORDS..][..REC_WORDS];
        let g = |k: usize| f32::from_bits(r[k]);
        let (dx, dy) = (g(0) - pxf, g(1) - pyf);
        let cdy = g(4) * dy * dy;
        let power = -0.5 * (g(2) * dx * dx + cdy) - g(3) * dx * dy;
        if power > 0.0 {
            continue;
        }
        let alpha = (g(5) * exp(power)).min(MAX_ALPHA);
        if alpha < MIN_ALPHA {
            continue;
        }
        let test_t = t * (1.0 - alpha);
        if test_t < MIN_T {
            break;
        }
        let color = &colors[id as usize * CHANNELS..][..CHANNELS];
        for (a, &f) in acc.iter_mut().zip(color) {
            *a += f * alpha * t;
        }
        t = test_t;
    }
    let (w, plane) = (p.width as usize, p.width as usize * p.height as usize);
    for (ch, a) in acc.iter().enumerate() {
        image[ch * plane + y * w + x] = a + t * cam[BACKGROUND_OFFSET + ch];
    }
}

/// What `splat_raster_f16.spv` stores: the fp32 result of [`raster_pixel`] rounded once to fp16. This
/// rounds to nearest even; Vulkan also lets the store round toward zero, so compare within one fp16 step.
pub fn store_f16(image: &[f32]) -> Vec<f16> {
    image.iter().map(|&v| f16::from_f32(v)).collect()
}
