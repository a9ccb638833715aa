//! A captured frame and the conversions between 8-bit interleaved RGB and the runtime's planar [`Image`].

use std::time::Instant;

use gaga_runtime::Image;
use image::RgbImage;

/// One frame from a source: pixels, when they were captured, and their index in the source.
#[derive(Clone, Debug)]
pub struct Frame {
    pub image: RgbImage,
    /// When the source got the pixels (for a camera: when the newest buffer was dequeued).
    pub captured: Instant,
    /// Position in the source (camera: driver sequence number; file: frame number from 0).
    pub index: u64,
}

/// 8-bit interleaved RGB to the runtime's `[3, H, W]` planes in [0, 1].
pub fn to_planar(rgb: &RgbImage) -> Image {
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let mut img = Image::new(w, h);
    let plane = w * h;
    for (i, px) in rgb.pixels().enumerate() {
        for c in 0..3 {
            img.data[c * plane + i] = f32::from(px.0[c]) / 255.0;
        }
    }
    img
}

/// The runtime's planar image to 8-bit RGB, values clamped to [0, 1] and rounded.
pub fn from_planar(img: &Image) -> RgbImage {
    let plane = img.width * img.height;
    let mut out = RgbImage::new(img.width as u32, img.height as u32);
    for (i, px) in out.pixels_mut().enumerate() {
        for c in 0..3 {
            let v = img.data.get(c * plane + i).copied().unwrap_or(0.0);
            px.0[c] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planar_round_trip_keeps_every_byte() {
        let rgb = RgbImage::from_fn(5, 3, |x, y| image::Rgb([(x * 50) as u8, (y * 80) as u8, (x + y) as u8]));
        assert_eq!(from_planar(&to_planar(&rgb)), rgb);
    }
}
