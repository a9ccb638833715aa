//! A synthetic stand-in for a lifted avatar, for benches and timing tests: two `plane x plane` grids of
//! Gaussians on the frontal lifting plane (one pushed away from the camera, one toward it, as the lift
//! does), opaque inside a head-shaped ellipse and nearly transparent outside, plus `vertices` Gaussians on
//! a sphere with short quaternions (quirk 2). Deterministic for a seed.

use crate::testing::seeded;

/// The frontal tracked camera of spec section 3.3.
pub const FRONTAL: [[f32; 4]; 3] = [[-1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 9.0144]];

/// Owned Gaussian attributes (see [`super::GaussianSet::new`] for the layouts).
#[derive(Clone, Debug)]
pub struct SyntheticHead {
    pub means: Vec<f32>,
    pub scales: Vec<f32>,
    pub rotations: Vec<f32>,
    pub opacities: Vec<f32>,
    pub colors: Vec<f32>,
    pub channels: usize,
}

impl SyntheticHead {
    /// `vertices + 2 plane^2` Gaussians with `channels` features; GAGAvatar's sizes are 5,023 and 296.
    pub fn new(vertices: usize, plane: usize, channels: usize, seed: u64) -> Self {
        let n = vertices + 2 * plane * plane;
        let u = seeded(seed, n * 8);
        let mut h = SyntheticHead {
            means: Vec::with_capacity(n * 3),
            scales: Vec::with_capacity(n * 3),
            rotations: Vec::with_capacity(n * 4),
            opacities: Vec::with_capacity(n),
            colors: seeded(seed ^ 0x5EED, n * channels),
            channels,
        };
        for i in 0..vertices {
            let r = &u[i * 8..i * 8 + 8];
            // A point on a sphere of radius 0.5 (a FLAME head times 5 is about 1 unit wide).
            let (theta, z) = (r[0] * std::f32::consts::PI, r[1]);
            let rho = (1.0 - z * z).sqrt();
            h.means.extend([0.5 * rho * theta.cos(), 0.5 * z, 0.5 * rho * theta.sin()]);
            h.scales.extend((2..5).map(|k| 0.006 + 0.004 * r[k]));
            h.rotations.extend((4..8).map(|k| 0.03 * r[k]));
            h.opacities.push(0.75 + 0.25 * r[5]);
        }
        // The plane spans +-9.0144 / 12 in x and y at z = 0; plane 0 moves away (-z), plane 1 toward (+z).
        let span = 9.0144f32 / 12.0;
        for (side, sign) in [(0usize, -1.0f32), (1, 1.0)] {
            for row in 0..plane {
                for col in 0..plane {
                    let i = vertices + (side * plane + row) * plane + col;
                    let r = &u[i * 8..i * 8 + 8];
                    let lin = |k: usize| 1.0 - 2.0 * k as f32 / (plane.max(2) - 1) as f32;
                    let (x, y) = (-span * lin(col), span * lin(row));
                    h.means.extend([x, y, sign * 0.2 * (r[0] + 1.0)]);
                    h.scales.extend((1..4).map(|k| 0.005 + 0.004 * r[k]));
                    let q: Vec<f32> = (4..8).map(|k| r[k] + 0.01).collect();
                    let norm = q.iter().map(|v| v * v).sum::<f32>().sqrt();
                    h.rotations.extend(q.iter().map(|v| v / norm));
                    let inside = (x / 0.45).powi(2) + (y / 0.6).powi(2) < 1.0;
                    h.opacities.push(if inside { 0.6 + 0.4 * r[4].abs() } else { 0.02 * r[5].abs() });
                }
            }
        }
        h
    }

    pub fn set(&self) -> super::GaussianSet<'_> {
        super::GaussianSet::new(&self.means, &self.scales, &self.rotations, &self.opacities, &self.colors, self.channels)
            .expect("synthetic head is consistent by construction")
    }
}
