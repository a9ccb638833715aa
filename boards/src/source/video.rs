//! A video file decoded by an `ffmpeg` subprocess into raw RGB24 frames read from a pipe.
//! The frame size is read from ffmpeg's own stream banner (`ffmpeg -i FILE`), so ffprobe is not needed.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Instant;

use image::RgbImage;

use super::FrameSource;
use crate::error::{Error, Result};
use crate::frame::Frame;

/// Decodes a video file with ffmpeg, one RGB24 frame at a time.
pub struct VideoFileSource {
    path: PathBuf,
    child: Child,
    out: ChildStdout,
    width: u32,
    height: u32,
    next: u64,
}

/// The name of the ffmpeg program (a path may be given in `GAGA_FFMPEG`).
pub fn ffmpeg_program() -> String {
    std::env::var("GAGA_FFMPEG").unwrap_or_else(|_| "ffmpeg".into())
}

/// True when ffmpeg can be started.
pub fn ffmpeg_available() -> bool {
    Command::new(ffmpeg_program()).arg("-version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Reads the first video stream's size from `ffmpeg -i FILE` (which prints the stream line and exits).
fn probe_size(path: &Path, program: &str) -> Result<(u32, u32)> {
    let out =
        Command::new(program).arg("-hide_banner").arg("-i").arg(path).stdin(Stdio::null()).output().map_err(|e| missing(program, e))?;
    let text = String::from_utf8_lossy(&out.stderr);
    parse_stream_size(&text).ok_or_else(|| Error::Config {
        source_name: path.display().to_string(),
        what: format!("ffmpeg found no video stream: {}", text.lines().last().unwrap_or("(no output)")),
    })
}

fn missing(program: &str, e: std::io::Error) -> Error {
    Error::MissingProgram { program: program.into(), what: format!("cannot start ({e}); install ffmpeg (Debian: apt-get install ffmpeg)") }
}

/// Finds `WxH` in the first `Stream ... Video:` line of ffmpeg's banner.
pub fn parse_stream_size(banner: &str) -> Option<(u32, u32)> {
    let line = banner.lines().find(|l| l.contains("Stream") && l.contains("Video:"))?;
    line.split([' ', ',']).find_map(|tok| {
        let (w, h) = tok.split_once('x')?;
        Some((w.parse().ok().filter(|&w| w > 0)?, h.parse().ok().filter(|&h| h > 0)?))
    })
}

impl VideoFileSource {
    /// Starts ffmpeg on `path`. Errors name the file, or say that ffmpeg is missing.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, &ffmpeg_program())
    }

    /// [`VideoFileSource::open`] with a given ffmpeg program (name or path).
    pub fn open_with(path: &Path, program: &str) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::io(path, std::io::Error::new(std::io::ErrorKind::NotFound, "no such video file")));
        }
        let (width, height) = probe_size(path, program)?;
        let mut child = Command::new(program)
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i"])
            .arg(path)
            .args(["-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| missing(program, e))?;
        let out = child.stdout.take().ok_or_else(|| Error::Other("ffmpeg: no stdout pipe".into()))?;
        Ok(VideoFileSource { path: path.to_path_buf(), child, out, width, height, next: 0 })
    }

    /// Frame size in pixels.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn stderr_tail(&mut self) -> String {
        let mut text = String::new();
        if let Some(err) = self.child.stderr.take() {
            for line in BufReader::new(err).lines().map_while(std::result::Result::ok).take(20) {
                text = line;
            }
        }
        text
    }
}

impl FrameSource for VideoFileSource {
    fn next_frame(&mut self) -> Result<Option<Frame>> {
        let len = 3 * self.width as usize * self.height as usize;
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            match self.out.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(&self.path, e)),
            }
        }
        if filled == 0 {
            let status = self.child.wait().map_err(|e| Error::io(&self.path, e))?;
            if !status.success() {
                let tail = self.stderr_tail();
                return Err(Error::Config {
                    source_name: self.path.display().to_string(),
                    what: format!("ffmpeg failed ({status}): {tail}"),
                });
            }
            return Ok(None);
        }
        let index = self.next;
        self.next += 1;
        if filled < len {
            return Err(Error::BadFrame {
                source_name: self.path.display().to_string(),
                index,
                what: format!("truncated: expected {len} bytes, found {filled}"),
            });
        }
        let image = RgbImage::from_raw(self.width, self.height, buf).ok_or_else(|| Error::Other("RGB buffer size".into()))?;
        Ok(Some(Frame { image, captured: Instant::now(), index }))
    }

    fn describe(&self) -> String {
        format!("{} ({}x{}, ffmpeg)", self.path.display(), self.width, self.height)
    }
}

impl Drop for VideoFileSource {
    fn drop(&mut self) {
        // Stopping early: ffmpeg would block on a full pipe forever.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_size_is_read_from_the_ffmpeg_banner() {
        let banner = "Input #0, mov,mp4\n  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(progressive), 176x144 [SAR 1:1 DAR 11:9], 29.97 fps\n";
        assert_eq!(parse_stream_size(banner), Some((176, 144)));
        assert_eq!(parse_stream_size("Stream #0:1: Audio: aac, 44100 Hz"), None);
    }
}
