//! Display sinks: the framebuffer file layout and the MJPEG-over-HTTP stream, checked from outside.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use gaga_boards::display::http::BOUNDARY;
use gaga_boards::display::{self, Display, DisplaySpec, MjpegHttpDisplay};
use gaga_boards::image::{self, Rgb, RgbImage};
use gaga_tests::test_dir;

/// 4x2 pixels: red, green, blue, white / black, (8,4,255), (0x12,0x34,0x56), grey.
fn test_card() -> RgbImage {
    let px = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0], [8, 4, 255], [0x12, 0x34, 0x56], [128, 128, 128]];
    RgbImage::from_fn(4, 2, |x, y| Rgb(px[(y * 4 + x) as usize]))
}

fn show_on_file(bpp: u32) -> Vec<u8> {
    let tmp = test_dir(&format!("boards-fb{bpp}"));
    let path = tmp.path().join("fb.raw");
    let spec: DisplaySpec = format!("fb:{}:4x2:{bpp}", path.display()).parse().expect("spec");
    let mut d = display::open(&spec, 30).expect("open fb file");
    d.show(&test_card()).expect("show");
    d.finish().expect("finish");
    drop(d);
    std::fs::read(&path).expect("read back")
}

#[test]
fn framebuffer_file_holds_rgb565_little_endian() {
    let bytes = show_on_file(16);
    assert_eq!(bytes.len(), 4 * 2 * 2);
    let words: Vec<u16> = bytes.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
    assert_eq!(words, [0xF800, 0x07E0, 0x001F, 0xFFFF, 0x0000, 0x083F, 0x11AA, 0x8410]);
}

#[test]
fn framebuffer_file_holds_xrgb8888_as_bgrx_bytes() {
    let bytes = show_on_file(32);
    assert_eq!(bytes.len(), 4 * 2 * 4);
    let words: Vec<u32> = bytes.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    assert_eq!(words, [0xFF0000, 0x00FF00, 0x0000FF, 0xFFFFFF, 0, 0x0804FF, 0x123456, 0x808080]);
}

/// Reads until `needle` is in `buf` or the deadline passes.
fn read_until(s: &mut TcpStream, buf: &mut Vec<u8>, needle: &[u8], deadline: Instant) -> Option<usize> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(needle.len()).position(|w| w == needle) {
            return Some(i);
        }
        if Instant::now() > deadline {
            return None;
        }
        match s.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return None,
        }
    }
}

#[test]
fn http_preview_streams_jpeg_parts_with_boundaries_on_loopback() {
    let mut d = MjpegHttpDisplay::bind("127.0.0.1:0").expect("bind a free loopback port");
    let addr = d.local_addr();
    assert!(addr.ip().is_loopback());
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("request");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = Vec::new();
    let head_end = read_until(&mut s, &mut buf, b"\r\n\r\n", deadline).expect("response head");
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(head.contains(&format!("Content-Type: multipart/x-mixed-replace; boundary={BOUNDARY}")), "{head}");
    buf.drain(..head_end + 4);

    // Two distinct frames. The display keeps only the newest, so each is shown again until a part of
    // that level arrives; older repeats still in flight are read and passed over.
    for level in [30u8, 200] {
        let card = RgbImage::from_pixel(40, 24, Rgb([level, level, level]));
        loop {
            assert!(Instant::now() < deadline, "no part of level {level} arrived");
            d.show(&card).expect("show");
            let Some(jpeg) = read_part(&mut s, &mut buf, Instant::now() + Duration::from_millis(300)) else { continue };
            assert_eq!(jpeg.dimensions(), (40, 24));
            if jpeg.get_pixel(20, 12).0[0].abs_diff(level) <= 2 {
                break;
            }
        }
    }
}

/// Reads one multipart part: checks its head and trailing CRLF, decodes the JPEG. `None` on timeout.
fn read_part(s: &mut TcpStream, buf: &mut Vec<u8>, deadline: Instant) -> Option<RgbImage> {
    let head_end = read_until(s, buf, b"\r\n\r\n", deadline)?;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    assert!(head.starts_with(&format!("--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: ")), "{head}");
    let len: usize = head.rsplit(' ').next().and_then(|v| v.trim().parse().ok()).expect("Content-Length is a number");
    buf.drain(..head_end + 4);
    let mut chunk = [0u8; 4096];
    while buf.len() < len + 2 {
        assert!(Instant::now() < deadline + Duration::from_secs(5), "part body cut short");
        match s.read(&mut chunk) {
            Ok(0) => panic!("stream closed inside a part"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
    }
    assert_eq!(&buf[len..len + 2], b"\r\n", "part not followed by CRLF");
    let jpeg = image::load_from_memory(&buf[..len]).expect("part is a JPEG").to_rgb8();
    buf.drain(..len + 2);
    Some(jpeg)
}
