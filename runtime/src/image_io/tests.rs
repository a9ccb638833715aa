use gaga_kernels::reference;
use gaga_kernels::testing::{assert_close, seeded, Tolerance};

use super::avi::AviWriter;
use super::*;

/// A fresh directory under the system temp dir, unique per test, removed on drop.
fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("gaga-image-io-{name}-")).tempdir().expect("temp dir")
}

fn gradient(w: usize, h: usize) -> Image {
    let mut img = Image::new(w, h);
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                img.data[(c * h + y) * w + x] = ((x * 7 + y * 3 + c * 50) % 256) as f32 / 255.0;
            }
        }
    }
    img
}

#[test]
fn png_round_trip_is_exact_for_8_bit_values() {
    let tmp = temp_dir("png");
    let dir = tmp.path();
    let img = gradient(13, 9);
    let path = dir.join("a.png");
    save_png(&path, &img).expect("save");
    let back = load_image(&path, 13, Some(CropBox { x: 0, y: 0, size: 13 })).expect("load with crop");
    // The crop is 13x13 from a 13x9 picture: rows 9..13 are zero padding.
    for c in 0..3 {
        for y in 0..13 {
            for x in 0..13 {
                let want = if y < 9 { img.data[(c * 9 + y) * 13 + x] } else { 0.0 };
                assert_eq!(back.data[(c * 13 + y) * 13 + x], want, "c {c} y {y} x {x}");
            }
        }
    }
}

#[test]
fn image_of_the_wrong_size_without_crop_is_an_error_naming_both_sizes() {
    let tmp = temp_dir("size");
    let dir = tmp.path();
    let path = dir.join("b.png");
    save_png(&path, &gradient(20, 10)).expect("save");
    let err = load_image(&path, 64, None).expect_err("wrong size");
    let msg = err.to_string();
    assert!(msg.contains("64x64") && msg.contains("20x10") && msg.contains("b.png"), "{msg}");
    let err = decode_image(&path, b"not an image", 64, None).expect_err("garbage");
    assert!(err.to_string().contains("cannot decode"), "{err}");
}

#[test]
fn crop_pads_with_zero_outside_and_resizes_with_the_antialias_filter() {
    let src = Image { width: 11, height: 7, data: seeded(4, 3 * 77).iter().map(|v| v.abs()).collect() };
    let b = CropBox { x: -3, y: 2, size: 12 };
    let got = crop_resize(&src, b, 5);
    // Oracle: explicit padded crop, then the reference antialiased resize.
    let mut cut = vec![0f32; 3 * 144];
    for c in 0..3 {
        for r in 0..12i64 {
            for q in 0..12i64 {
                let (sy, sx) = (r + 2, q - 3);
                if (0..7).contains(&sy) && (0..11).contains(&sx) {
                    cut[(c * 12 + r as usize) * 12 + q as usize] = src.data[(c * 7 + sy as usize) * 11 + sx as usize];
                }
            }
        }
    }
    let mut want = vec![0f32; 3 * 25];
    reference::bilinear_antialias(&cut, 3, 12, 12, 5, 5, &mut want);
    // Same filter taps; the fast kernel may sum in another order.
    assert_close("crop+resize", &got.data, &want, Tolerance::Fp32);
}

#[test]
fn crop_box_parses_and_rejects_bad_text() {
    assert_eq!("10,-4,300".parse::<CropBox>(), Ok(CropBox { x: 10, y: -4, size: 300 }));
    for bad in ["1,2", "a,b,c", "1,2,0", "1,2,3,4"] {
        assert!(bad.parse::<CropBox>().is_err(), "{bad}");
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[test]
fn avi_header_fields_and_index_describe_the_frames() {
    let tmp = temp_dir("avi");
    let dir = tmp.path();
    let path = dir.join("v.avi");
    let mut w = AviWriter::create(&path, 32, 24, 25).expect("create");
    for i in 0..3 {
        let mut img = gradient(32, 24);
        img.data.iter_mut().for_each(|v| *v = (*v + i as f32 * 0.2) % 1.0);
        w.write_frame(&img).expect("frame");
    }
    assert!(w.write_frame(&gradient(8, 8)).is_err(), "a frame of another size must be refused");
    w.finish().expect("finish");
    let b = std::fs::read(&path).expect("read back");
    assert_eq!(&b[0..4], b"RIFF");
    assert_eq!(u32_at(&b, 4) as usize, b.len() - 8);
    assert_eq!(&b[8..12], b"AVI ");
    assert_eq!(u32_at(&b, 32), 40_000, "microseconds per frame at 25 fps");
    assert_eq!(u32_at(&b, 48), 3, "avih total frames");
    assert_eq!((u32_at(&b, 64), u32_at(&b, 68)), (32, 24));
    assert_eq!(&b[108..116], b"vidsMJPG");
    assert_eq!((u32_at(&b, 128), u32_at(&b, 132), u32_at(&b, 140)), (1, 25, 3), "strh scale, rate, length");
    assert_eq!(&b[220..224], b"movi");
    let idx = b.len() - 8 - 48;
    assert_eq!(&b[idx..idx + 4], b"idx1");
    for k in 0..3 {
        let e = idx + 8 + 16 * k;
        let (off, len) = (u32_at(&b, e + 8) as usize, u32_at(&b, e + 12) as usize);
        let chunk = 220 + off;
        assert_eq!(&b[chunk..chunk + 4], b"00dc");
        assert_eq!(u32_at(&b, chunk + 4) as usize, len);
        assert_eq!(&b[chunk + 8..chunk + 10], &[0xFF, 0xD8], "frame {k} is not a JPEG");
    }
}

#[test]
fn ffprobe_reads_the_avi_as_mjpeg() {
    let probe = std::process::Command::new("ffprobe").arg("-version").output();
    if probe.map(|o| !o.status.success()).unwrap_or(true) {
        eprintln!("skipped: ffprobe not installed");
        return;
    }
    let tmp = temp_dir("ffprobe");
    let dir = tmp.path();
    let path = dir.join("p.avi");
    let mut w = AviWriter::create(&path, 48, 48, 30).expect("create");
    for _ in 0..5 {
        w.write_frame(&gradient(48, 48)).expect("frame");
    }
    w.finish().expect("finish");
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames,r_frame_rate",
            "-of",
            "csv=p=0",
        ])
        .arg(&path)
        .output()
        .expect("ffprobe runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && out.stderr.is_empty(), "ffprobe: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.trim(), "mjpeg,48,48,30/1,5");
}
