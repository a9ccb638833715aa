//! Camera pixel formats to RGB: packed YUYV 4:2:2 (BT.601, limited range, as UVC webcams send it) and
//! Motion-JPEG (one JPEG per buffer). Short or corrupt buffers are errors, never panics.

use image::RgbImage;

/// Converts one YUYV (Y0 U Y1 V) frame of `width` x `height` into RGB. `width` must be even; extra
/// bytes after the frame (drivers round buffers up) are ignored.
pub fn yuyv_to_rgb(data: &[u8], width: u32, height: u32) -> Result<RgbImage, String> {
    if width & 1 == 1 {
        return Err(format!("YUYV needs an even width, found {width}"));
    }
    let need = 2 * width as usize * height as usize;
    if data.len() < need {
        return Err(format!("YUYV {width}x{height}: expected {need} bytes, found {}", data.len()));
    }
    let mut out = RgbImage::new(width, height);
    for (src, dst) in data[..need].chunks_exact(4).zip(out.as_mut().chunks_exact_mut(6)) {
        let (u, v) = (src[1], src[3]);
        dst[..3].copy_from_slice(&yuv_to_rgb(src[0], u, v));
        dst[3..].copy_from_slice(&yuv_to_rgb(src[2], u, v));
    }
    Ok(out)
}

/// BT.601 limited range in 8.8 fixed point (the integer form of 1.164, 1.596, 0.392, 0.813, 2.017).
#[inline]
pub fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = 298 * (i32::from(y) - 16);
    let d = i32::from(u) - 128;
    let e = i32::from(v) - 128;
    let clamp = |x: i32| ((x + 128) >> 8).clamp(0, 255) as u8;
    [clamp(c + 409 * e), clamp(c - 100 * d - 208 * e), clamp(c + 516 * d)]
}

/// Decodes one MJPEG buffer. A truncated or corrupt JPEG is an error message.
pub fn mjpeg_to_rgb(data: &[u8]) -> Result<RgbImage, String> {
    // A JPEG starts with SOI (FF D8); catching garbage here gives a clearer message than the decoder's.
    if data.len() < 4 || data[0] != 0xFF || data[1] != 0xD8 {
        return Err(format!("not a JPEG ({} bytes, no start-of-image marker)", data.len()));
    }
    // Many UVC webcams leave out the Huffman tables and rely on the standard ones (the AVI1 MJPEG convention).
    let patched = super::jpeg_dht::with_default_dht(data);
    image::load_from_memory_with_format(patched.as_deref().unwrap_or(data), image::ImageFormat::Jpeg)
        .map(|i| i.to_rgb8())
        .map_err(|e| format!("corrupt JPEG ({} bytes): {e}", data.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook floating-point BT.601 formula, the oracle for the fixed-point one.
    fn reference(y: u8, u: u8, v: u8) -> [f32; 3] {
        let (c, d, e) = (f32::from(y) - 16.0, f32::from(u) - 128.0, f32::from(v) - 128.0);
        [1.164 * c + 1.596 * e, 1.164 * c - 0.392 * d - 0.813 * e, 1.164 * c + 2.017 * d].map(|x| x.clamp(0.0, 255.0))
    }

    #[test]
    fn fixed_point_matches_the_float_formula_within_one_level() {
        // 8.8 fixed point rounds each coefficient to 1/256: at most ~0.9 of a level apart over the range.
        for y in (0..=255).step_by(5) {
            for u in (0..=255).step_by(15) {
                for v in (0..=255).step_by(15) {
                    let got = yuv_to_rgb(y as u8, u as u8, v as u8);
                    let want = reference(y as u8, u as u8, v as u8);
                    for c in 0..3 {
                        assert!((f32::from(got[c]) - want[c]).abs() <= 1.0, "yuv ({y},{u},{v}) channel {c}: {} vs {}", got[c], want[c]);
                    }
                }
            }
        }
    }

    #[test]
    fn hand_made_yuyv_frame_gives_black_white_grey_and_red() {
        // 4x1 pixels: black, white (shared chroma 128), then mid grey and saturated red sharing chroma.
        let frame = [16, 128, 235, 128, 126, 128, 126, 128];
        let rgb = yuyv_to_rgb(&frame, 4, 1).expect("valid frame");
        assert_eq!(rgb.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(rgb.get_pixel(1, 0).0, [255, 255, 255]);
        assert_eq!(rgb.get_pixel(2, 0).0, [128, 128, 128]);
        let red = yuyv_to_rgb(&[81, 90, 81, 240], 2, 1).expect("valid frame");
        let px = red.get_pixel(0, 0).0;
        assert!(px[0] >= 254 && px[1] <= 1 && px[2] <= 1, "BT.601 red came out as {px:?}");
    }

    #[test]
    fn short_or_odd_yuyv_buffers_are_errors() {
        assert!(yuyv_to_rgb(&[0; 7], 2, 2).is_err());
        assert!(yuyv_to_rgb(&[0; 6], 3, 1).is_err());
    }

    #[test]
    fn truncated_and_garbage_mjpeg_are_errors_not_panics() {
        let img = RgbImage::from_fn(32, 24, |x, y| image::Rgb([x as u8 * 8, y as u8 * 10, 99]));
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90).encode_image(&img).expect("encode");
        assert_eq!(mjpeg_to_rgb(&jpeg).expect("whole JPEG").dimensions(), (32, 24));
        for cut in [0, 2, 10, jpeg.len() / 3, jpeg.len() / 2] {
            let _ = mjpeg_to_rgb(&jpeg[..cut]); // must return, Ok (padded) or Err, without panicking
        }
        assert!(mjpeg_to_rgb(b"\xFF\xD8garbage that is no JPEG").is_err());
        assert!(mjpeg_to_rgb(&[0u8; 100]).is_err());
    }
}
