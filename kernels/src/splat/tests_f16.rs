//! f16 colours: the splat widens each value exactly (f16 -> f32), so every output must equal, bit for bit,
//! the splat of the same colours widened to f32 beforehand (no tolerance: same float operations on the same
//! values), with every tile renderer, the reference, non-finite halves, and any thread count.

use half::f16;

use super::colors::{narrow_all, widen_all};
use super::tests::{assert_same, oblique, Scene, FRONTAL};
use super::*;
use crate::testing::seeded;

/// A scene's colours rounded to f16, and the scene with those halves widened back to f32.
fn halved(scene: &Scene) -> (Vec<f16>, Scene) {
    let halves = narrow_all(&scene.colors);
    let mut wide = scene.clone();
    wide.colors = widen_all(&halves);
    (halves, wide)
}

fn set_f16<'a>(scene: &'a Scene, halves: &'a [f16]) -> GaussianSet<'a> {
    GaussianSet::with_colors(&scene.means, &scene.scales, &scene.rotations, &scene.opacities, Colors::F16(halves), scene.channels)
        .expect("test scene is consistent")
}

fn splat_f16(scene: &Scene, halves: &[f16], cam: &SplatCamera, bg: &[f32]) -> Vec<f32> {
    let mut out = vec![f32::NAN; scene.channels * cam.width * cam.height];
    splat(&set_f16(scene, halves), cam, bg, &mut out, &mut SplatScratch::new());
    out
}

/// All tiles of the frame prepared in `scratch`, blended by `kernel` from `colors`.
fn render_tiles<T: Elem>(
    kernel: raster::TileFn<T>,
    colors: &[T],
    c: usize,
    cam: &SplatCamera,
    bg: &[f32],
    scratch: &SplatScratch,
) -> Vec<f32> {
    let mut out = vec![f32::NAN; c * cam.width * cam.height];
    let (gx, gy) = cam.tile_grid();
    let frame = raster::Frame::new(&scratch.projected, colors, c, cam, bg);
    let ptr = crate::matmul::SyncPtr(out.as_mut_ptr());
    for t in 0..gx * gy {
        // SAFETY: `out` is a [c, height, width] buffer owned here, tiles rendered one at a time; `kernels`
        // only lists renderers this CPU supports.
        unsafe { raster::render_tile(kernel, &frame, t, scratch.bins.tile(t), &ptr) };
    }
    out
}

#[test]
fn f16_colours_splat_bit_for_bit_like_the_same_colours_widened_to_f32_on_random_scenes() {
    // 32 channels take the AVX-512 blend where present, 40 and 3 the generic blocks; odd sizes leave
    // partial groups and tiles.
    for (seed, w, h, c) in [(1u64, 61, 45, 32), (2, 64, 48, 32), (3, 48, 33, 40), (4, 40, 40, 3)] {
        let scene = Scene::random(80 + seed, 2500, c);
        let (halves, wide) = halved(&scene);
        let transform = if seed % 2 == 0 { FRONTAL } else { oblique() };
        let cam = SplatCamera::from_transform(&transform, 12.0, w, h);
        let bg = seeded(seed, c);
        let mut want = vec![f32::NAN; c * w * h];
        reference::splat(&wide.set(), &cam, &bg, &mut want);
        assert_same(&format!("fast f16 vs reference on widened, {w}x{h}x{c}"), &splat_f16(&scene, &halves, &cam, &bg), &want);
        let mut from_f16 = vec![f32::NAN; c * w * h];
        reference::splat(&set_f16(&scene, &halves), &cam, &bg, &mut from_f16);
        assert_same(&format!("reference f16 vs widened, {w}x{h}x{c}"), &from_f16, &want);

        // Each renderer, both element types, over the same prepared frame.
        let mut scratch = SplatScratch::new();
        splat_stats(&wide.set(), &cam, &mut scratch);
        for ((name, k16), (_, k32)) in raster::available::<f16>().into_iter().zip(raster::available::<f32>()) {
            let what = format!("{name}, {w}x{h}x{c}");
            assert_same(&format!("{what}, f16"), &render_tiles(k16, &halves, c, &cam, &bg, &scratch), &want);
            assert_same(&format!("{what}, f32"), &render_tiles(k32, &wide.colors, c, &cam, &bg, &scratch), &want);
        }
    }
}

#[test]
fn f16_colours_give_the_same_frame_with_one_and_two_threads() {
    let scene = Scene::random(91, 3000, 32);
    let (halves, wide) = halved(&scene);
    let cam = SplatCamera::from_transform(&oblique(), 12.0, 64, 48);
    let bg = seeded(9, 32);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool");
        pool.install(|| splat_f16(&scene, &halves, &cam, &bg))
    };
    let want = super::tests::render(&wide, &cam, &bg);
    assert_same("1 thread", &run(1), &want);
    assert_same("2 threads", &run(2), &want);
}

#[test]
fn non_finite_f16_colours_are_culled_like_non_finite_f32_colours() {
    let scene = Scene::random(93, 600, 32);
    let (mut halves, _) = halved(&scene);
    // NaN, +Inf, -Inf and a NaN with another payload, in various channels; plus finite extremes that must
    // stay: the largest half and the smallest subnormal.
    let bad = [f16::NAN, f16::INFINITY, f16::NEG_INFINITY, f16::from_bits(0x7E01)];
    let poisoned: Vec<usize> = (0..16).map(|k| k * 31 + 2).collect();
    for (k, &i) in poisoned.iter().enumerate() {
        halves[32 * i + (k * 7) % 32] = bad[k % 4];
    }
    halves[32 * 5 + 1] = f16::MAX;
    halves[32 * 6 + 2] = f16::from_bits(0x0001);
    let mut wide = scene.clone();
    wide.colors = widen_all(&halves);
    let mut culled = wide.clone();
    for &i in &poisoned {
        culled.opacities[i] = 0.0; // never blended: the same as culling
    }
    let cam = SplatCamera::from_transform(&FRONTAL, 12.0, 48, 48);
    let bg = seeded(4, 32);
    let got = splat_f16(&scene, &halves, &cam, &bg);
    assert!(got.iter().all(|v| v.is_finite()), "non-finite output");
    assert_same("poisoned f16 vs widened f32", &got, &super::tests::render(&wide, &cam, &bg));
    assert_same("poisoned f16 vs removed", &got, &super::tests::render(&culled, &cam, &bg));
}

#[test]
fn a_gaussian_set_checks_the_f16_colour_count() {
    let scene = Scene::random(95, 10, 32);
    let halves = narrow_all(&scene.colors[..32 * 9]);
    let err = GaussianSet::with_colors(&scene.means, &scene.scales, &scene.rotations, &scene.opacities, Colors::F16(&halves), 32)
        .expect_err("nine colours for ten Gaussians");
    assert_eq!(err, GaussianSetError { field: "colors", expected: 320, found: 288 });
}

/// The blend with f16 colours against f32 colours, alternating in one process, on the synthetic head at
/// official size (same prepared frame; ratios are what to trust on a shared machine). Run:
/// `cargo test -p gaga-kernels --release --lib splat::tests_f16::f16_blend_time -- --ignored --nocapture`
#[test]
#[ignore = "timing at official size; about 10 s in release"]
fn f16_blend_time_against_f32_alternating() {
    use rayon::prelude::*;
    let head = synthetic::SyntheticHead::new(5023, 296, CHANNELS, 1);
    let halves = narrow_all(&head.colors);
    let wide = widen_all(&halves);
    let set = GaussianSet::new(&head.means, &head.scales, &head.rotations, &head.opacities, &wide, CHANNELS).expect("head");
    let cam = SplatCamera::from_transform(&synthetic::FRONTAL, 12.0, 512, 512);
    let bg = [0.0; CHANNELS];
    let mut scratch = SplatScratch::new();
    splat_stats(&set, &cam, &mut scratch);
    let mut out = vec![0f32; CHANNELS * 512 * 512];
    fn all_tiles<T: Elem>(
        render: raster::TileFn<T>,
        colors: &[T],
        cam: &SplatCamera,
        bg: &[f32],
        scratch: &SplatScratch,
        out: &mut [f32],
    ) -> f64 {
        let start = std::time::Instant::now();
        let frame = raster::Frame::new(&scratch.projected, colors, CHANNELS, cam, bg);
        let ptr = crate::matmul::SyncPtr(out.as_mut_ptr());
        let (gx, gy) = cam.tile_grid();
        // SAFETY: `out` is [32, 512, 512]; each tile is rendered once; `kernels` lists only renderers this
        // CPU supports.
        (0..gx * gy).into_par_iter().for_each(|t| unsafe { raster::render_tile(render, &frame, t, scratch.bins.tile(t), &ptr) });
        start.elapsed().as_secs_f64() * 1e3
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    // Every renderer of this CPU (the selected one is the last); the portable ones widen f16 per blended
    // Gaussian through `half`'s slice conversion.
    for ((name, k16), (_, k32)) in raster::available::<f16>().into_iter().zip(raster::available::<f32>()) {
        let (mut f32_ms, mut f16_ms) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            f32_ms.push(all_tiles(k32, &wide, &cam, &bg, &scratch, &mut out));
            f16_ms.push(all_tiles(k16, &halves, &cam, &bg, &scratch, &mut out));
        }
        let (a, b) = (median(&mut f32_ms), median(&mut f16_ms));
        println!(
            "blend {name}, all tiles, {} threads: f32 colours {a:.1} ms, f16 colours {b:.1} ms (f16 / f32 = {:.3})",
            rayon::current_num_threads(),
            b / a
        );
    }
}
