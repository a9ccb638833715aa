//! Source-camera geometry: the lifting plane (`build_points_planes` in the official loader), the harmonic
//! direction encoding (PyTorch3D `HarmonicEmbedding`) and orbit cameras (PyTorch3D `look_at_view_transform`).
//!
//! A `Transform` is `[R | T]` in PyTorch3D's row-vector convention (`x_view = x_world . R + T`), so the camera
//! centre is `-R T` and its forward axis in world coordinates is R's third column.

use crate::config::ModelConfig;
use crate::types::Transform;

/// `torch.linspace(start, end, steps)` in f32 with PyTorch's CPU rule: the first half counts up from
/// `start`, the second half down from `end`, so both ends are exact.
pub fn linspace(start: f32, end: f32, steps: usize) -> Vec<f32> {
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let halfway = steps / 2;
    (0..steps).map(|i| if i < halfway { start + step * i as f32 } else { end - step * (steps - i - 1) as f32 }).collect()
}

/// `R v` (column form) for the rotation block of a transform.
fn rotate(t: &Transform, v: [f32; 3]) -> [f32; 3] {
    let mut out = [0f32; 3];
    for (i, o) in out.iter_mut().enumerate() {
        *o = t[i][0] * v[0] + t[i][1] * v[1] + t[i][2] * v[2];
    }
    out
}

/// The lifting plane of a source camera: `plane_size`^2 points `[P*P, 3]` (row-major grid, row i has
/// v = linspace(1,-1)[i], column j has u = linspace(1,-1)[j]) on the plane through the world origin that is
/// perpendicular to the camera's forward axis, spanning the full field of view; and that forward axis `[3]`.
pub fn lifting_plane(cfg: &ModelConfig, transform: &Transform) -> (Vec<f32>, [f32; 3]) {
    let p = cfg.plane_size;
    let lin = linspace(1.0, -1.0, p);
    let dir = rotate(transform, [0.0, 0.0, 1.0]);
    let rt = rotate(transform, [transform[0][3], transform[1][3], transform[2][3]]);
    let origin = [-rt[0], -rt[1], -rt[2]];
    let distance = (origin[0] * dir[0] + origin[1] * dir[1] + origin[2] * dir[2]).abs();
    let mut points = Vec::with_capacity(p * p * 3);
    for v in &lin {
        for u in &lin {
            let ray = rotate(transform, [u / cfg.focal, v / cfg.focal, 1.0]);
            points.extend((0..3).map(|k| origin[k] + distance * ray[k]));
        }
    }
    (points, dir)
}

/// PyTorch3D `HarmonicEmbedding(freqs)` of a direction: `[sin block, cos block, d]`, each block indexed
/// `c * freqs + f` with frequency 2^f; the cosine is computed as `sin(a + pi/2)` exactly as PyTorch3D does.
/// Length `3 * (2 * freqs + 1)`.
pub fn harmonic_encoding(dir: &[f32; 3], freqs: usize) -> Vec<f32> {
    let args: Vec<f32> = dir.iter().flat_map(|&d| (0..freqs).map(move |f| d * (1u64 << f) as f32)).collect();
    let mut out: Vec<f32> = args.iter().map(|a| a.sin()).collect();
    out.extend(args.iter().map(|a| (a + std::f32::consts::FRAC_PI_2).sin()));
    out.extend_from_slice(dir);
    out
}

fn normalize(v: [f32; 3]) -> [f32; 3] {
    // F.normalize with PyTorch3D's eps of 1e-5 in look_at_rotation.
    let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt().max(1e-5);
    [v[0] / n, v[1] / n, v[2] / n]
}

fn cross(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

/// A camera orbiting the world origin, as PyTorch3D `look_at_view_transform(distance, elevation, azimuth)`
/// (degrees, up = +y, looking at the origin) used by the official multi-view demo. Azimuth 0 and
/// elevation 0 give the frontal tracked camera `R = diag(-1, 1, -1)`, `T = (0, 0, distance)`.
/// When `distance` is not a positive number the base camera's distance to the origin (`|T|`) is used.
pub fn orbit_transform(base: &Transform, azimuth_deg: f32, elevation_deg: f32, distance: f32) -> Transform {
    let dist = if distance > 0.0 && distance.is_finite() {
        distance
    } else {
        (base[0][3] * base[0][3] + base[1][3] * base[1][3] + base[2][3] * base[2][3]).sqrt()
    };
    let (el, az) = (elevation_deg.to_radians(), azimuth_deg.to_radians());
    let centre = [dist * el.cos() * az.sin(), dist * el.sin(), dist * el.cos() * az.cos()];
    let z = normalize([-centre[0], -centre[1], -centre[2]]);
    let mut x = normalize(cross([0.0, 1.0, 0.0], z));
    let y = normalize(cross(z, x));
    if x.iter().all(|v| v.abs() <= 5e-3) {
        // Looking straight up or down: PyTorch3D rebuilds x from y and z.
        x = normalize(cross(y, z));
    }
    // R's columns are the camera axes in world coordinates; T = -R^T C.
    let mut t = [[0f32; 4]; 3];
    for i in 0..3 {
        t[i][0] = x[i];
        t[i][1] = y[i];
        t[i][2] = z[i];
    }
    for (j, axis) in [x, y, z].iter().enumerate() {
        t[j][3] = -(axis[0] * centre[0] + axis[1] * centre[1] + axis[2] * centre[2]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRONTAL: Transform = [[-1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 9.0144]];

    /// Pixel coordinates of a world point under the render camera of spec section 5 (columns 0 and 1 of
    /// the view negated, pixel centres at integers).
    fn project(cfg: &ModelConfig, t: &Transform, p: &[f32]) -> (f32, f32) {
        let view = |j: usize| p[0] * t[0][j] + p[1] * t[1][j] + p[2] * t[2][j] + t[j][3];
        let (x, y, z) = (-view(0), -view(1), view(2));
        let c = cfg.image_size as f32 / 2.0 - 0.5;
        (cfg.focal_px() * x / z + c, cfg.focal_px() * y / z + c)
    }

    #[test]
    fn linspace_matches_torch_ends_and_midpoint() {
        let l = linspace(1.0, -1.0, 5);
        assert_eq!(l, vec![1.0, 0.5, 0.0, -0.5, -1.0]);
        let l = linspace(1.0, -1.0, 296);
        assert_eq!((l[0], l[295]), (1.0, -1.0));
        assert!((l[1] - (1.0 - 2.0 / 295.0)).abs() < 1e-6);
    }

    #[test]
    fn frontal_plane_matches_the_worked_example() {
        let cfg = ModelConfig::official();
        let (points, dir) = lifting_plane(&cfg, &FRONTAL);
        let p = cfg.plane_size;
        assert_eq!(points.len(), p * p * 3);
        assert_eq!(dir, [0.0, 0.0, -1.0]);
        // Spec 3.3: distance 9.0144 and a span of +-9.0144/12 = +-0.7512 in x and y, all at z = 0.
        let span = 9.0144f32 / 12.0;
        let first = &points[0..3];
        let last = &points[(p * p - 1) * 3..];
        assert!((first[0] + span).abs() < 1e-5 && (first[1] - span).abs() < 1e-5, "{first:?}");
        assert!((last[0] - span).abs() < 1e-5 && (last[1] + span).abs() < 1e-5, "{last:?}");
        assert!(points.chunks(3).all(|q| q[2].abs() < 1e-5));
    }

    #[test]
    fn plane_corners_project_to_the_image_corners() {
        let cfg = ModelConfig::official();
        let (points, _) = lifting_plane(&cfg, &FRONTAL);
        let p = cfg.plane_size;
        let at = |i: usize, j: usize| project(&cfg, &FRONTAL, &points[(i * p + j) * 3..][..3]);
        let (u, v) = at(0, 0);
        assert!((u + 0.5).abs() < 1e-2 && (v + 0.5).abs() < 1e-2, "grid (0,0) at ({u}, {v})");
        let (u, v) = at(0, p - 1);
        assert!((u - 511.5).abs() < 1e-2 && (v + 0.5).abs() < 1e-2, "grid (0,295) at ({u}, {v})");
    }

    #[test]
    fn rotated_camera_plane_passes_through_origin_perpendicular_to_forward_axis() {
        let cfg = ModelConfig::small();
        let t = orbit_transform(&FRONTAL, 30.0, 10.0, 9.0);
        let (points, dir) = lifting_plane(&cfg, &t);
        for q in points.chunks(3) {
            let d = q[0] * dir[0] + q[1] * dir[1] + q[2] * dir[2];
            assert!(d.abs() < 1e-4, "point {q:?} is off the plane by {d}");
        }
    }

    #[test]
    fn harmonic_encoding_matches_hand_values() {
        let d = [0.5f32, -1.0, 0.25];
        let e = harmonic_encoding(&d, 4);
        assert_eq!(e.len(), 27);
        for c in 0..3 {
            for f in 0..4 {
                let a = d[c] as f64 * 2f64.powi(f as i32);
                assert!((e[c * 4 + f] as f64 - a.sin()).abs() < 1e-6, "sin c{c} f{f}");
                assert!((e[12 + c * 4 + f] as f64 - a.cos()).abs() < 1e-6, "cos c{c} f{f}");
            }
        }
        assert_eq!(&e[24..], &d);
        // sin(-1 * 8) by hand: -0.98935825.
        assert!((e[7] - (-0.989_358_25)).abs() < 1e-6);
    }

    #[test]
    fn orbit_at_zero_angles_is_the_frontal_tracked_camera() {
        let t = orbit_transform(&FRONTAL, 0.0, 0.0, 9.0144);
        for i in 0..3 {
            for j in 0..4 {
                assert!((t[i][j] - FRONTAL[i][j]).abs() < 1e-6, "entry ({i},{j}): {} vs {}", t[i][j], FRONTAL[i][j]);
            }
        }
        // A non-positive distance falls back to the base camera's.
        assert_eq!(orbit_transform(&FRONTAL, 0.0, 0.0, 0.0), t);
    }

    #[test]
    fn orbit_camera_sees_the_origin_at_the_image_centre_from_its_distance() {
        let cfg = ModelConfig::official();
        for (az, el) in [(40.0, 5.0), (-75.0, -20.0), (180.0, 30.0)] {
            let t = orbit_transform(&FRONTAL, az, el, 8.1);
            let (u, v) = project(&cfg, &t, &[0.0, 0.0, 0.0]);
            assert!((u - 255.5).abs() < 1e-3 && (v - 255.5).abs() < 1e-3, "az {az} el {el}: ({u}, {v})");
            let centre_dist = (t[0][3].powi(2) + t[1][3].powi(2) + t[2][3].powi(2)).sqrt();
            assert!((centre_dist - 8.1).abs() < 1e-4);
            // Elevation above the horizon puts the camera at positive world y (camera centre = -R T).
            let cy = -(t[1][0] * t[0][3] + t[1][1] * t[1][3] + t[1][2] * t[2][3]);
            assert_eq!(cy > 0.0, el > 0.0, "az {az} el {el}: centre y {cy}");
        }
    }
}
