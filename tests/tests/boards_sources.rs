//! Frame sources: the carphone clip through ffmpeg, image folders, and what happens with bad input.

use gaga_tests::test_dir;
use std::path::{Path, PathBuf};

use gaga_boards::image::{Rgb, RgbImage};
use gaga_boards::source::video::ffmpeg_available;
use gaga_boards::source::{FrameSource, ImageFolderSource, VideoFileSource};
use gaga_boards::Error;

fn carphone() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/fetched/carphone_pristine.mp4");
    if !p.is_file() {
        eprintln!("skipped: {} is missing (run scripts/fetch-assets.sh)", p.display());
        return None;
    }
    if !ffmpeg_available() {
        eprintln!("skipped: ffmpeg is not installed");
        return None;
    }
    Some(p)
}

#[test]
fn carphone_decodes_to_120_frames_of_176x144() {
    let Some(path) = carphone() else { return };
    let mut src = VideoFileSource::open(&path).expect("open carphone");
    assert_eq!(src.size(), (176, 144));
    let mut n = 0u64;
    let mut mean_first = 0.0;
    while let Some(f) = src.next_frame().expect("every frame decodes") {
        assert_eq!(f.index, n);
        assert_eq!(f.image.dimensions(), (176, 144));
        if n == 0 {
            mean_first = f.image.as_raw().iter().map(|&b| f64::from(b)).sum::<f64>() / f.image.as_raw().len() as f64;
        }
        n += 1;
    }
    assert_eq!(n, 120);
    // A real picture, not a black or white screen.
    assert!((40.0..220.0).contains(&mean_first), "frame 0 mean level {mean_first}");
}

#[test]
fn a_missing_ffmpeg_is_named_in_the_error() {
    let Some(path) = carphone() else { return };
    let err = VideoFileSource::open_with(&path, "/nonexistent/ffmpeg").err().expect("no such program");
    assert!(matches!(err, Error::MissingProgram { .. }) && err.to_string().contains("install ffmpeg"), "{err}");
}

#[test]
fn a_file_that_is_no_video_is_an_error_naming_it() {
    if !ffmpeg_available() {
        eprintln!("skipped: ffmpeg is not installed");
        return;
    }
    let tmp = test_dir("boards-novideo");
    let dir = tmp.path();
    let path = dir.join("not_a_video.mp4");
    std::fs::write(&path, b"this is text").expect("write");
    let err = VideoFileSource::open(&path).err().expect("not a video");
    assert!(err.to_string().contains("not_a_video.mp4"), "{err}");
}

#[test]
fn image_folder_plays_in_name_order_and_skips_a_corrupt_file() {
    let tmp = test_dir("boards-folder");
    let dir = tmp.path();
    for (name, level) in [("frame_002.png", 20u8), ("frame_000.png", 0), ("frame_001.jpg", 10)] {
        RgbImage::from_pixel(6, 4, Rgb([level, level, level])).save(dir.join(name)).expect("write image");
    }
    std::fs::write(dir.join("frame_003.png"), b"\x89PNG truncated").expect("write");
    std::fs::write(dir.join("notes.txt"), b"ignored").expect("write");
    let mut src = ImageFolderSource::open(dir).expect("open folder");
    let names: Vec<String> = src.files().iter().filter_map(|p| p.file_name()?.to_str().map(String::from)).collect();
    assert_eq!(names, ["frame_000.png", "frame_001.jpg", "frame_002.png", "frame_003.png"]);
    for want in [0u8, 10, 20] {
        let f = src.next_frame().expect("decodes").expect("not at end");
        // JPEG of a flat grey is exact within 1 level (chroma-free, DC only).
        assert!(f.image.pixels().all(|p| p.0[0].abs_diff(want) <= 1), "frame {} is not level {want}", f.index);
    }
    let err = src.next_frame().expect_err("corrupt PNG");
    assert!(err.is_frame_error() && err.to_string().contains("frame_003.png"), "{err}");
    assert!(src.next_frame().expect("end").is_none());
}

#[test]
fn an_empty_folder_is_an_error_naming_it() {
    let tmp = test_dir("boards-empty");
    let dir = tmp.path();
    let err = ImageFolderSource::open(dir).err().expect("empty");
    assert!(err.to_string().contains("no .png"), "{err}");
}
