//! Display sinks: where the kiosk's frames go. A [`DisplaySpec`] string picks one:
//!
//! | spec | display |
//! |---|---|
//! | `fb:/dev/fb0` | Linux framebuffer, geometry read from sysfs |
//! | `fb:/path/file:WxH:BPP` | a file with a framebuffer's layout (BPP 16 = RGB565, 32 = XRGB8888), for tests |
//! | `png:DIR` | `DIR/frame_00000.png`, ... |
//! | `video:FILE.avi` | an MJPEG AVI |
//! | `http:PORT` or `http:ADDR:PORT` | MJPEG over HTTP (`multipart/x-mixed-replace`), 127.0.0.1 unless an address is given |

use std::path::PathBuf;
use std::str::FromStr;

use image::RgbImage;

use crate::error::{Error, Result};

pub mod fb;
pub mod files;
pub mod http;

pub use fb::{FbLayout, FramebufferDisplay};
pub use files::{AviDisplay, PngSequenceDisplay};
pub use http::MjpegHttpDisplay;

/// Something that shows frames.
pub trait Display {
    /// Shows one frame (scaled or letterboxed as the display needs).
    fn show(&mut self, frame: &RgbImage) -> Result<()>;
    /// Flushes and closes (finishes a video file); called once at the end of a run.
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
    /// One line naming the display.
    fn describe(&self) -> String;
    /// The pixel size frames end up at, when fixed (a framebuffer): the kiosk scales to it before drawing
    /// the overlay, so the status line keeps its size whatever the render size.
    fn native_size(&self) -> Option<(u32, u32)> {
        None
    }
}

/// A parsed `--display` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DisplaySpec {
    /// A framebuffer device (geometry from sysfs) or, with a layout, a file of that layout.
    Framebuffer {
        path: PathBuf,
        layout: Option<FbLayout>,
    },
    Png {
        dir: PathBuf,
    },
    Video {
        path: PathBuf,
    },
    Http {
        addr: String,
    },
}

impl FromStr for DisplaySpec {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("display `{s}`: expected fb:PATH[:WxH:BPP], png:DIR, video:FILE or http:[ADDR:]PORT"))?;
        match kind {
            "fb" => {
                let parts: Vec<&str> = rest.rsplitn(3, ':').collect();
                match parts.as_slice() {
                    [bpp, size, path] if size.contains('x') => {
                        let layout = FbLayout::parse(size, bpp).map_err(|e| format!("display `{s}`: {e}"))?;
                        Ok(DisplaySpec::Framebuffer { path: PathBuf::from(path), layout: Some(layout) })
                    }
                    _ => Ok(DisplaySpec::Framebuffer { path: PathBuf::from(rest), layout: None }),
                }
            }
            "png" if !rest.is_empty() => Ok(DisplaySpec::Png { dir: rest.into() }),
            "video" if !rest.is_empty() => Ok(DisplaySpec::Video { path: rest.into() }),
            "http" => {
                let addr = if rest.contains(':') { rest.to_string() } else { format!("127.0.0.1:{rest}") };
                let port = addr.rsplit(':').next().unwrap_or("");
                port.parse::<u16>().map_err(|_| format!("display `{s}`: port `{port}` is not a number in 0..65535"))?;
                Ok(DisplaySpec::Http { addr })
            }
            _ => Err(format!("display `{s}`: unknown kind `{kind}` (expected fb, png, video or http)")),
        }
    }
}

impl std::fmt::Display for DisplaySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DisplaySpec::Framebuffer { path, layout: None } => write!(f, "fb:{}", path.display()),
            DisplaySpec::Framebuffer { path, layout: Some(l) } => {
                write!(f, "fb:{}:{}x{}:{}", path.display(), l.width, l.height, l.bits_per_pixel)
            }
            DisplaySpec::Png { dir } => write!(f, "png:{}", dir.display()),
            DisplaySpec::Video { path } => write!(f, "video:{}", path.display()),
            DisplaySpec::Http { addr } => write!(f, "http:{addr}"),
        }
    }
}

/// Opens the display a spec names. `fps` is only used by video files.
pub fn open(spec: &DisplaySpec, fps: u32) -> Result<Box<dyn Display>> {
    Ok(match spec {
        DisplaySpec::Framebuffer { path, layout: Some(l) } => Box::new(FramebufferDisplay::create_file(path, *l)?),
        DisplaySpec::Framebuffer { path, layout: None } => Box::new(FramebufferDisplay::open_device(path)?),
        DisplaySpec::Png { dir } => Box::new(PngSequenceDisplay::create(dir)?),
        DisplaySpec::Video { path } => Box::new(AviDisplay::new(path, fps)),
        DisplaySpec::Http { addr } => Box::new(MjpegHttpDisplay::bind(addr)?),
    })
}

pub(crate) fn display_err(display: impl std::fmt::Display, what: impl Into<String>) -> Error {
    Error::Display { display: display.to_string(), what: what.into() }
}

/// Nearest-neighbour scale of `src` into a `w` x `h` box, centred with black bars (aspect kept).
pub fn letterbox(src: &RgbImage, w: u32, h: u32) -> RgbImage {
    let mut out = RgbImage::new(w, h);
    let (sw, sh) = src.dimensions();
    if sw == 0 || sh == 0 || w == 0 || h == 0 {
        return out;
    }
    if (sw, sh) == (w, h) {
        return src.clone();
    }
    // Scale factor as a fraction num/den to stay exact: the smaller of w/sw and h/sh.
    let (num, den) = if u64::from(w) * u64::from(sh) <= u64::from(h) * u64::from(sw) { (w, sw) } else { (h, sh) };
    let dw = (u64::from(sw) * u64::from(num) / u64::from(den)).max(1) as u32;
    let dh = (u64::from(sh) * u64::from(num) / u64::from(den)).max(1) as u32;
    let (ox, oy) = ((w - dw.min(w)) / 2, (h - dh.min(h)) / 2);
    for y in 0..dh.min(h) {
        let sy = (u64::from(y) * u64::from(sh) / u64::from(dh)) as u32;
        for x in 0..dw.min(w) {
            let sx = (u64::from(x) * u64::from(sw) / u64::from(dw)) as u32;
            out.put_pixel(ox + x, oy + y, *src.get_pixel(sx.min(sw - 1), sy.min(sh - 1)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_specs_parse_and_print_back() {
        for s in ["fb:/tmp/fb.raw:64x48:16", "fb:/dev/fb0", "png:/tmp/out", "video:/tmp/a.avi", "http:127.0.0.1:8080"] {
            assert_eq!(s.parse::<DisplaySpec>().expect(s).to_string(), s);
        }
        assert_eq!("http:9000".parse::<DisplaySpec>(), Ok(DisplaySpec::Http { addr: "127.0.0.1:9000".into() }));
        let err = "fb:/tmp/x:64x48:24".parse::<DisplaySpec>().expect_err("24 bpp is not supported");
        assert!(err.contains("24"), "{err}");
        assert!("tv:1".parse::<DisplaySpec>().expect_err("unknown").contains("tv"));
        assert!("http:port".parse::<DisplaySpec>().is_err());
    }

    #[test]
    fn letterbox_keeps_aspect_with_black_bars() {
        let src = RgbImage::from_pixel(4, 2, image::Rgb([200, 100, 50]));
        let out = letterbox(&src, 4, 4);
        assert_eq!(out.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(out.get_pixel(0, 1).0, [200, 100, 50]);
        assert_eq!(out.get_pixel(3, 2).0, [200, 100, 50]);
        assert_eq!(out.get_pixel(3, 3).0, [0, 0, 0]);
    }
}
