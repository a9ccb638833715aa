//! The camera and the per-Gaussian preprocessing against the official code's numbers and f64 maths.

use super::project::{cov2d, cov3d, exp, tile_rect, TileRect};
use super::tests::{oblique, FRONTAL};
use super::SplatCamera;
use crate::testing::seeded;

#[test]
fn camera_matrices_match_the_official_python_for_an_oblique_transform() {
    // Expected values printed by `build_camera_matrices` (utils_renderer.py, torch 2.x CPU, float32)
    // for this transform and focal 12.
    let t = [[0.9, 0.1, -0.42, 0.05], [0.05, -0.98, 0.2, -0.1], [0.43, 0.17, 0.88, 9.0144]];
    let cam = SplatCamera::from_transform(&t, 12.0, 512, 512);
    let view = [[-0.9, -0.1, -0.42, 0.0], [-0.05, 0.98, 0.2, 0.0], [-0.43, -0.17, 0.88, 0.0], [-0.05, 0.1, 9.0144, 1.0]];
    assert_eq!(cam.view, view);
    let proj = [
        [-10.799999237060547, -1.2000000476837158, -0.4200420081615448, -0.41999998688697815],
        [-0.6000000238418579, 11.760000228881836, 0.20002000033855438, 0.20000000298023224],
        [-5.159999847412109, -2.0399999619530273, 0.8800880312919617, 0.8799999952316284],
        [-0.6000000238418579, 1.2000000476837158, 9.00529956817627, 9.014399528503418],
    ];
    for (i, (got_row, want_row)) in cam.proj.iter().zip(&proj).enumerate() {
        for (j, (&got, &want)) in got_row.iter().zip(want_row).enumerate() {
            // One f32 rounding of a two-term sum: torch may sum in another order.
            let want = want as f32;
            assert!((got - want).abs() <= want.abs() * 2e-7, "proj[{i}][{j}] {got} vs {want}");
        }
    }
    assert_eq!(cam.tan_fov, [1.0 / 12.0; 2]);
    assert_eq!(cam.focal_px, [3072.0; 2]);
}

#[test]
fn worked_example_grid_corners_project_to_the_image_corners() {
    // Spec 3.3: plane points C + d R (u/12, v/12, 1) with C = -R T, d = |C . R(0,0,1)|, for the frontal camera.
    let cam = SplatCamera::from_transform(&FRONTAL, 12.0, 512, 512);
    let rot = |v: [f64; 3]| -> [f64; 3] { std::array::from_fn(|i| (0..3).map(|k| FRONTAL[i][k] as f64 * v[k]).sum()) };
    let t = [FRONTAL[0][3] as f64, FRONTAL[1][3] as f64, FRONTAL[2][3] as f64];
    let rt = rot(t);
    let centre = [-rt[0], -rt[1], -rt[2]];
    let dir = rot([0.0, 0.0, 1.0]);
    let dist = (0..3).map(|k| centre[k] * dir[k]).sum::<f64>().abs();
    let point = |u: f64, v: f64| -> [f32; 3] {
        let ray = rot([u / 12.0, v / 12.0, 1.0]);
        std::array::from_fn(|k| (centre[k] + dist * ray[k]) as f32)
    };
    for ((u, v), want) in [((1.0, 1.0), [-0.5, -0.5]), ((-1.0, 1.0), [511.5, -0.5]), ((-1.0, -1.0), [511.5, 511.5])] {
        let got = cam.project_point(point(u, v)).expect("in front of the camera");
        // f32 rounding of world coordinates near 0.75 and of the 3072 px focal: about 1e-4 px.
        assert!((got[0] - want[0]).abs() < 1e-3 && (got[1] - want[1]).abs() < 1e-3, "(u, v) = ({u}, {v}): {got:?}");
    }
    assert_eq!(cam.project_point([0.0, 0.0, 0.0]), Some([255.5, 255.5]));
    assert_eq!(cam.project_point([0.0, 0.0, 9.5]), None, "behind the camera");
}

/// Standard rotation matrix of a (w, x, y, z) quaternion, not normalised, in f64.
fn rotation64(q: [f32; 4]) -> [[f64; 3]; 3] {
    let [r, x, y, z] = q.map(|v| v as f64);
    [
        [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - r * z), 2.0 * (x * z + r * y)],
        [2.0 * (x * y + r * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - r * x)],
        [2.0 * (x * z - r * y), 2.0 * (y * z + r * x), 1.0 - 2.0 * (x * x + y * y)],
    ]
}

fn mat64(a: &[Vec<f64>], b: &[Vec<f64>]) -> Vec<Vec<f64>> {
    (0..a.len()).map(|i| (0..b[0].len()).map(|j| (0..b.len()).map(|k| a[i][k] * b[k][j]).sum()).collect()).collect()
}

fn transpose64(a: &[Vec<f64>]) -> Vec<Vec<f64>> {
    (0..a[0].len()).map(|j| a.iter().map(|row| row[j]).collect()).collect()
}

#[test]
fn projected_covariance_matches_the_textbook_ewa_formula_in_f64() {
    let cam = SplatCamera::from_transform(&oblique(), 12.0, 80, 48);
    let u = seeded(7, 400 * 10);
    for g in u.chunks(10) {
        let mean = [g[0] * 0.7, g[1] * 0.7, g[2] * 0.7];
        let scale = [0.01 + 0.05 * g[3].abs(), 0.01 + 0.05 * g[4].abs(), 0.01 + 0.05 * g[5].abs()];
        let q = [g[6], g[7], g[8], g[9]];
        let got = cov2d(cam.to_view(mean), &cam, &cov3d(scale, q));

        // Sigma = R S^2 R^T; Sigma' = J W Sigma W^T J^T + 0.3 I with W the view rotation (column form).
        let r = rotation64(q);
        let rs: Vec<Vec<f64>> = (0..3).map(|i| (0..3).map(|j| r[i][j] * (scale[j] as f64).powi(2)).collect()).collect();
        let rows: Vec<Vec<f64>> = r.iter().map(|row| row.to_vec()).collect();
        let sigma = mat64(&rs, &transpose64(&rows));
        let w: Vec<Vec<f64>> = (0..3).map(|i| (0..3).map(|j| cam.view[j][i] as f64).collect()).collect();
        let v = cam.to_view(mean).map(|c| c as f64);
        let lim = 1.3 * cam.tan_fov[0] as f64;
        let (x, y, z) = ((v[0] / v[2]).clamp(-lim, lim) * v[2], (v[1] / v[2]).clamp(-lim, lim) * v[2], v[2]);
        let (fx, fy) = (cam.focal_px[0] as f64, cam.focal_px[1] as f64);
        let j = vec![vec![fx / z, 0.0, -fx * x / (z * z)], vec![0.0, fy / z, -fy * y / (z * z)]];
        let jw = mat64(&j, &w);
        let want = mat64(&mat64(&jw, &sigma), &transpose64(&jw));
        let want = [want[0][0] + 0.3, want[0][1], want[1][1] + 0.3];
        // f32 chains of three 3x3 products: errors of a few ulp of the largest entry (the trace bounds them).
        let scale_ref = want[0].abs() + want[2].abs();
        for k in 0..3 {
            assert!((got[k] as f64 - want[k]).abs() <= 2e-6 * scale_ref, "entry {k}: {} vs {}", got[k], want[k]);
        }
    }
}

#[test]
fn short_quaternions_are_used_unnormalised() {
    // Quirk 2: a quaternion of norm 0.03 gives R close to the identity, whatever its direction,
    // so the covariance stays close to diag(s^2) (normalising it would rotate the Gaussian by 90 degrees).
    let s = [0.01f32, 0.02, 0.04];
    let q = [0.0f32, 0.0, 0.0, 0.03]; // normalised: 180 degrees about z
    let c = cov3d(s, q);
    let r = rotation64(q);
    for (k, (i, j)) in [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)].into_iter().enumerate() {
        let want: f64 = (0..3).map(|m| r[i][m] * r[j][m] * (s[m] as f64).powi(2)).sum();
        assert!((c[k] as f64 - want).abs() < 1e-9, "cov3d[{k}] {} vs {want}", c[k]);
    }
    assert!((c[0] - 1e-4).abs() < 1e-6 && (c[5] - 1.6e-3).abs() < 3e-5, "{c:?}");
    let q90 = [0.0f32, 0.0, 0.0, 1.0];
    assert!((cov3d(s, q90)[0] - 1e-4).abs() < 1e-9, "a unit quaternion is an exact rotation");
}

#[test]
fn tile_rectangles_follow_get_rect_truncation_and_clamping() {
    let grid = (4, 3);
    let rect = |x0, y0, x1, y1| TileRect { x0, y0, x1, y1 };
    // (20.5 - 4) / 16 = 1.03 -> 1; (20.5 + 4 + 15) / 16 = 2.47 -> 2; y1 = 66.9 / 16 = 4.18 -> 4, clamped to 3.
    assert_eq!(tile_rect(20.5, 47.9, 4, grid), rect(1, 2, 2, 3));
    // Left of the image: the upper bound truncates to 0, so no tile (the Gaussian is culled).
    assert_eq!(tile_rect(-5.0, 10.0, 3, grid).count(), 0);
    // -20 / 16 = -1.25 truncates toward zero to -1, then clamps to 0.
    assert_eq!(tile_rect(-4.0, -4.0, 16, grid), rect(0, 0, 1, 1));
    assert_eq!(tile_rect(30.0, 20.0, i32::MAX, grid), rect(0, 0, 4, 3));
    assert_eq!(tile_rect(f32::NAN, 20.0, 5, grid).count(), 0);
    // Grids wider than a u16 can count are clamped (the splat refuses such cameras before projecting).
    assert_eq!(tile_rect(30.0, 20.0, i32::MAX, (100_000, 3)), rect(0, 0, 65_535, 3));
}

#[test]
fn exp_is_within_2_ulp_like_cuda_expf_and_exact_at_zero() {
    assert_eq!(exp(0.0), 1.0);
    assert_eq!(exp(-0.0), 1.0);
    assert_eq!(exp(-200.0), 0.0);
    assert_eq!(exp(f32::NEG_INFINITY), 0.0);
    let mut worst = 0f64;
    let steps = 200_000;
    for k in 0..=steps {
        let x = -104.0 * k as f32 / steps as f32;
        let want = (x as f64).exp();
        let got = exp(x) as f64;
        // One ulp of the true value; below f32's normal range the spacing is fixed at 2^-149.
        let ulp = if want < f32::MIN_POSITIVE as f64 { 2f64.powi(-149) } else { 2f64.powi(want.log2().floor() as i32 - 23) };
        worst = worst.max((got - want).abs() / ulp);
    }
    assert!(worst <= 2.0, "worst error {worst} ulp");
}

#[test]
#[should_panic(expected = "tiles on a side")]
fn an_image_wider_than_the_tile_rectangles_can_address_is_refused() {
    use crate::splat::{splat, SplatScratch};
    let w = super::project::MAX_TILES * super::project::BLOCK + 1;
    let cam = SplatCamera::from_transform(&super::tests::FRONTAL, 12.0, w, 1);
    let mut out = vec![0f32; w];
    splat(&super::tests::Scene::random(3, 10, 1).set(), &cam, &[0.0], &mut out, &mut SplatScratch::new());
}
