//! Behaviour of the whole splatter against the reference and the official rules.
//! The fast path performs the reference's float operations in the same order, so comparisons are exact
//! (bitwise); where a tolerance appears, its reason is stated next to it.

use super::*;
use crate::testing::seeded;

/// The frontal tracked camera of spec section 3.3: R = diag(-1, 1, -1), T = (0, 0, 9.0144).
pub(super) const FRONTAL: [[f32; 4]; 3] = [[-1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 9.0144]];

/// An oblique camera: the frontal one turned by about 25 degrees around y and 10 around x.
pub(super) fn oblique() -> [[f32; 4]; 3] {
    let (a, b) = (25f32.to_radians(), 10f32.to_radians());
    let ry = [[a.cos(), 0.0, a.sin()], [0.0, 1.0, 0.0], [-a.sin(), 0.0, a.cos()]];
    let rx = [[1.0, 0.0, 0.0], [0.0, b.cos(), -b.sin()], [0.0, b.sin(), b.cos()]];
    let mut t = FRONTAL;
    for i in 0..3 {
        for j in 0..3 {
            t[i][j] = (0..3).map(|k| (0..3).map(|l| ry[i][k] * rx[k][l] * FRONTAL[l][j]).sum::<f32>()).sum();
        }
    }
    t
}

/// Owned attributes of a test scene.
#[derive(Clone)]
pub(super) struct Scene {
    pub means: Vec<f32>,
    pub scales: Vec<f32>,
    pub rotations: Vec<f32>,
    pub opacities: Vec<f32>,
    pub colors: Vec<f32>,
    pub channels: usize,
}

impl Scene {
    pub fn set(&self) -> GaussianSet<'_> {
        GaussianSet::new(&self.means, &self.scales, &self.rotations, &self.opacities, &self.colors, self.channels)
            .expect("test scene is consistent")
    }

    /// `n` Gaussians in a head-sized box around the origin (a few behind the camera), scales from sub-pixel
    /// to several tiles, rotations of random length (short ones like quirk 2's), opacities in (0, 1).
    pub fn random(seed: u64, n: usize, channels: usize) -> Scene {
        let u = seeded(seed, n * 13);
        let mut s = Scene { means: vec![], scales: vec![], rotations: vec![], opacities: vec![], colors: vec![], channels };
        for i in 0..n {
            let r = &u[i * 13..(i + 1) * 13];
            let behind = i % 97 == 5;
            s.means.extend([r[0] * 0.8, r[1] * 0.8, if behind { 9.5 } else { r[2] * 1.5 }]);
            s.scales.extend((3..6).map(|k| 0.002 + 0.03 * (r[k] + 1.0)));
            let len = if i % 3 == 0 { 0.03 } else { 1.0 };
            s.rotations.extend((6..10).map(|k| r[k] * len));
            s.opacities.push(0.5 + 0.5 * r[10]);
        }
        s.colors = seeded(seed ^ 0xC0, n * channels);
        s
    }

    pub fn push(&mut self, mean: [f32; 3], scale: f32, opacity: f32, color: &[f32]) {
        self.means.extend(mean);
        self.scales.extend([scale; 3]);
        self.rotations.extend([1.0, 0.0, 0.0, 0.0]);
        self.opacities.push(opacity);
        self.colors.extend_from_slice(color);
    }

    pub fn empty(channels: usize) -> Scene {
        Scene { means: vec![], scales: vec![], rotations: vec![], opacities: vec![], colors: vec![], channels }
    }
}

pub(super) fn render(scene: &Scene, cam: &SplatCamera, bg: &[f32]) -> Vec<f32> {
    let mut out = vec![f32::NAN; scene.channels * cam.width * cam.height];
    splat(&scene.set(), cam, bg, &mut out, &mut SplatScratch::new());
    out
}

pub(super) fn render_reference(scene: &Scene, cam: &SplatCamera, bg: &[f32]) -> Vec<f32> {
    let mut out = vec![f32::NAN; scene.channels * cam.width * cam.height];
    reference::splat(&scene.set(), cam, bg, &mut out);
    out
}

/// Bitwise equality with the position of the first difference in the message.
pub(super) fn assert_same(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
        panic!("{what}: first difference at {i}: got {} want {}", got[i], want[i]);
    }
}

#[test]
fn fast_path_matches_reference_bit_for_bit_on_random_scenes() {
    let cases = [(64, 64, 32, FRONTAL), (80, 48, 32, oblique()), (37, 23, 32, FRONTAL), (45, 30, 5, oblique())];
    for (k, (w, h, c, t)) in cases.into_iter().enumerate() {
        let scene = Scene::random(10 + k as u64, 2500, c);
        let cam = SplatCamera::from_transform(&t, 12.0, w, h);
        let bg = seeded(99, c);
        let got = render(&scene, &cam, &bg);
        let want = render_reference(&scene, &cam, &bg);
        assert_same(&format!("{w}x{h}, {c} channels"), &got, &want);
        // The scene must exercise blending, not only the background.
        let touched = got.iter().zip(&want).filter(|(g, _)| **g != got[0]).count();
        assert!(touched > got.len() / 4, "{w}x{h}: only {touched} values differ from the first");
    }
}

#[test]
fn channel_counts_above_32_blend_in_blocks_identically() {
    // 40 channels take two walks over each tile list; the blending must not depend on the block.
    let scene = Scene::random(3, 1500, 40);
    let cam = SplatCamera::from_transform(&FRONTAL, 12.0, 33, 40);
    let bg = seeded(4, 40);
    assert_same("40 channels", &render(&scene, &cam, &bg), &render_reference(&scene, &cam, &bg));
}

#[test]
fn zero_gaussians_render_the_background() {
    let cam = SplatCamera::from_transform(&FRONTAL, 12.0, 21, 17);
    let bg = seeded(1, CHANNELS);
    let out = render(&Scene::empty(CHANNELS), &cam, &bg);
    for (ch, plane) in out.chunks(21 * 17).enumerate() {
        assert!(plane.iter().all(|&v| v == bg[ch]), "channel {ch} is not the background");
    }
}

#[test]
fn gaussian_behind_the_near_plane_is_invisible() {
    let bg = vec![0.25; 3];
    // A Gaussian at the world origin seen by a camera at T = (0, 0, tz): view z is exactly tz.
    // The official test is `z <= 0.2`, so z = 0.2 itself is culled.
    for (tz, visible) in [(0.2f32, false), (-1.0, false), (0.2001, true)] {
        let mut t = FRONTAL;
        t[2][3] = tz;
        let cam = SplatCamera::from_transform(&t, 12.0, 32, 32);
        let mut scene = Scene::empty(3);
        scene.push([0.0, 0.0, 0.0], 0.001, 0.9, &[1.0, 2.0, 3.0]);
        let out = render(&scene, &cam, &bg);
        let changed = out.iter().any(|&v| v != 0.25);
        assert_eq!(changed, visible, "view z {}", cam.to_view([0.0, 0.0, 0.0])[2]);
    }
}

#[test]
fn single_isotropic_gaussian_centre_pixel_is_opacity_times_colour_and_footprint_is_symmetric() {
    // Odd sizes put the optical axis on pixel (31, 23) exactly.
    let (w, h) = (63, 47);
    let cam = SplatCamera::from_transform(&FRONTAL, 12.0, w, h);
    let color: Vec<f32> = (0..CHANNELS).map(|c| 0.1 + c as f32 * 0.05).collect();
    let mut scene = Scene::empty(CHANNELS);
    scene.push([0.0, 0.0, 0.0], 0.05, 0.8, &color);
    let out = render(&scene, &cam, &[0.0; CHANNELS]);
    let at = |ch: usize, x: usize, y: usize| out[ch * w * h + y * w + x];
    for (ch, &c) in color.iter().enumerate() {
        assert_eq!(at(ch, 31, 23), c * 0.8, "channel {ch} at the centre");
    }
    // Power depends on dx^2 and dy^2 only (the conic's b is exactly 0 here): mirror images are equal.
    for dy in 0..8 {
        for dx in 0..8 {
            let v = at(5, 31 + dx, 23 + dy);
            for (x, y) in [(31 - dx, 23 + dy), (31 + dx, 23 - dy), (31 - dx, 23 - dy)] {
                assert_eq!(at(5, x, y), v, "pixel ({x}, {y}) vs ({}, {})", 31 + dx, 23 + dy);
            }
        }
    }
    assert!(at(5, 31, 23) > at(5, 32, 23) && at(5, 32, 23) > at(5, 33, 23), "falls off from the centre");
}

#[test]
fn opaque_stack_stops_when_transmittance_would_fall_below_1e_4() {
    let (w, h) = (15, 15);
    let cam = SplatCamera::from_transform(&FRONTAL, 12.0, w, h);
    let bg = [0.5f32, -1.0];
    for opacity in [1.0f32, 0.9, 0.6] {
        // Ten layers on the axis, front to back by world z, each with its own colour.
        let mut scene = Scene::empty(2);
        for k in 0..10 {
            scene.push([0.0, 0.0, 1.0 - k as f32 * 0.1], 0.2, opacity, &[k as f32 + 1.0, 1.0]);
        }
        let out = render(&scene, &cam, &bg);
        let centre = 7 * w + 7;
        // The official loop at the centre pixel (exp(0) = 1): alpha = min(0.99, opacity).
        let alpha = opacity.min(0.99);
        let (mut t, mut acc, mut used) = (1f32, [0f32; 2], 0);
        for k in 0..10 {
            let test_t = t * (1.0 - alpha);
            if test_t < 1e-4 {
                break;
            }
            acc[0] += (k as f32 + 1.0) * alpha * t;
            acc[1] += alpha * t;
            t = test_t;
            used += 1;
        }
        // 0.99: 0.01^2 < 1e-4 after one layer. 0.9: (1 - 0.9f)^4 = 1.000001e-4 still passes, so four.
        // 0.6: 0.4^10 = 1.05e-4, all ten.
        let expected_used = match opacity {
            o if o >= 0.99 => 1,
            o if o >= 0.9 => 4,
            _ => 10,
        };
        assert_eq!(used, expected_used, "opacity {opacity}: layers blended");
        assert_eq!(out[centre], acc[0] + t * bg[0], "opacity {opacity}: channel 0");
        assert_eq!(out[w * h + centre], acc[1] + t * bg[1], "opacity {opacity}: channel 1");
    }
}

#[test]
fn result_does_not_depend_on_gaussian_order_without_depth_ties() {
    let scene = Scene::random(21, 2000, 32);
    let n = scene.opacities.len();
    // Reverse, then rotate by a third: every Gaussian moves.
    let perm: Vec<usize> = (0..n).rev().cycle().skip(n / 3).take(n).collect();
    let mut shuffled = Scene::empty(32);
    for &i in &perm {
        shuffled.means.extend_from_slice(&scene.means[3 * i..3 * i + 3]);
        shuffled.scales.extend_from_slice(&scene.scales[3 * i..3 * i + 3]);
        shuffled.rotations.extend_from_slice(&scene.rotations[4 * i..4 * i + 4]);
        shuffled.opacities.push(scene.opacities[i]);
        shuffled.colors.extend_from_slice(&scene.colors[32 * i..32 * i + 32]);
    }
    let cam = SplatCamera::from_transform(&oblique(), 12.0, 48, 40);
    let mut depths: Vec<u32> = (0..n).map(|i| cam.to_view(scene.set().mean(i))[2].to_bits()).collect();
    depths.sort_unstable();
    depths.dedup();
    assert_eq!(depths.len(), n, "the random scene has a depth tie; pick another seed");
    let bg = [0.0; 32];
    assert_same("permuted scene", &render(&shuffled, &cam, &bg), &render(&scene, &cam, &bg));
}

#[test]
fn exact_depth_ties_blend_the_lower_index_first() {
    // Two Gaussians at the same point: the first one listed is in front, as CUDA's stable radix sort does.
    let cam = SplatCamera::from_transform(&FRONTAL, 12.0, 15, 15);
    let mut ab = Scene::empty(1);
    ab.push([0.0, 0.0, 0.0], 0.1, 0.7, &[1.0]);
    ab.push([0.0, 0.0, 0.0], 0.1, 0.7, &[-1.0]);
    let mut ba = Scene::empty(1);
    ba.push([0.0, 0.0, 0.0], 0.1, 0.7, &[-1.0]);
    ba.push([0.0, 0.0, 0.0], 0.1, 0.7, &[1.0]);
    let centre = 7 * 15 + 7;
    let (a, b) = (render(&ab, &cam, &[0.0])[centre], render(&ba, &cam, &[0.0])[centre]);
    // 0.7 * 1 + 0.3 * 0.7 * -1 = 0.49 in front-first order.
    assert!((a - 0.49).abs() < 1e-6 && (b + 0.49).abs() < 1e-6, "ab {a}, ba {b}");
}

#[test]
fn result_does_not_depend_on_the_thread_count() {
    let scene = Scene::random(31, 3000, 32);
    let cam = SplatCamera::from_transform(&FRONTAL, 12.0, 64, 48);
    let bg = seeded(2, 32);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool");
        pool.install(|| render(&scene, &cam, &bg))
    };
    assert_same("1 vs 3 threads", &run(3), &run(1));
}

#[test]
fn non_finite_inputs_are_culled_without_panicking() {
    let clean = Scene::random(41, 400, 32);
    let mut dirty = clean.clone();
    // Poison one attribute of each of these Gaussians with NaN, +Inf or -Inf.
    let bad = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
    let poisoned: Vec<usize> = (0..15).map(|k| k * 23 + 1).collect();
    for (k, &i) in poisoned.iter().enumerate() {
        let v = bad[k % 3];
        match k % 5 {
            0 => dirty.means[3 * i + k % 3] = v,
            1 => dirty.scales[3 * i + 1] = v,
            2 => dirty.rotations[4 * i + 2] = v,
            3 => dirty.opacities[i] = v,
            _ => dirty.colors[32 * i + 7] = v,
        }
    }
    let mut culled = clean.clone();
    for &i in &poisoned {
        culled.opacities[i] = 0.0; // alpha 0 is never blended: the same as culling
    }
    let cam = SplatCamera::from_transform(&oblique(), 12.0, 40, 40);
    let bg = seeded(3, 32);
    let out = render(&dirty, &cam, &bg);
    assert!(out.iter().all(|v| v.is_finite()), "non-finite output");
    assert_same("poisoned vs removed", &out, &render(&culled, &cam, &bg));
    // Overflowing but finite attributes are culled too.
    let mut huge = Scene::empty(32);
    huge.push([0.0, 0.0, 0.0], 3e38, 0.5, &[1.0; 32]);
    assert!(render(&huge, &cam, &bg).iter().zip(render(&Scene::empty(32), &cam, &bg)).all(|(a, b)| a == &b));
}

#[test]
fn scratch_is_reused_without_growing_and_stats_match_the_bins() {
    let scene = Scene::random(51, 1200, 32);
    let cam = SplatCamera::from_transform(&FRONTAL, 12.0, 50, 50);
    let bg = [0.0; 32];
    let mut scratch = SplatScratch::new();
    let mut out = vec![0f32; 32 * 50 * 50];
    let first = splat(&scene.set(), &cam, &bg, &mut out, &mut scratch);
    let bytes = scratch.capacity_bytes();
    let again = out.clone();
    let second = splat(&scene.set(), &cam, &bg, &mut out, &mut scratch);
    assert_eq!(first, second);
    assert_eq!(scratch.capacity_bytes(), bytes, "second frame grew the scratch");
    assert_same("second frame", &out, &again);
    // Stats from first principles.
    let set = scene.set();
    let visible: Vec<_> = (0..set.len()).filter_map(|i| project::project(&set, i, &cam)).collect();
    assert_eq!(first.visible, visible.len());
    assert_eq!(first.pairs, visible.iter().map(|p| p.rect.count()).sum::<usize>());
    assert!(first.visible > 1000 && first.pairs > first.visible, "{first:?}");
    assert_eq!(splat_stats(&set, &cam, &mut scratch), first);
    // The per-buffer report adds up and covers what this frame needed.
    let by = scratch.buffer_bytes();
    assert_eq!(by.iter().map(|b| b.1).sum::<usize>(), bytes);
    let of = |name: &str| by.iter().find(|b| b.0 == name).map_or(0, |b| b.1);
    assert!(of("projected") >= 1200 * std::mem::size_of::<project::Projected>(), "{by:?}");
    assert!(of("covariance cache") >= 1200 * 52 && of("bins.list") >= 4 * first.pairs, "{by:?}");
    let states = rayon::current_num_threads() * raster::TILE_GROUPS * std::mem::size_of::<raster::GroupState>();
    assert!(of("tile blend states") >= states, "every pool thread's blend states are held: {by:?}");
}

#[test]
fn simd_and_portable_tile_renderers_agree_bit_for_bit() {
    let scene = Scene::random(61, 2000, 32);
    let cam = SplatCamera::from_transform(&FRONTAL, 12.0, 48, 48);
    let bg = seeded(6, 32);
    let set = scene.set();
    let mut scratch = SplatScratch::new();
    let mut fast = vec![0f32; 32 * 48 * 48];
    splat(&set, &cam, &bg, &mut fast, &mut scratch);
    // Re-render every tile with the portable build into a second buffer.
    let mut portable = vec![0f32; fast.len()];
    let frame = raster::Frame::new(&scratch.projected, &scene.colors, 32, &cam, &bg);
    let ptr = SyncPtr(portable.as_mut_ptr());
    for t in 0..9 {
        // SAFETY: `portable` is a [32, 48, 48] buffer owned here; tiles are rendered one at a time.
        unsafe { raster::render_tile(raster::render_tile_portable, &frame, t, scratch.bins.tile(t), &ptr) };
    }
    assert_same("portable vs selected renderer", &portable, &fast);
}

#[test]
fn inconsistent_gaussian_sets_are_rejected_with_the_field_named() {
    let (m, s, r, o, c) = (vec![0.0; 6], vec![0.0; 6], vec![0.0; 8], vec![0.0; 2], vec![0.0; 64]);
    assert!(GaussianSet::new(&m, &s, &r, &o, &c, 32).is_ok());
    let err = GaussianSet::new(&m, &s, &r[..7], &o, &c, 32).expect_err("short rotations");
    assert_eq!(err, GaussianSetError { field: "rotations", expected: 8, found: 7 });
    assert_eq!(err.to_string(), "Gaussian set: `rotations` has 7 values, expected 8");
    let err = GaussianSet::new(&m, &s, &r, &o, &c, 31).expect_err("wrong channel count");
    assert_eq!(err.field, "colors");
}

/// Official size: 180,255 Gaussians, 512x512, 32 channels, rayon's default pool. Prints ms per frame.
/// Run: `cargo test -p gaga-kernels --release --lib splat::tests::official_size_frame_time -- --ignored --nocapture`
#[test]
#[ignore = "timing at official size; seconds in release, slow in debug"]
fn official_size_frame_time() {
    let head = synthetic::SyntheticHead::new(5023, 296, CHANNELS, 1);
    let set = head.set();
    let cam = SplatCamera::from_transform(&synthetic::FRONTAL, 12.0, 512, 512);
    let mut out = vec![0f32; CHANNELS * 512 * 512];
    let mut scratch = SplatScratch::new();
    let bg = [0.0; CHANNELS];
    let stats = splat(&set, &cam, &bg, &mut out, &mut scratch);
    let frames = 5;
    let (start, cpu0) = (std::time::Instant::now(), cpu_seconds());
    for _ in 0..frames {
        splat(&set, &cam, &bg, &mut out, &mut scratch);
    }
    let frame_ms = start.elapsed().as_secs_f64() * 1e3 / frames as f64;
    let cpu_ms = (cpu_seconds() - cpu0) * 1e3 / frames as f64;
    let start = std::time::Instant::now();
    for _ in 0..frames {
        splat_stats(&set, &cam, &mut scratch);
    }
    let prep_ms = start.elapsed().as_secs_f64() * 1e3 / frames as f64;
    println!(
        "splat 512x512x32, {} Gaussians, {} threads: {frame_ms:.1} ms/frame wall, {cpu_ms:.0} ms CPU \
         ({prep_ms:.1} ms wall preprocess+binning); {stats:?}",
        set.len(),
        rayon::current_num_threads()
    );
}

/// User + system CPU seconds of this process (Linux `/proc/self/stat`, 100 ticks per second), so timings
/// on a shared machine can be judged; 0 elsewhere.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 overall.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let ticks: Vec<f64> = rest.split_whitespace().skip(11).take(2).filter_map(|v| v.parse().ok()).collect();
    ticks.iter().sum::<f64>() / 100.0
}
