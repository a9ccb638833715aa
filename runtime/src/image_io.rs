//! Image files in and out: PNG/JPEG into an [`Image`] at the model's size (as-is, or cropped with zero
//! padding and resized like the official tracker's `crop_image`), PNG out, and MJPEG AVI video out
//! ([`avi::AviWriter`]).

use std::path::Path;
use std::str::FromStr;

use gaga_kernels::resize::bilinear_antialias;

use crate::error::{Error, Result};
use crate::types::Image;

pub mod avi;

/// A square crop in source pixels: top-left corner (may lie outside the image) and side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    pub x: i64,
    pub y: i64,
    pub size: usize,
}

impl FromStr for CropBox {
    type Err = String;
    /// Parses `x,y,size` (integers; x and y may be negative, size positive).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let bad = || format!("crop box `{s}`: expected x,y,size (integers, size > 0)");
        if parts.len() != 3 {
            return Err(bad());
        }
        let x = parts[0].parse().map_err(|_| bad())?;
        let y = parts[1].parse().map_err(|_| bad())?;
        let size: usize = parts[2].parse().map_err(|_| bad())?;
        if size == 0 {
            return Err(bad());
        }
        Ok(CropBox { x, y, size })
    }
}

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io { path: path.to_path_buf(), source }
}

fn input_err(path: &Path, what: String) -> Error {
    Error::Other(format!("{}: {what}", path.display()))
}

/// Loads a PNG or JPEG file as a `size` x `size` image: without `crop` the file must already be that size;
/// with `crop`, the box is cut out (zero outside the picture) and resized to `size` with antialiasing.
pub fn load_image(path: &Path, size: usize, crop: Option<CropBox>) -> Result<Image> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    decode_image(path, &bytes, size, crop)
}

/// [`load_image`] on bytes already read; `path` only names the source in errors.
pub fn decode_image(path: &Path, bytes: &[u8], size: usize, crop: Option<CropBox>) -> Result<Image> {
    let decoded = image::load_from_memory(bytes).map_err(|e| input_err(path, format!("cannot decode as PNG or JPEG: {e}")))?;
    let rgb = decoded.to_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let mut img = Image::new(w, h);
    let plane = w * h;
    for (i, px) in rgb.pixels().enumerate() {
        for c in 0..3 {
            img.data[c * plane + i] = px.0[c] as f32 / 255.0;
        }
    }
    match crop {
        None if w == size && h == size => Ok(img),
        None => Err(input_err(path, format!("expected {size}x{size} pixels, found {w}x{h}; pass a crop box x,y,size to cut and resize"))),
        Some(b) => Ok(crop_resize(&img, b, size)),
    }
}

/// Cuts `b` out of `src` (zero where the box leaves the picture, as torchvision's `crop`), then resizes to
/// `size` with the antialiased bilinear filter (torchvision `resize(antialias=True)`).
pub fn crop_resize(src: &Image, b: CropBox, size: usize) -> Image {
    let n = b.size;
    let mut cut = vec![0f32; 3 * n * n];
    for c in 0..3 {
        for row in 0..n {
            let sy = b.y + row as i64;
            if sy < 0 || sy >= src.height as i64 {
                continue;
            }
            for col in 0..n {
                let sx = b.x + col as i64;
                if sx >= 0 && sx < src.width as i64 {
                    cut[(c * n + row) * n + col] = src.data[(c * src.height + sy as usize) * src.width + sx as usize];
                }
            }
        }
    }
    if n == size {
        return Image { width: size, height: size, data: cut };
    }
    let mut out = Image::new(size, size);
    bilinear_antialias(&cut, 3, n, n, size, size, &mut out.data);
    out
}

/// Interleaved 8-bit RGB, rounding as torchvision's `save_image` (`x * 255 + 0.5`, clamped).
pub fn to_rgb8(img: &Image) -> Vec<u8> {
    let plane = img.width * img.height;
    let mut out = vec![0u8; 3 * plane];
    for i in 0..plane {
        for c in 0..3 {
            out[3 * i + c] = (img.data[c * plane + i] * 255.0 + 0.5).clamp(0.0, 255.0) as u8;
        }
    }
    out
}

fn check_image(path: &Path, img: &Image) -> Result<(u32, u32)> {
    if img.data.len() != 3 * img.width * img.height || img.width == 0 || img.height == 0 {
        return Err(input_err(
            path,
            format!("image {}x{} holds {} values, expected {}", img.width, img.height, img.data.len(), 3 * img.width * img.height),
        ));
    }
    let dim = |v: usize| u32::try_from(v).map_err(|_| input_err(path, format!("side {v} is too large")));
    Ok((dim(img.width)?, dim(img.height)?))
}

/// Saves `img` as an 8-bit RGB PNG.
pub fn save_png(path: &Path, img: &Image) -> Result<()> {
    let (w, h) = check_image(path, img)?;
    image::save_buffer_with_format(path, &to_rgb8(img), w, h, image::ExtendedColorType::Rgb8, image::ImageFormat::Png)
        .map_err(|e| Error::Other(format!("{}: cannot write PNG: {e}", path.display())))
}

/// Encodes `img` as a baseline JPEG of the given quality (1-100).
pub fn encode_jpeg(img: &Image, quality: u8) -> Result<Vec<u8>> {
    let (w, h) = check_image(Path::new("frame"), img)?;
    let mut buf = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, quality)
        .encode(&to_rgb8(img), w, h, image::ExtendedColorType::Rgb8)
        .map_err(|e| Error::Other(format!("JPEG encoding of a {w}x{h} frame failed: {e}")))?;
    Ok(buf)
}

#[cfg(test)]
mod tests;
