//! Cutting a (rotated) square out of a frame into a network's input tensor.
//!
//! Coordinates here are continuous pixels: pixel `i` covers `[i, i+1)`, so its centre is `i + 0.5`.
//! (`FaceLandmarks` use centre-at-integer pixels; [`to_centre_convention`] converts.) Outside the frame
//! reads as black, like MediaPipe's zero border. Shrinking averages `k x k` bilinear samples per output pixel
//! (`k` = the shrink factor rounded up) so a 512-pixel face does not alias when it becomes 128 pixels.

use image::RgbImage;

/// A square region of a frame, possibly rotated: centre, side and rotation (radians; positive turns the
/// region's x axis from the frame's x axis towards the frame's y axis, i.e. clockwise on screen).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Roi {
    pub cx: f32,
    pub cy: f32,
    pub size: f32,
    pub rotation: f32,
}

impl Roi {
    /// Frame point for a point of the region given in [0, 1]^2 (region coordinates, y down).
    pub fn to_frame(&self, u: f32, v: f32) -> [f32; 2] {
        let (s, c) = self.rotation.sin_cos();
        let (x, y) = ((u - 0.5) * self.size, (v - 0.5) * self.size);
        [self.cx + c * x - s * y, self.cy + s * x + c * y]
    }
}

/// Shifts a continuous-pixel coordinate to the centre-at-integer convention.
pub fn to_centre_convention(v: f32) -> f32 {
    v - 0.5
}

/// Bilinear sample of channel values at continuous point (x, y); black outside.
fn bilinear(img: &RgbImage, x: f32, y: f32) -> [f32; 3] {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (fx, fy) = (x - 0.5, y - 0.5);
    let (x0, y0) = (fx.floor(), fy.floor());
    let (tx, ty) = (fx - x0, fy - y0);
    let (x0, y0) = (x0 as i64, y0 as i64);
    let mut acc = [0f32; 3];
    for (dy, wy) in [(0, 1.0 - ty), (1, ty)] {
        for (dx, wx) in [(0, 1.0 - tx), (1, tx)] {
            let (px, py) = (x0 + dx, y0 + dy);
            if px < 0 || py < 0 || px >= w || py >= h {
                continue;
            }
            let p = img.get_pixel(px as u32, py as u32).0;
            let wgt = wx * wy;
            for c in 0..3 {
                acc[c] += wgt * f32::from(p[c]);
            }
        }
    }
    acc
}

/// Fills `out` (`n x n x 3`, NHWC) with the region `roi` of `img`, each value `pixel / 255 * scale + offset`
/// (`scale` 2, `offset` -1 gives [-1, 1]; 1 and 0 give [0, 1]).
pub fn crop_to_tensor(img: &RgbImage, roi: &Roi, n: usize, scale: f32, offset: f32, out: &mut [f32]) {
    let k = ((roi.size / n as f32).ceil() as usize).clamp(1, 8);
    let inv = 1.0 / (k * k) as f32;
    let (s, c) = roi.rotation.sin_cos();
    let step = roi.size / n as f32;
    let half = roi.size * 0.5;
    for (j, row) in out.chunks_exact_mut(n * 3).take(n).enumerate() {
        for (i, px) in row.chunks_exact_mut(3).enumerate() {
            let mut acc = [0f32; 3];
            for sy in 0..k {
                let y = (j as f32 + (sy as f32 + 0.5) / k as f32) * step - half;
                for sx in 0..k {
                    let x = (i as f32 + (sx as f32 + 0.5) / k as f32) * step - half;
                    let v = bilinear(img, roi.cx + c * x - s * y, roi.cy + s * x + c * y);
                    for ch in 0..3 {
                        acc[ch] += v[ch];
                    }
                }
            }
            for ch in 0..3 {
                px[ch] = acc[ch] * inv / 255.0 * scale + offset;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain reference: the same mapping, one bilinear sample per pixel, no rotation.
    fn reference_axis_aligned(img: &RgbImage, x0: f32, y0: f32, side: f32, n: usize) -> Vec<f32> {
        let mut out = vec![0.0; n * n * 3];
        for j in 0..n {
            for i in 0..n {
                let x = x0 + (i as f32 + 0.5) * side / n as f32;
                let y = y0 + (j as f32 + 0.5) * side / n as f32;
                let v = bilinear(img, x, y);
                for c in 0..3 {
                    out[(j * n + i) * 3 + c] = v[c] / 255.0;
                }
            }
        }
        out
    }

    fn ramp() -> RgbImage {
        RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 6) as u8, (y * 8) as u8, ((x + y) * 3) as u8]))
    }

    #[test]
    fn an_unrotated_same_size_crop_copies_the_pixels_exactly() {
        let img = ramp();
        let roi = Roi { cx: 15.0, cy: 12.0, size: 10.0, rotation: 0.0 };
        let mut out = vec![0.0; 10 * 10 * 3];
        crop_to_tensor(&img, &roi, 10, 1.0, 0.0, &mut out);
        for j in 0..10u32 {
            for i in 0..10u32 {
                let p = img.get_pixel(10 + i, 7 + j).0;
                for c in 0..3 {
                    // Sampling exactly at pixel centres: only f32 rounding of the /255 (1e-6).
                    assert!((out[((j * 10 + i) * 3) as usize + c as usize] - f32::from(p[c as usize]) / 255.0).abs() < 1e-6);
                }
            }
        }
    }

    #[test]
    fn an_enlarging_crop_matches_single_sample_bilinear() {
        let img = ramp();
        let roi = Roi { cx: 20.0, cy: 15.0, size: 12.0, rotation: 0.0 };
        let mut out = vec![0.0; 24 * 24 * 3];
        crop_to_tensor(&img, &roi, 24, 1.0, 0.0, &mut out);
        let want = reference_axis_aligned(&img, 14.0, 9.0, 12.0, 24);
        // Same arithmetic in a different order: f32 rounding only.
        assert!(out.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5));
    }

    #[test]
    fn a_quarter_turn_reads_the_frame_rotated() {
        let img = ramp();
        let roi = Roi { cx: 20.0, cy: 15.0, size: 8.0, rotation: std::f32::consts::FRAC_PI_2 };
        let mut out = vec![0.0; 8 * 8 * 3];
        crop_to_tensor(&img, &roi, 8, 1.0, 0.0, &mut out);
        // Region x runs down the frame, region y runs leftwards: region (i, j) is frame pixel (23 - j, 11 + i).
        for j in 0..8u32 {
            for i in 0..8u32 {
                let p = img.get_pixel(23 - j, 11 + i).0;
                // cos(pi/2) is 4e-8, not 0: sample positions move by < 1e-6 px.
                assert!((out[((j * 8 + i) * 3) as usize] - f32::from(p[0]) / 255.0).abs() < 1e-4, "({i},{j})");
            }
        }
        assert_eq!(roi.to_frame(1.0, 0.5).map(f32::round), [20.0, 19.0]);
    }

    #[test]
    fn outside_the_frame_is_black_and_scale_offset_apply() {
        let img = RgbImage::from_pixel(4, 4, image::Rgb([255, 255, 255]));
        let roi = Roi { cx: -10.0, cy: -10.0, size: 4.0, rotation: 0.0 };
        let mut out = vec![0.0; 4 * 4 * 3];
        crop_to_tensor(&img, &roi, 4, 2.0, -1.0, &mut out);
        assert!(out.iter().all(|&v| v == -1.0));
    }

    #[test]
    fn shrinking_averages_instead_of_aliasing() {
        // A one-pixel checkerboard shrunk 4x must come out mid-grey, not black or white.
        let img = RgbImage::from_fn(64, 64, |x, y| if (x + y) % 2 == 0 { image::Rgb([255; 3]) } else { image::Rgb([0; 3]) });
        let roi = Roi { cx: 32.0, cy: 32.0, size: 64.0, rotation: 0.0 };
        let mut out = vec![0.0; 16 * 16 * 3];
        crop_to_tensor(&img, &roi, 16, 1.0, 0.0, &mut out);
        assert!(out.iter().all(|&v| (v - 0.5).abs() < 1e-3), "{:?}", &out[..6]);
    }
}
