//! The GPU splatter's twin against the CPU splatter (`crate::splat::splat`). Both perform the same f32
//! operations in the same order (the twin's fp32 `ndc2Pix` equals the CPU's double one, see
//! `splat_project`), so images and counts must agree bit for bit.

use super::*;
use crate::splat::synthetic::{SyntheticHead, FRONTAL};
use crate::splat::{GaussianSet, SplatScratch};
use crate::testing::{assert_close, seeded};
use crate::twin::layout::push_constant_offsets;

/// Bitwise: same operations, same order (1e-30 absorbs nothing but a denormal flush).
const EXACT: crate::testing::Tolerance = crate::testing::Tolerance::Custom { abs: 1e-30, rel: 0.0 };

fn oblique() -> [[f32; 4]; 3] {
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

/// Many Gaussians crowded into one tile of a 64x64 image (around pixel (40, 40)), on three depth planes
/// only, so equal depths are frequent and their order (by index) decides the blend.
pub fn crowded_tile(n: usize, seed: u64) -> SyntheticHead {
    let u = seeded(seed, n * 6);
    let mut h = SyntheticHead { means: vec![], scales: vec![], rotations: vec![], opacities: vec![], colors: vec![], channels: CHANNELS };
    for i in 0..n {
        let r = &u[6 * i..6 * i + 6];
        // 384 px per unit of x/z at 64 px (focal 12); pixel 40 is 8.5 px right of the centre.
        let z = [0.0f32, 0.125, 0.25][i % 3];
        let depth = 9.0144 - z;
        let (px, py) = (40.0 + 5.0 * r[0], 40.0 + 5.0 * r[1]);
        h.means.extend([(px - 31.5) * depth / 384.0, -(py - 31.5) * depth / 384.0, z]);
        h.scales.extend([0.004 + 0.003 * r[2].abs(); 3]);
        h.rotations.extend([1.0, 0.1 * r[3], 0.0, 0.2 * r[4]]);
        h.opacities.push(0.02 + 0.1 * r[5].abs());
    }
    h.colors = seeded(seed ^ 0xC0, n * CHANNELS);
    h
}

/// Twin and CPU splatter on one scene: images, visible count and pairs.
pub fn compare(what: &str, scene: &SyntheticHead, transform: &[[f32; 4]; 3], size: usize) -> (u32, u32) {
    let set: GaussianSet = scene.set();
    let cam = SplatCamera::from_transform(transform, 12.0, size, size);
    let bg: [f32; CHANNELS] = std::array::from_fn(|c| 0.01 * c as f32 - 0.1);
    let mut want = vec![f32::NAN; CHANNELS * size * size];
    let stats = crate::splat::splat(&set, &cam, &bg, &mut want, &mut SplatScratch::new());
    let attr = pack_attributes(&scene.scales, &scene.rotations, &scene.opacities, &scene.colors);
    let p = SplatPush::new(set.len(), size, size, 1 << 24);
    let (got, visible, pairs) = splat(&p, &scene.means, &attr, &scene.colors, &cam, &bg).expect("capacity is ample");
    assert_close(&format!("{what}: twin vs CPU splatter"), &got, &want, EXACT);
    assert_eq!((visible as usize, pairs as usize), (stats.visible, stats.pairs), "{what}: counts");
    (visible, pairs)
}

#[test]
fn twin_equals_the_cpu_splatter_on_a_small_head_from_two_views() {
    let head = SyntheticHead::new(500, 36, CHANNELS, 7);
    let (visible, pairs) = compare("head, frontal", &head, &FRONTAL, 64);
    assert!(visible > 2000 && pairs > visible, "visible {visible}, pairs {pairs}");
    compare("head, oblique", &head, &oblique(), 64);
    compare("head, 48x40 frame", &head, &FRONTAL, 48);
}

#[test]
fn twin_equals_the_cpu_splatter_on_a_crowded_tile_with_depth_ties() {
    // 2500 > SORT_SHARED_CAP: the shader sorts this tile in global memory.
    let scene = crowded_tile(2500, 3);
    let (_, pairs) = compare("crowded tile", &scene, &FRONTAL, 64);
    assert!(pairs >= 2500, "pairs {pairs}");
    compare("crowded tile, 600", &crowded_tile(600, 4), &FRONTAL, 64);
}

#[test]
fn twin_culls_non_finite_gaussians_like_the_cpu_splatter() {
    let mut head = SyntheticHead::new(50, 10, CHANNELS, 9);
    head.colors[3 * CHANNELS + 5] = f32::NAN;
    head.means[3 * 7] = f32::INFINITY;
    head.scales[3 * 11 + 1] = f32::NAN;
    head.rotations[4 * 13] = f32::NEG_INFINITY;
    head.opacities[17] = f32::NAN;
    compare("non-finite attributes", &head, &FRONTAL, 64);
}

#[test]
fn twin_reports_an_overflow_with_the_pairs_and_the_capacity() {
    let head = SyntheticHead::new(200, 10, CHANNELS, 5);
    let cam = SplatCamera::from_transform(&FRONTAL, 12.0, 64, 64);
    let attr = pack_attributes(&head.scales, &head.rotations, &head.opacities, &head.colors);
    let p = SplatPush::new(head.opacities.len(), 64, 64, 10);
    let err = splat(&p, &head.means, &attr, &head.colors, &cam, &[0.0; CHANNELS]).expect_err("10 pairs cannot hold the frame");
    assert!(err.pairs > 10 && err.capacity == 10, "{err:?}");
}

#[test]
fn splat_push_matches_every_splat_shaders_push_block() {
    let want: Vec<u32> = (0..std::mem::size_of::<SplatPush>() as u32 / 4).map(|i| 4 * i).collect();
    for (name, spv) in [
        ("project", PROJECT_SPV),
        ("scan", SCAN_SPV),
        ("fill", FILL_SPV),
        ("sort", SORT_SPV),
        ("raster", RASTER_SPV),
        ("raster_f16", RASTER_F16_SPV),
    ] {
        assert_eq!(push_constant_offsets(spv), Some(want.clone()), "splat_{name}");
    }
}

#[test]
fn camera_words_place_matrices_row_major_and_the_background_last() {
    let cam = SplatCamera::from_transform(&FRONTAL, 12.0, 512, 512);
    let bg: [f32; CHANNELS] = std::array::from_fn(|c| c as f32);
    let w = camera_words(&cam, &bg);
    assert_eq!(w[4 * 3 + 2], cam.view[3][2]);
    assert_eq!(w[16 + 4 * 2 + 3], cam.proj[2][3]);
    assert_eq!((w[32], w[35]), (cam.tan_fov[0], cam.focal_px[1]));
    assert_eq!(w[BACKGROUND_OFFSET + 31], 31.0);
}

#[test]
fn dispatch_sizes_cover_every_gaussian_and_tile() {
    let p = SplatPush::new(180_255, 512, 512, 1);
    assert_eq!(p.gaussian_groups(), (705, 1, 1));
    assert_eq!(p.tile_groups(), (32, 32, 1));
    assert_eq!(SplatPush::new(0, 40, 20, 1).tile_groups(), (3, 2, 1));
}
