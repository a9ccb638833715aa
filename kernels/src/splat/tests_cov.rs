//! Precomputed covariances (`GaussianSet::with_covariances`): the same `cov3d` values, computed once,
//! so every frame must equal, bit for bit, the splat from scales and rotations (cached or not), including
//! Gaussians whose non-finite scale or rotation culls them.

use super::tests::{assert_same, oblique, Scene, FRONTAL};
use super::*;
use crate::testing::seeded;

fn splat_covs(scene: &Scene, covs: &[f32], cam: &SplatCamera, bg: &[f32], scratch: &mut SplatScratch) -> Vec<f32> {
    let set = GaussianSet::with_covariances(&scene.means, covs, &scene.opacities, Colors::F32(&scene.colors), scene.channels)
        .expect("consistent scene");
    let mut out = vec![f32::NAN; scene.channels * cam.width * cam.height];
    splat(&set, cam, bg, &mut out, scratch);
    out
}

#[test]
fn precomputed_covariances_splat_bit_for_bit_like_scales_and_rotations() {
    let bg = seeded(9, 32);
    for (seed, transform) in [(91u64, FRONTAL), (92, oblique())] {
        let mut scene = Scene::random(seed, 700, 32);
        // Non-finite scales and rotations (culled either way) and an overflowing finite scale.
        for (k, i) in [3usize, 50, 97, 160, 222].into_iter().enumerate() {
            match k {
                0 => scene.scales[3 * i] = f32::NAN,
                1 => scene.scales[3 * i + 2] = f32::INFINITY,
                2 => scene.rotations[4 * i + 1] = f32::NEG_INFINITY,
                3 => scene.rotations[4 * i] = f32::NAN,
                _ => scene.scales[3 * i + 1] = 3.0e38,
            }
        }
        let covs = covariances(&scene.scales, &scene.rotations);
        let cam = SplatCamera::from_transform(&transform, 12.0, 61, 47);
        let want = super::tests::render(&scene, &cam, &bg);
        let mut scratch = SplatScratch::new();
        for frame in 0..2 {
            let got = splat_covs(&scene, &covs, &cam, &bg, &mut scratch);
            assert_same(&format!("seed {seed} frame {frame}"), &got, &want);
        }
        assert!(scratch.buffer_bytes().iter().any(|(n, b)| *n == "covariance cache" && *b == 0), "no cache is kept");
    }
}

#[test]
fn a_gaussian_set_checks_the_covariance_count() {
    let scene = Scene::random(95, 10, 32);
    let covs = covariances(&scene.scales, &scene.rotations);
    let e = GaussianSet::with_covariances(&scene.means, &covs[..54], &scene.opacities, Colors::F32(&scene.colors), 32)
        .expect_err("one covariance short");
    assert_eq!((e.field, e.expected, e.found), ("covariances", 60, 54));
}

/// `GaussianSet::moving`: the first Gaussians' means from another array splat bitwise as one array
/// holding those means (what the renderer does with the posed FLAME vertices).
#[test]
fn moved_means_splat_bit_for_bit_like_one_array_holding_them() {
    let scene = Scene::random(96, 500, 32);
    let moved: Vec<f32> = seeded(97, 3 * 120).iter().map(|v| v * 0.7).collect();
    let mut joined = scene.clone();
    joined.means[..moved.len()].copy_from_slice(&moved);
    let cam = SplatCamera::from_transform(&oblique(), 12.0, 40, 36);
    let bg = seeded(9, 32);
    let set = GaussianSet::new(&scene.means, &scene.scales, &scene.rotations, &scene.opacities, &scene.colors, 32)
        .expect("consistent")
        .moving(&moved)
        .expect("fits");
    let mut got = vec![f32::NAN; 32 * 40 * 36];
    splat(&set, &cam, &bg, &mut got, &mut SplatScratch::new());
    assert_same("moved means", &got, &super::tests::render(&joined, &cam, &bg));
    let e = set.moving(&scene.means[..4]).expect_err("not whole means");
    assert_eq!(e.field, "moved means");
}
