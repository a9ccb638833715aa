//! Where the CPU splat's time goes on a lifted avatar (not the synthetic head): stage times, per-thread
//! raster load and the blend walk's work counts (`gaga_kernels::splat::profile`), at official size on
//! FLAME-posed frames of a real driver. Needs a converted official-size model and a lifted avatar, so it is
//! ignored; run it with
//!
//! ```sh
//! GAGA_SPLAT_MODEL=/tmp/q/m_fp32p.gaga GAGA_SPLAT_AVATAR=out/demo/astronaut.gav \
//!   cargo test --release -p gaga-tests --test splat_astronaut -- --ignored --nocapture
//! ```
//!
//! (`GAGA_SPLAT_DRIVER` defaults to `assets/defaults/expressions.jsonl`, `GAGA_SPLAT_REPS` to 5 timed
//! splats per frame; `RAYON_NUM_THREADS` sets the threads.) The medians are what to compare across builds.

use std::path::{Path, PathBuf};

use gaga_kernels::splat::profile::{profile, SplatProfile};
use gaga_kernels::splat::{splat, Colors, GaussianSet, SplatCamera, SplatScratch};
use gaga_runtime::flame::Flame;
use gaga_runtime::model::Model;
use gaga_runtime::{avatar, driving};

fn env_path(name: &str, default: &str) -> PathBuf {
    std::env::var_os(name).map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(default))
}

/// User + system CPU seconds of this process, all threads (Linux `/proc/self/stat`, 100 ticks a second):
/// less sensitive than wall time to other processes on a shared machine; 0 elsewhere.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 overall.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let ticks: Vec<f64> = rest.split_whitespace().skip(11).take(2).filter_map(|v| v.parse().ok()).collect();
    ticks.iter().sum::<f64>() / 100.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

#[test]
#[ignore = "needs an official-size model and lifted avatar (see the module docs); about 20 s"]
fn astronaut_splat_profile() {
    let model_path = env_path("GAGA_SPLAT_MODEL", "/tmp/q/m_fp32p.gaga");
    let model = Model::open(&model_path).unwrap_or_else(|e| panic!("model {}: {e}", model_path.display()));
    let cfg = model.config().clone();
    let avatar_path = env_path("GAGA_SPLAT_AVATAR", "out/demo/astronaut.gav");
    let avatar = avatar::load(&avatar_path, &cfg).unwrap_or_else(|e| panic!("avatar {}: {e}", avatar_path.display()));
    let driver_path = env_path("GAGA_SPLAT_DRIVER", "assets/defaults/expressions.jsonl");
    let driver = driving::read_driving(&driver_path).unwrap_or_else(|e| panic!("driver {}: {e}", driver_path.display()));
    let reps: usize = std::env::var("GAGA_SPLAT_REPS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);

    let mut flame = Flame::new(&model, &cfg).expect("FLAME weights");
    flame.set_identity(&avatar.shapecode).expect("avatar shapecode");
    let s = cfg.image_size;
    let mut posed = vec![0f32; 3 * cfg.flame.vertices];
    let mut out = vec![0f32; cfg.gaussian_channels * s * s];
    let bg = vec![0f32; cfg.gaussian_channels];
    let mut scratch = SplatScratch::new();
    // Two frames far apart in the sequence: different expressions and cameras.
    for &i in &[0, driver.len() / 2] {
        let f = &driver[i];
        flame.pose(&f.expcode, &f.posecode, &f.eyecode, &f.key, &mut posed).expect("pose");
        let set = avatar.gaussians(&posed).expect("avatar is consistent");
        let cam = SplatCamera::from_transform(&f.transform, cfg.focal, s, s);
        // Warm-up: covariance cache filled, buffers grown.
        let counted = profile(&set, &cam, &bg, &mut out, &mut scratch, true);
        let cpu0 = cpu_seconds();
        let runs: Vec<SplatProfile> = (0..reps).map(|_| profile(&set, &cam, &bg, &mut out, &mut scratch, false)).collect();
        let cpu_ms = (cpu_seconds() - cpu0) * 1e3 / reps as f64;
        let med = |f: &dyn Fn(&SplatProfile) -> f64| median(runs.iter().map(f).collect());
        let p = &counted;
        let threads: Vec<String> =
            (0..p.thread_raster_ms.len()).map(|t| format!("{:.1}", med(&|r: &SplatProfile| r.thread_raster_ms[t]))).collect();
        println!(
            "frame {i} ({}): {} threads, median of {reps}: project {:.1} ms, bin {:.1} ms, raster {:.1} ms \
             (per thread {} ms, slowest tile {:.2} ms), total {:.1} ms, CPU {cpu_ms:.0} ms per splat",
            f.key,
            p.thread_raster_ms.len(),
            med(&|r| r.project_ms),
            med(&|r| r.bin_ms),
            med(&|r| r.raster_ms),
            threads.join(" / "),
            med(&|r| r.slowest_tile_ms),
            med(&|r| r.project_ms + r.bin_ms + r.raster_ms),
        );
        let per = |a: u64, b: u64| a as f64 / b.max(1) as f64;
        println!(
            "  visible {} of {}, tile-Gaussian pairs {} (mean list {:.0}, longest {}), group bucket entries {} \
             ({:.1} per pair), walked {} ({:.0} %), strong {} ({:.0} % of walked), pixel blends {} ({:.1} per pixel, \
             {:.1} per visible Gaussian), pixels ended by T {:.1} %, list prefix needed {:.0} % of pairs, scratch {:.1} MiB",
            p.visible,
            set.len(),
            p.pairs,
            p.pairs as f64 / cam.tile_grid().0 as f64 / cam.tile_grid().1 as f64,
            p.longest_list,
            p.bucket_entries,
            per(p.bucket_entries, p.pairs as u64),
            p.walked,
            100.0 * per(p.walked, p.bucket_entries),
            p.strong,
            100.0 * per(p.strong, p.walked),
            p.blends,
            per(p.blends, p.pixels),
            per(p.blends, p.visible as u64),
            100.0 * per(p.terminated, p.pixels),
            100.0 * per(p.needed_pairs, p.pairs as u64),
            p.scratch_bytes as f64 / (1 << 20) as f64,
        );
    }
}

/// The splat scratch's bytes by buffer after 4 frames of the astronaut (what a session holds for the splat),
/// and the same 4 frames with the avatar's colours in f16 (an int8 session's storage) checked bitwise
/// against the colours widened to f32. Run as the module docs say, with the filter `astronaut_splat_scratch`.
#[test]
#[ignore = "needs an official-size model and lifted avatar (see the module docs); about 5 s"]
fn astronaut_splat_scratch_bytes_by_buffer_and_f16_colours() {
    let model_path = env_path("GAGA_SPLAT_MODEL", "/tmp/q/m_fp32p.gaga");
    let model = Model::open(&model_path).unwrap_or_else(|e| panic!("model {}: {e}", model_path.display()));
    let cfg = model.config().clone();
    let avatar_path = env_path("GAGA_SPLAT_AVATAR", "out/demo/astronaut.gav");
    let avatar = avatar::load(&avatar_path, &cfg).unwrap_or_else(|e| panic!("avatar {}: {e}", avatar_path.display()));
    let driver_path = env_path("GAGA_SPLAT_DRIVER", "assets/defaults/expressions.jsonl");
    let driver = driving::read_driving(&driver_path).unwrap_or_else(|e| panic!("driver {}: {e}", driver_path.display()));
    let half = avatar.colors.clone().into_f16();
    assert!(half.is_f16(), "the astronaut's colours fit f16");
    let wide = half.to_f32();

    let mut flame = Flame::new(&model, &cfg).expect("FLAME weights");
    flame.set_identity(&avatar.shapecode).expect("avatar shapecode");
    let nv = 3 * cfg.flame.vertices;
    let s = cfg.image_size;
    let mut positions = avatar.positions.clone();
    let (mut a, mut b) = (vec![0f32; cfg.gaussian_channels * s * s], vec![0f32; cfg.gaussian_channels * s * s]);
    let bg = vec![0f32; cfg.gaussian_channels];
    let (mut scratch, mut other) = (SplatScratch::new(), SplatScratch::new());
    let mut stats = Vec::new();
    for f in driver.iter().take(4) {
        flame.pose(&f.expcode, &f.posecode, &f.eyecode, &f.key, &mut positions[..nv]).expect("pose");
        let cam = SplatCamera::from_transform(&f.transform, cfg.focal, s, s);
        let set =
            |colors| GaussianSet::with_colors(&positions, &avatar.scales, &avatar.rotations, &avatar.opacities, colors, avatar.channels);
        stats.push(splat(&set(half.view()).expect("f16 set"), &cam, &bg, &mut a, &mut scratch));
        splat(&set(Colors::F32(&wide)).expect("f32 set"), &cam, &bg, &mut b, &mut other);
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "frame {}: f16 colours differ from widened", f.key);
    }
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    println!("4 astronaut frames: {stats:?}");
    for (name, bytes) in scratch.buffer_bytes() {
        println!("  {name:<28} {:>7.2} MiB", mib(bytes));
    }
    println!("  {:<28} {:>7.2} MiB", "total", mib(scratch.capacity_bytes()));
}
