//! The `gaga` binary end to end at `small` size, as a user runs it: make a seeded official-layout checkpoint
//! and FLAME, convert, lift a real photo, track the real carphone clip with the on-device tracker, and
//! reenact the avatar with the tracked parameters into PNG frames and a video. Also: bad input fails with a
//! message naming the file and leaves no output behind. Needs `scripts/fetch-assets.sh` (CI runs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn gaga(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gaga")).args(args).current_dir(repo()).output().expect("gaga runs")
}

fn ok(args: &[&str]) -> String {
    let out = gaga(args);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "gaga {} failed:\n{text}", args.join(" "));
    text
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn fetched(name: &str) -> String {
    let p = repo().join("assets/fetched").join(name);
    assert!(p.exists(), "{} is missing: run scripts/fetch-assets.sh", p.display());
    p.display().to_string()
}

/// A fresh directory for one test, removed on drop (also when the test fails).
fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("gaga-cli-{name}-")).tempdir().expect("scratch dir")
}

/// Writes a seeded `small` checkpoint and FLAME asset into `dir` as `ck.pt` and `flame.pt`.
fn seeded_inputs(dir: &Path, seed: u64) {
    let (ck, flame) = (dir.join("ck.pt").display().to_string(), dir.join("flame.pt").display().to_string());
    let seed = seed.to_string();
    ok(&["dev", "make-checkpoint", "--config", "small", "--seed", &seed, "-o", &ck]);
    ok(&["dev", "make-flame", "--seed", &seed, "-o", &flame]);
}

/// A directory for `$TMPDIR` inside `dir`, to watch what a command makes there and removes.
fn tmpdir_in(dir: &Path) -> PathBuf {
    let t = dir.join("tmp");
    std::fs::create_dir(&t).expect("tmp dir");
    t
}

#[test]
fn a_real_clip_tracked_on_device_drives_a_lifted_photo_from_the_command_line() {
    let tmp = scratch("e2e");
    let dir = tmp.path();
    let p = |n: &str| dir.join(n).display().to_string();
    seeded_inputs(dir, 3);
    ok(&["convert", "--checkpoint", &p("ck.pt"), "--flame", &p("flame.pt"), "--precision", "fp32", "-o", &p("m.gaga")]);
    // The tracker crops and fits the photo itself: no --params, no Python.
    ok(&["lift", "--model", &p("m.gaga"), "--image", &fetched("astronaut.png"), "--track", "-o", &p("a.gav")]);
    let summary =
        ok(&["track", "--model", &p("m.gaga"), "--video", &fetched("carphone_pristine.mp4"), "--frames", "24", "-o", &p("c.jsonl")]);
    let lines = std::fs::read_to_string(p("c.jsonl")).expect("tracked file");
    let frames: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(frames.len(), 24, "one line per frame\n{summary}");
    let faces = frames.iter().filter(|f| f["face"] == serde_json::Value::Bool(true)).count();
    assert!(faces >= 23, "face on {faces} of 24 carphone frames\n{summary}");
    ok(&[
        "reenact",
        "--model",
        &p("m.gaga"),
        "--avatar",
        &p("a.gav"),
        "--driver",
        &p("c.jsonl"),
        "-o",
        &p("frames"),
        "--video",
        &p("c.avi"),
    ]);
    let pngs = std::fs::read_dir(p("frames"))
        .expect("frames dir")
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "png")))
        .count();
    assert_eq!(pngs, 24);
    let avi = std::fs::read(p("c.avi")).expect("video");
    assert!(avi.starts_with(b"RIFF") && avi.len() > 24 * 100, "an AVI with 24 frames, {} bytes", avi.len());
    let first = std::fs::read(dir.join("frames").join(first_png(&dir.join("frames")))).expect("png");
    assert!(!first.is_empty());

    // The kiosk loop: clip -> tracker -> render -> overlay -> a framebuffer file, on the CPU and on Vulkan.
    for backend in ["cpu", "vulkan"] {
        if backend == "vulkan" && !vulkan_available() {
            eprintln!("kiosk on Vulkan skipped: no Vulkan device (CI sets GAGA_REQUIRE_VULKAN=1 and installs lavapipe)");
            continue;
        }
        let fb = p(&format!("fb-{backend}.raw"));
        let display = format!("fb:{fb}:96x80:32");
        let video = fetched("carphone_pristine.mp4");
        let args = ["kiosk", "--model", &p("m.gaga"), "--avatar", &p("a.gav"), "--video", &video, "--frames", "4"];
        let report = ok(&[&args[..], &["--backend", backend, "--display", &display]].concat());
        let bytes = std::fs::read(&fb).expect("framebuffer file");
        assert_eq!(bytes.len(), 96 * 80 * 4, "{backend}: one 96x80 XRGB8888 frame\n{report}");
        assert!(bytes.iter().any(|&b| b != 0), "{backend}: the kiosk drew something\n{report}");
    }
}

/// A Vulkan device is there, or required (`GAGA_REQUIRE_VULKAN=1`: then a missing one fails the test).
fn vulkan_available() -> bool {
    std::env::var("GAGA_REQUIRE_VULKAN").is_ok_and(|v| v == "1")
        || gaga_runtime::backend::vulkan::list_devices().is_ok_and(|d| !d.is_empty())
}

fn first_png(dir: &Path) -> String {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).expect("dir").filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names.into_iter().next().expect("a frame")
}

#[test]
fn a_missing_model_is_named_and_no_output_is_left_behind() {
    let tmp = scratch("bad");
    let dir = tmp.path();
    let out_path = dir.join("c.jsonl");
    let missing = dir.join("no-such-model.gaga").display().to_string();
    let out = gaga(&["track", "--model", &missing, "--video", &fetched("carphone_pristine.mp4"), "-o", &out_path.display().to_string()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-model.gaga"), "the error names the file: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out_path.exists(), "no partial output");
}

#[test]
fn a_video_that_is_not_a_video_fails_cleanly_without_partial_output() {
    let tmp = scratch("notvideo");
    let dir = tmp.path();
    let p = |n: &str| dir.join(n).display().to_string();
    seeded_inputs(dir, 1);
    ok(&["convert", "--checkpoint", &p("ck.pt"), "--flame", &p("flame.pt"), "-o", &p("m.gaga")]);
    std::fs::write(p("junk.mp4"), b"this is not a video").expect("junk");
    let out = gaga(&["track", "--model", &p("m.gaga"), "--video", &p("junk.mp4"), "-o", &p("c.jsonl")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    if out.status.success() {
        // A source that yields no decodable frame may legitimately write zero lines; never garbage.
        let text = std::fs::read_to_string(p("c.jsonl")).expect("output");
        assert!(text.lines().all(|l| l.contains("\"face\":false")), "{text}");
    } else {
        assert!(err.contains("junk.mp4"), "the error names the file: {err}");
        assert!(!dir.join("c.jsonl").exists(), "no partial output");
    }
}

#[test]
fn bench_precision_converts_each_listed_precision_and_benches_them_side_by_side() {
    let tmp = scratch("bench-precision");
    let dir = tmp.path();
    let p = |n: &str| dir.join(n).display().to_string();
    seeded_inputs(dir, 5);
    // The conversions go to a temporary directory under $TMPDIR: point it into the scratch directory to
    // see them made and removed.
    let conversions = tmpdir_in(dir);
    let args = [
        "bench",
        "--checkpoint",
        &p("ck.pt"),
        "--flame",
        &p("flame.pt"),
        "--precision",
        "fp32,int8,fp16",
        "--frames",
        "2",
        "--threads",
        "1",
        "--json",
        "--chart",
        &p("chart.png"),
    ];
    let out = Command::new(env!("CARGO_BIN_EXE_gaga")).args(args).env("TMPDIR", &conversions).output().expect("gaga runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "gaga bench --precision failed:\n{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout, nothing else");
    let labels: Vec<&str> = report["models"].as_array().expect("models").iter().filter_map(|m| m["label"].as_str()).collect();
    assert_eq!(labels, ["fp32 (fp32.gaga)", "int8 (int8.gaga)", "fp16 (fp16.gaga)"], "one model per precision, in order");
    for m in report["models"].as_array().expect("models") {
        let frame = m["frame_median_ms"].as_f64().expect("frame median");
        assert!(frame > 0.0, "{m}");
    }
    // The chart: a bar of each model's colour (fp32 blue, int8 orange, fp16 green, in the order given) and
    // black text (the title, legend, values and stage names).
    let chart = gaga_boards::image::open(p("chart.png")).expect("chart is a PNG").to_rgb8();
    for colour in [[66, 115, 178], [230, 140, 51], [76, 166, 89], [0, 0, 0]] {
        let n = chart.pixels().filter(|px| px.0 == colour).count();
        assert!(n > 50, "{n} pixels of {colour:?} in the chart");
    }
    assert!(stderr.contains("converting"), "says what it converts:\n{stderr}");
    let left: Vec<_> = std::fs::read_dir(&conversions).expect("tmp dir").collect();
    assert!(left.is_empty(), "conversions removed afterwards, found {left:?}");

    // A precision listed twice, or a missing checkpoint, is an error that names it; nothing is left behind.
    let twice = gaga(&["bench", "--checkpoint", &p("ck.pt"), "--flame", &p("flame.pt"), "--precision", "int8,int8"]);
    assert!(!twice.status.success() && String::from_utf8_lossy(&twice.stderr).contains("int8 twice"));
    let missing = Command::new(env!("CARGO_BIN_EXE_gaga"))
        .args(["bench", "--checkpoint", &p("none.pt"), "--flame", &p("flame.pt"), "--precision", "fp32"])
        .env("TMPDIR", &conversions)
        .output()
        .expect("gaga runs");
    let text = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success() && text.contains("none.pt"), "names the missing checkpoint:\n{text}");
    assert!(std::fs::read_dir(&conversions).expect("tmp dir").next().is_none(), "nothing left after a failed conversion");
}

#[test]
fn an_interrupted_bench_precision_removes_its_conversions() {
    let tmp = scratch("bench-interrupt");
    let dir = tmp.path();
    let p = |n: &str| dir.join(n).display().to_string();
    seeded_inputs(dir, 6);
    let conversions = tmpdir_in(dir);
    // Enough frames that the bench is still running when the signal arrives.
    let args = ["bench", "--checkpoint", &p("ck.pt"), "--flame", &p("flame.pt"), "--precision", "fp32,int8", "--frames", "100000"];
    let child = Command::new(env!("CARGO_BIN_EXE_gaga"))
        .args(args)
        .env("TMPDIR", &conversions)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("gaga runs");
    // Wait until both conversions exist, then interrupt as Ctrl-C does.
    let converted = || {
        std::fs::read_dir(&conversions).into_iter().flatten().flatten().any(|d| {
            std::fs::read_dir(d.path())
                .map(|f| f.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "gaga")).count() == 2)
                .unwrap_or(false)
        })
    };
    let t0 = std::time::Instant::now();
    while !converted() {
        assert!(t0.elapsed().as_secs() < 120, "the conversions never appeared");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    // The shell's built-in `kill` (no procps needed).
    let killed = Command::new("sh").args(["-c", &format!("kill -INT {}", child.id())]).status().expect("sh runs");
    assert!(killed.success());
    let out = child.wait_with_output().expect("gaga exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "exit status of an interrupted run:\n{stderr}");
    assert!(stderr.contains("interrupted: removed"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&conversions).expect("tmp dir").collect();
    assert!(left.is_empty(), "conversions left behind: {left:?}");
}
