//! A minimal Motion-JPEG AVI writer (RIFF AVI 1.0: `hdrl` with one video stream, `movi` with one `00dc`
//! JPEG chunk per frame, and an `idx1` index), which ffplay, VLC and mpv open. Frames are streamed to the
//! file; the sizes and frame counts in the headers are patched by [`AviWriter::finish`].

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::types::Image;

/// Offsets of the fields `finish` patches.
const RIFF_SIZE: u64 = 4;
const AVIH_TOTAL_FRAMES: u64 = 48;
const AVIH_SUGGESTED_BUFFER: u64 = 60;
const STRH_LENGTH: u64 = 140;
const STRH_SUGGESTED_BUFFER: u64 = 144;
const MOVI_SIZE: u64 = 216;
/// Where the `movi` list's type tag starts; idx1 offsets are relative to it.
const MOVI_TAG: u64 = 220;
/// JPEG quality of the frames.
pub const QUALITY: u8 = 92;

/// Streams frames of one size into an MJPEG `.avi` file.
pub struct AviWriter {
    path: PathBuf,
    out: BufWriter<File>,
    width: usize,
    height: usize,
    /// `(offset from the movi tag, length)` of every frame chunk.
    index: Vec<(u32, u32)>,
    pos: u64,
    max_chunk: u32,
}

fn le16(v: u16) -> [u8; 2] {
    v.to_le_bytes()
}
fn le32(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

impl AviWriter {
    /// Creates `path` for `width` x `height` frames at `fps` frames per second.
    pub fn create(path: &Path, width: usize, height: usize, fps: u32) -> Result<Self> {
        let io = |e| Error::Io { path: path.to_path_buf(), source: e };
        let (w, h) = match (u16::try_from(width), u16::try_from(height)) {
            (Ok(w), Ok(h)) if w > 0 && h > 0 && fps > 0 => (w, h),
            _ => {
                return Err(Error::Other(format!(
                    "{}: AVI needs sides in 1..65535 and fps > 0, found {width}x{height} at {fps}",
                    path.display()
                )))
            }
        };
        let mut hdr = Vec::with_capacity(224);
        hdr.extend_from_slice(b"RIFF");
        hdr.extend_from_slice(&le32(0)); // patched: file size - 8
        hdr.extend_from_slice(b"AVI LIST");
        hdr.extend_from_slice(&le32(192)); // hdrl: 4 + avih (8 + 56) + strl (8 + 116)
        hdr.extend_from_slice(b"hdrlavih");
        hdr.extend_from_slice(&le32(56));
        let frame_bytes = (3 * width * height).min(u32::MAX as usize) as u32;
        for v in
            [1_000_000 / fps, frame_bytes.saturating_mul(fps), 0, 0x10 /* AVIF_HASINDEX */, 0, 0, 1, 0, w as u32, h as u32, 0, 0, 0, 0]
        {
            hdr.extend_from_slice(&le32(v)); // frames and buffer size patched
        }
        hdr.extend_from_slice(b"LIST");
        hdr.extend_from_slice(&le32(116)); // strl: 4 + strh (8 + 56) + strf (8 + 40)
        hdr.extend_from_slice(b"strlstrh");
        hdr.extend_from_slice(&le32(56));
        hdr.extend_from_slice(b"vidsMJPG");
        hdr.extend_from_slice(&le32(0)); // flags
        hdr.extend_from_slice(&le32(0)); // priority, language
        for v in [0, 1, fps, 0, 0, 0, u32::MAX, 0] {
            hdr.extend_from_slice(&le32(v)); // initial frames, scale, rate, start, length, buffer, quality, sample size
        }
        for v in [0, 0, w, h] {
            hdr.extend_from_slice(&le16(v)); // rcFrame
        }
        hdr.extend_from_slice(b"strf");
        hdr.extend_from_slice(&le32(40));
        hdr.extend_from_slice(&le32(40));
        hdr.extend_from_slice(&le32(w as u32));
        hdr.extend_from_slice(&le32(h as u32));
        hdr.extend_from_slice(&le16(1));
        hdr.extend_from_slice(&le16(24));
        hdr.extend_from_slice(b"MJPG");
        for v in [frame_bytes, 0, 0, 0, 0] {
            hdr.extend_from_slice(&le32(v));
        }
        hdr.extend_from_slice(b"LIST");
        hdr.extend_from_slice(&le32(4)); // patched: movi size
        hdr.extend_from_slice(b"movi");
        debug_assert_eq!(hdr.len() as u64, MOVI_TAG + 4);
        let mut out = BufWriter::new(File::create(path).map_err(io)?);
        out.write_all(&hdr).map_err(io)?;
        Ok(AviWriter { path: path.to_path_buf(), out, width, height, index: Vec::new(), pos: hdr.len() as u64, max_chunk: 0 })
    }

    fn io(&self, e: std::io::Error) -> Error {
        Error::Io { path: self.path.clone(), source: e }
    }

    /// Appends one frame (it must have the writer's size).
    pub fn write_frame(&mut self, img: &Image) -> Result<()> {
        if img.width != self.width || img.height != self.height {
            return Err(Error::Other(format!(
                "{}: frame {} is {}x{}, the video is {}x{}",
                self.path.display(),
                self.index.len(),
                img.width,
                img.height,
                self.width,
                self.height
            )));
        }
        let jpeg = super::encode_jpeg(img, QUALITY)?;
        self.write_jpeg(&jpeg)
    }

    /// Appends one already encoded JPEG frame.
    pub fn write_jpeg(&mut self, jpeg: &[u8]) -> Result<()> {
        let padded = jpeg.len() as u64 + (jpeg.len() as u64 & 1);
        let too_big = || Error::Other(format!("{}: AVI 1.0 files stop at 4 GiB; the video is too long", self.path.display()));
        let end = self.pos + 8 + padded;
        if end + 16 * (self.index.len() as u64 + 1) + 8 > u32::MAX as u64 {
            return Err(too_big());
        }
        let len = jpeg.len() as u32;
        self.index.push(((self.pos - MOVI_TAG) as u32, len));
        self.max_chunk = self.max_chunk.max(len);
        let mut head = [0u8; 8];
        head[..4].copy_from_slice(b"00dc");
        head[4..].copy_from_slice(&le32(len));
        let res = self.out.write_all(&head).and_then(|_| self.out.write_all(jpeg)).and_then(|_| {
            if len & 1 == 1 {
                self.out.write_all(&[0])
            } else {
                Ok(())
            }
        });
        res.map_err(|e| self.io(e))?;
        self.pos = end;
        Ok(())
    }

    /// Frames written so far.
    pub fn frames(&self) -> usize {
        self.index.len()
    }

    /// Writes the index and patches the header; the file is complete after this.
    pub fn finish(mut self) -> Result<()> {
        let movi_size = (self.pos - MOVI_TAG) as u32;
        let mut idx = Vec::with_capacity(8 + 16 * self.index.len());
        idx.extend_from_slice(b"idx1");
        idx.extend_from_slice(&le32(16 * self.index.len() as u32));
        for &(off, len) in &self.index {
            idx.extend_from_slice(b"00dc");
            idx.extend_from_slice(&le32(0x10)); // AVIIF_KEYFRAME
            idx.extend_from_slice(&le32(off));
            idx.extend_from_slice(&le32(len));
        }
        let total = self.pos + idx.len() as u64;
        let frames = self.index.len() as u32;
        let buffer = self.max_chunk + 8;
        let patches = [
            (RIFF_SIZE, (total - 8) as u32),
            (AVIH_TOTAL_FRAMES, frames),
            (AVIH_SUGGESTED_BUFFER, buffer),
            (STRH_LENGTH, frames),
            (STRH_SUGGESTED_BUFFER, buffer),
            (MOVI_SIZE, movi_size),
        ];
        let res = (|| -> std::io::Result<()> {
            self.out.write_all(&idx)?;
            for (at, v) in patches {
                self.out.seek(SeekFrom::Start(at))?;
                self.out.write_all(&le32(v))?;
            }
            self.out.flush()
        })();
        res.map_err(|e| self.io(e))
    }
}
