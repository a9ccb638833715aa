//! The Linux framebuffer (`/dev/fbN`): geometry from sysfs (`virtual_size`, `bits_per_pixel`, `stride`),
//! pixels packed as RGB565 or XRGB8888 (little-endian, the layout of nearly every fbdev driver), and the
//! whole frame written at offset 0 with one `pwrite`-style seek and write. A plain file with the same
//! layout stands in for the device in tests (`fb:/path/file:WxH:BPP`).

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use image::RgbImage;

use super::{display_err, letterbox, Display};
use crate::error::{Error, Result};

/// Framebuffer geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FbLayout {
    pub width: u32,
    pub height: u32,
    /// 16 (RGB565) or 32 (XRGB8888).
    pub bits_per_pixel: u32,
    /// Bytes per line; at least `width * bits_per_pixel / 8` (drivers may pad).
    pub line_length: u32,
}

impl FbLayout {
    /// A packed layout (no line padding) from `WxH` and `BPP` strings.
    pub fn parse(size: &str, bpp: &str) -> std::result::Result<FbLayout, String> {
        let (w, h) = size.split_once('x').ok_or_else(|| format!("size `{size}`: expected WxH"))?;
        let (width, height): (u32, u32) = match (w.parse(), h.parse()) {
            (Ok(w), Ok(h)) if w > 0 && h > 0 => (w, h),
            _ => return Err(format!("size `{size}`: expected positive WxH")),
        };
        let bits_per_pixel: u32 = bpp.parse().map_err(|_| format!("bits per pixel `{bpp}`: expected 16 or 32"))?;
        FbLayout::new(width, height, bits_per_pixel, width * (bits_per_pixel / 8))
    }

    /// Checks the depth (16 or 32) and that lines are long enough.
    pub fn new(width: u32, height: u32, bits_per_pixel: u32, line_length: u32) -> std::result::Result<FbLayout, String> {
        if bits_per_pixel != 16 && bits_per_pixel != 32 {
            return Err(format!("bits per pixel: expected 16 (RGB565) or 32 (XRGB8888), found {bits_per_pixel}"));
        }
        let min = width.checked_mul(bits_per_pixel / 8).ok_or("width too large")?;
        if line_length < min {
            return Err(format!("line length: expected at least {min} bytes for {width} pixels, found {line_length}"));
        }
        Ok(FbLayout { width, height, bits_per_pixel, line_length })
    }

    /// Bytes of one full frame.
    pub fn frame_bytes(&self) -> usize {
        self.line_length as usize * self.height as usize
    }

    /// Reads `/sys/class/graphics/fbN/` for the device `/dev/fbN`.
    pub fn from_sysfs(device: &Path) -> Result<FbLayout> {
        let name = device.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let sys = PathBuf::from("/sys/class/graphics").join(name);
        let read = |field: &str| -> Result<String> {
            let p = sys.join(field);
            std::fs::read_to_string(&p).map(|s| s.trim().to_string()).map_err(|e| Error::io(p, e))
        };
        let bad = |what: String| Error::Config { source_name: sys.display().to_string(), what };
        let size = read("virtual_size")?;
        let (w, h) = size.split_once(',').ok_or_else(|| bad(format!("virtual_size: expected W,H, found `{size}`")))?;
        let num = |field: &str, v: &str| v.parse::<u32>().map_err(|_| bad(format!("{field}: expected a number, found `{v}`")));
        let bpp = read("bits_per_pixel")?;
        let stride = read("stride")?;
        FbLayout::new(num("virtual_size", w)?, num("virtual_size", h)?, num("bits_per_pixel", &bpp)?, num("stride", &stride)?).map_err(bad)
    }
}

/// Packs one RGB pixel the framebuffer's way: RGB565 keeps the top 5/6/5 bits; XRGB8888 is B, G, R, 0 in memory.
pub fn pack_pixel(rgb: [u8; 3], bits_per_pixel: u32, out: &mut [u8]) {
    let [r, g, b] = rgb;
    if bits_per_pixel == 16 {
        let v = (u16::from(r >> 3) << 11) | (u16::from(g >> 2) << 5) | u16::from(b >> 3);
        out[..2].copy_from_slice(&v.to_le_bytes());
    } else {
        out[..4].copy_from_slice(&[b, g, r, 0]);
    }
}

/// Packs a whole frame (already `layout.width` x `layout.height`) into `buf` (`layout.frame_bytes()` long).
pub fn pack_frame(img: &RgbImage, layout: &FbLayout, buf: &mut [u8]) {
    let bytes = (layout.bits_per_pixel / 8) as usize;
    for (y, row) in img.rows().enumerate().take(layout.height as usize) {
        let line = &mut buf[y * layout.line_length as usize..][..layout.line_length as usize];
        for (px, dst) in row.zip(line.chunks_exact_mut(bytes)) {
            pack_pixel(px.0, layout.bits_per_pixel, dst);
        }
    }
}

/// Shows frames on a framebuffer device or a framebuffer-layout file, letterboxed to its size.
pub struct FramebufferDisplay {
    path: PathBuf,
    file: File,
    layout: FbLayout,
    buf: Vec<u8>,
}

impl FramebufferDisplay {
    /// Opens `/dev/fbN` with the geometry sysfs reports.
    pub fn open_device(path: &Path) -> Result<Self> {
        let layout = FbLayout::from_sysfs(path)?;
        let file = OpenOptions::new().write(true).open(path).map_err(|e| Error::io(path, e))?;
        Ok(Self::with(path, file, layout))
    }

    /// Creates (or truncates) a file of `layout`, zero-filled, that behaves like the device.
    pub fn create_file(path: &Path, layout: FbLayout) -> Result<Self> {
        let file = OpenOptions::new().create(true).write(true).truncate(true).open(path).map_err(|e| Error::io(path, e))?;
        file.set_len(layout.frame_bytes() as u64).map_err(|e| Error::io(path, e))?;
        Ok(Self::with(path, file, layout))
    }

    fn with(path: &Path, file: File, layout: FbLayout) -> Self {
        FramebufferDisplay { path: path.to_path_buf(), file, layout, buf: vec![0; layout.frame_bytes()] }
    }

    pub fn layout(&self) -> FbLayout {
        self.layout
    }
}

impl Display for FramebufferDisplay {
    fn show(&mut self, frame: &RgbImage) -> Result<()> {
        if frame.dimensions() == (self.layout.width, self.layout.height) {
            pack_frame(frame, &self.layout, &mut self.buf);
        } else {
            pack_frame(&letterbox(frame, self.layout.width, self.layout.height), &self.layout, &mut self.buf);
        }
        let write = |f: &mut File, buf: &[u8]| -> std::io::Result<()> {
            f.seek(SeekFrom::Start(0))?;
            f.write_all(buf)
        };
        write(&mut self.file, &self.buf).map_err(|e| display_err(self.describe(), e.to_string()))
    }

    fn native_size(&self) -> Option<(u32, u32)> {
        Some((self.layout.width, self.layout.height))
    }

    fn describe(&self) -> String {
        let l = self.layout;
        let fmt = if l.bits_per_pixel == 16 { "RGB565" } else { "XRGB8888" };
        format!("framebuffer {} ({}x{} {fmt}, {} bytes/line)", self.path.display(), l.width, l.height, l.line_length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgb565_and_xrgb8888_pack_known_values() {
        let mut b = [0u8; 4];
        pack_pixel([255, 0, 0], 16, &mut b);
        assert_eq!(&b[..2], &0xF800u16.to_le_bytes());
        pack_pixel([0, 255, 0], 16, &mut b);
        assert_eq!(&b[..2], &0x07E0u16.to_le_bytes());
        pack_pixel([8, 4, 255], 16, &mut b);
        assert_eq!(&b[..2], &0x083Fu16.to_le_bytes());
        pack_pixel([0x12, 0x34, 0x56], 32, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0x0012_3456);
    }

    #[test]
    fn padded_lines_leave_the_padding_alone() {
        let layout = FbLayout::new(2, 2, 16, 6).expect("valid");
        let img = RgbImage::from_pixel(2, 2, image::Rgb([255, 255, 255]));
        let mut buf = vec![0xAA; layout.frame_bytes()];
        pack_frame(&img, &layout, &mut buf);
        assert_eq!(buf, [0xFF, 0xFF, 0xFF, 0xFF, 0xAA, 0xAA, 0xFF, 0xFF, 0xFF, 0xFF, 0xAA, 0xAA]);
    }

    #[test]
    fn bad_layouts_name_the_field() {
        assert!(FbLayout::parse("64x48", "24").expect_err("24").contains("24"));
        assert!(FbLayout::new(10, 10, 32, 20).expect_err("short line").contains("line length"));
        assert!(FbLayout::parse("0x48", "16").is_err());
    }
}
