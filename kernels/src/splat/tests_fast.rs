//! Tests of the speed-ups that must not change a bit: the covariance cache across frames, the parallel
//! binning, and every tile renderer the CPU offers (portable, AVX2, AVX-512) against each other.

use super::project::{cov3d, project};
use super::tests::{assert_same, oblique, render, render_reference, Scene};
use super::*;
use crate::matmul::SyncPtr;
use crate::splat::synthetic::FRONTAL;
use crate::testing::seeded;

/// Moves the first `moving` Gaussians, as FLAME moves the vertex Gaussians between frames.
fn move_some(scene: &mut Scene, moving: usize, seed: u64) {
    let shift = seeded(seed, moving * 3);
    scene.means[..moving * 3].iter_mut().zip(&shift).for_each(|(m, d)| *m += 0.05 * d);
}

#[test]
fn cached_covariances_give_the_uncached_frames_bit_for_bit_over_two_cameras() {
    let mut scene = Scene::random(71, 3000, 32);
    let bg = seeded(7, 32);
    let cams = [SplatCamera::from_transform(&FRONTAL, 12.0, 61, 45), SplatCamera::from_transform(&oblique(), 12.0, 61, 45)];
    let mut warm = SplatScratch::new();
    for (f, cam) in cams.iter().enumerate() {
        move_some(&mut scene, 500, f as u64);
        let mut cached = vec![f32::NAN; 32 * 61 * 45];
        splat(&scene.set(), cam, &bg, &mut cached, &mut warm);
        let mut cold = SplatScratch::new();
        cold.set_covariance_cache(false);
        let mut uncached = vec![f32::NAN; cached.len()];
        splat(&scene.set(), cam, &bg, &mut uncached, &mut cold);
        assert_same(&format!("frame {f}: cached vs uncached"), &cached, &uncached);
        assert_same(&format!("frame {f}: cached vs reference"), &cached, &render_reference(&scene, cam, &bg));
    }
    // Every Gaussian the last frame projected has the covariance `cov3d` gives in its entry (culled ones
    // never ask for theirs); the static ones were filled in frame 0, so frame 1 read them.
    let set = scene.set();
    let mut checked = 0;
    for (i, entry) in warm.covs.iter().enumerate() {
        if project(&set, i, &cams[1]).is_some() {
            assert_eq!(entry.cov, cov3d(set.scale(i), set.rotation(i)), "Gaussian {i}");
            checked += 1;
        }
    }
    assert!(checked > 1000, "only {checked} Gaussians visible");
}

#[test]
fn a_cache_entry_is_used_only_when_scale_and_rotation_match_bitwise() {
    let mut scene = Scene::random(72, 1500, 32);
    let bg = [0.0; 32];
    let cam = SplatCamera::from_transform(&FRONTAL, 12.0, 40, 40);
    let mut scratch = SplatScratch::new();
    let mut out = vec![0f32; 32 * 40 * 40];
    splat(&scene.set(), &cam, &bg, &mut out, &mut scratch);
    // Poisoned entries under the current key would show in the frame; under a stale key they must not.
    let stale = scratch.covs[10];
    scene.scales[30] *= 1.5;
    scene.rotations[41] = -scene.rotations[41];
    splat(&scene.set(), &cam, &bg, &mut out, &mut scratch);
    assert_same("edited Gaussians", &out, &render_reference(&scene, &cam, &bg));
    assert_ne!(scratch.covs[10], stale, "Gaussian 10's rotation changed, its entry must be recomputed");
    let set = scene.set();
    let poisoned = (0..set.len()).find(|&i| project(&set, i, &cam).is_some()).expect("a visible Gaussian");
    scratch.covs[poisoned].cov = [1.0, 0.0, 0.0, 1.0, 0.0, 1.0];
    let clean = out.clone();
    splat(&set, &cam, &bg, &mut out, &mut scratch);
    assert!(out.iter().zip(&clean).any(|(a, b)| a != b), "a matching entry was not read from the cache");
}

#[test]
fn parallel_binning_lists_each_tile_front_to_back_like_one_serial_pass() {
    let scene = Scene::random(73, 4000, 32);
    let cam = SplatCamera::from_transform(&oblique(), 12.0, 70, 52);
    let set = scene.set();
    let mut scratch = SplatScratch::new();
    let stats = splat_stats(&set, &cam, &mut scratch);
    let mut visible: Vec<(u32, project::Projected)> =
        (0..set.len()).filter_map(|i| project(&set, i, &cam).map(|p| (i as u32, p))).collect();
    visible.sort_by(|a, b| a.1.depth.total_cmp(&b.1.depth).then(a.0.cmp(&b.0)));
    let (gx, gy) = cam.tile_grid();
    for t in 0..gx * gy {
        let want: Vec<u32> = visible.iter().filter(|(_, p)| p.rect.contains(t % gx, t / gx)).map(|(i, _)| *i).collect();
        assert_eq!(scratch.bins.tile(t), &want[..], "tile {t}");
    }
    assert!(stats.pairs > 4 * gx * gy, "{stats:?}");
}

/// Renders every tile of a prepared frame with `kernel` into a fresh buffer.
fn render_with(kernel: raster::TileFn, scene: &Scene, cam: &SplatCamera, bg: &[f32], scratch: &SplatScratch) -> Vec<f32> {
    let c = scene.channels;
    let mut out = vec![f32::NAN; c * cam.width * cam.height];
    let (gx, gy) = cam.tile_grid();
    let frame = raster::Frame::new(&scratch.projected, &scene.colors, c, cam, bg);
    let ptr = SyncPtr(out.as_mut_ptr());
    for t in 0..gx * gy {
        // SAFETY: `out` is a [c, height, width] buffer owned here, tiles rendered one at a time; each
        // kernel is only passed when this CPU has its instruction set (checked by the caller).
        unsafe { raster::render_tile(kernel, &frame, t, scratch.bins.tile(t), &ptr) };
    }
    out
}

#[test]
fn every_tile_renderer_on_this_cpu_agrees_bit_for_bit_at_any_width_and_channel_count() {
    let kernels = raster::available::<f32>();
    // 61 and 45 leave partial 8-pixel groups and partial tiles; 40 channels take the generic blocks.
    for (w, h, c) in [(61, 45, 32), (48, 33, 40)] {
        let scene = Scene::random(74 + c as u64, 2500, c);
        let cam = SplatCamera::from_transform(&oblique(), 12.0, w, h);
        let bg = seeded(8, c);
        let mut scratch = SplatScratch::new();
        splat_stats(&scene.set(), &cam, &mut scratch);
        let want = render_reference(&scene, &cam, &bg);
        for &(name, kernel) in &kernels {
            assert_same(&format!("{name}, {w}x{h}x{c}"), &render_with(kernel, &scene, &cam, &bg, &scratch), &want);
        }
    }
}

/// Old and new paths of each stage, interleaved in one process on the synthetic head at official size (the
/// ratios are what to trust on a shared machine): projection without and with the covariance cache, the
/// whole preprocessing + binning, and all tiles with the AVX2 build (the previous fast path) and the
/// selected one. Run: `cargo test -p gaga-kernels --release --lib splat::tests_fast::official_size_stage_times
/// -- --ignored --nocapture`
#[test]
#[ignore = "timing at official size; about 10 s in release"]
fn official_size_stage_times_old_vs_new() {
    use rayon::prelude::*;
    let head = synthetic::SyntheticHead::new(5023, 296, CHANNELS, 1);
    let set = head.set();
    let cam = SplatCamera::from_transform(&synthetic::FRONTAL, 12.0, 512, 512);
    let bg = [0.0; CHANNELS];
    let mut out = vec![0f32; CHANNELS * 512 * 512];
    let (mut new, mut old) = (SplatScratch::new(), SplatScratch::new());
    old.set_covariance_cache(false);
    splat(&set, &cam, &bg, &mut out, &mut new);
    splat(&set, &cam, &bg, &mut out, &mut old);
    let time = |f: &mut dyn FnMut()| {
        let t = std::time::Instant::now();
        f();
        t.elapsed().as_secs_f64() * 1e3
    };
    let all_tiles = |kernel: raster::TileFn, scratch: &SplatScratch, out: &mut [f32]| {
        let (gx, gy) = cam.tile_grid();
        let frame = raster::Frame::new(&scratch.projected, &head.colors, CHANNELS, &cam, &bg);
        let ptr = SyncPtr(out.as_mut_ptr());
        // SAFETY: `out` is [32, 512, 512]; each tile is rendered once; both kernels are checked below.
        (0..gx * gy).into_par_iter().for_each(|t| unsafe { raster::render_tile(kernel, &frame, t, scratch.bins.tile(t), &ptr) });
    };
    #[cfg(target_arch = "x86_64")]
    let old_kernel: raster::TileFn =
        if std::is_x86_feature_detected!("avx2") { raster::render_tile_avx2_checked } else { raster::render_tile_portable };
    #[cfg(not(target_arch = "x86_64"))]
    let old_kernel: raster::TileFn = raster::render_tile_portable;
    let reps = 4;
    let mut ms = [0f64; 6];
    for _ in 0..reps {
        ms[0] += time(&mut || old.projected.par_iter_mut().enumerate().for_each(|(i, p)| *p = project(&set, i, &cam).unwrap_or_default()));
        ms[1] += time(&mut || {
            splat_stats(&set, &cam, &mut new);
        });
        ms[2] += time(&mut || new.bins.build(&new.projected, cam.tile_grid()));
        ms[3] += time(&mut || all_tiles(old_kernel, &new, &mut out));
        ms[4] += time(&mut || all_tiles(raster::select(), &new, &mut out));
        ms[5] += time(&mut || {
            splat(&set, &cam, &bg, &mut out, &mut new);
        });
    }
    let ms = ms.map(|v| v / reps as f64);
    println!(
        "splat stages, ms per frame, {} threads: projection uncached {:.1}; projection cached + binning {:.1} (binning {:.1}); \
         raster old build {:.1}, selected build {:.1} ({:.2}x); whole splat {:.1}",
        rayon::current_num_threads(),
        ms[0],
        ms[1],
        ms[2],
        ms[3],
        ms[4],
        ms[3] / ms[4],
        ms[5]
    );
}

#[test]
fn a_zero_sized_image_renders_nothing_without_panicking() {
    let scene = Scene::random(75, 200, 32);
    let cam = SplatCamera::from_transform(&FRONTAL, 12.0, 0, 0);
    let stats = splat(&scene.set(), &cam, &[0.0; 32], &mut [], &mut SplatScratch::new());
    assert_eq!(stats, SplatStats::default());
}

#[test]
fn tiles_longer_than_a_chunk_match_the_reference_wherever_their_pixels_stop() {
    // One 32x24 image (two by two tiles, the lower ones partial): 400 faint Gaussians spread over it, so
    // lists run several chunks deep and most pixels never stop, plus opaque Gaussians in front over the
    // top-left corner only, so some groups stop in the first chunk while their tile keeps going.
    let mut scene = Scene::empty(32);
    let u = seeded(76, 400 * 5);
    for g in u.chunks(5) {
        let color: Vec<f32> = (0..32).map(|c| g[4] * (c as f32 - 15.5) / 16.0).collect();
        scene.push([g[0] * 0.7, g[1] * 0.5, g[2] * 0.3], 0.03 + 0.05 * g[3].abs(), 0.02 + 0.1 * g[3].abs(), &color);
    }
    for i in 0..12 {
        scene.push([0.4 + 0.01 * i as f32, -0.3, 1.0], 0.15, 0.95, &[0.5; 32]);
    }
    let cam = SplatCamera::from_transform(&FRONTAL, 12.0, 32, 24);
    let bg = seeded(9, 32);
    let mut scratch = SplatScratch::new();
    splat_stats(&scene.set(), &cam, &mut scratch);
    let longest = (0..4).map(|t| scratch.bins.tile(t).len()).max().unwrap_or(0);
    assert!(longest > 3 * raster::CHUNK, "longest tile list {longest}");
    let want = render_reference(&scene, &cam, &bg);
    assert_same("selected renderer", &render(&scene, &cam, &bg), &want);
    assert_same("portable renderer", &render_with(raster::render_tile_portable, &scene, &cam, &bg, &scratch), &want);
    // Pixels stop (T < 1e-4) in the first chunk under the opaque corner, deeper elsewhere, or never.
    let mut out = vec![0f32; want.len()];
    let p = profile::profile(&scene.set(), &cam, &bg, &mut out, &mut SplatScratch::new(), true);
    assert_same("profiled splat", &out, &want);
    assert!(p.terminated > 0 && p.terminated < p.pixels, "{} of {} pixels stopped", p.terminated, p.pixels);
}
