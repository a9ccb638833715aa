//! A head-like mesh with FLAME 2020's exact counts (5,023 vertices, 9,976 triangles), its five joints,
//! joint regressor and skinning weights. FLAME metres, y up, the face looking toward +z.
//!
//! Topology: a UV sphere open at the bottom (the neck) with 60 segments and 74 rings below a top pole
//! (4,441 vertices, 60 + 2*60*73 = 8,820 triangles), then two closed eyeball UV spheres with their pole
//! axis along +z (the front pole is the pupil), 17 rings of 17 segments (291 vertices, 578 triangles
//! each). 4,441 + 582 = 5,023 and 8,820 + 1,156 = 9,976, as FLAME (whose eyeballs also come last).

pub const SEGMENTS: usize = 60;
pub const RINGS: usize = 74;
pub const EYE_RINGS: usize = 17;
pub const EYE_SEGMENTS: usize = 17;
pub const HEAD_VERTICES: usize = SEGMENTS * RINGS + 1;
pub const EYE_VERTICES: usize = EYE_RINGS * EYE_SEGMENTS + 2;
pub const VERTICES: usize = HEAD_VERTICES + 2 * EYE_VERTICES;
pub const HEAD_FACES: usize = SEGMENTS * (2 * RINGS - 1);
pub const FACES: usize = HEAD_FACES + 2 * 2 * EYE_RINGS * EYE_SEGMENTS;
pub const JOINTS: usize = 5;
/// FLAME's kinematic tree: root, neck, jaw, left eye, right eye.
pub const PARENTS: [i64; JOINTS] = [-1, 0, 1, 1, 1];

/// Centre and half-extents of the skull ellipsoid: 15 cm wide, 21 cm tall, 19 cm deep.
pub const CENTRE: [f32; 3] = [0.0, 0.015, 0.0];
const RADII: [f32; 3] = [0.075, 0.105, 0.095];
/// The sphere stops at 155 degrees from the top: the neck opening.
const THETA_MAX: f32 = 0.86 * std::f32::consts::PI;
const EYE_RADIUS: f32 = 0.0125;
/// Eye centres: 6.2 cm apart, 3 cm above the skull centre's height.
const EYE_X: f32 = 0.031;
const EYE_Y: f32 = 0.03;

/// Hermite step from 0 at `e0` to 1 at `e1` (either order).
pub fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

fn gauss(d2: f32, sigma: f32) -> f32 {
    (-d2 / (sigma * sigma)).exp()
}

/// The mesh and rig before blendshapes.
pub struct HeadMesh {
    /// `[VERTICES, 3]`.
    pub vertices: Vec<f32>,
    /// `[FACES, 3]`, counter-clockwise seen from outside.
    pub faces: Vec<i64>,
    /// `[JOINTS, 3]` rest joint positions (what `j_regressor` gives on `vertices`).
    pub joints: [[f32; 3]; JOINTS],
    /// `[JOINTS, VERTICES]`, rows non-negative and summing to one.
    pub j_regressor: Vec<f32>,
    /// `[VERTICES, JOINTS]`, rows non-negative and summing to one.
    pub weights: Vec<f32>,
}

/// Surface depth of the bare ellipsoid at (x, y), for placing the eyes.
fn ellipsoid_z(x: f32, y: f32) -> f32 {
    let u = 1.0 - (x / RADII[0]).powi(2) - ((y - CENTRE[1]) / RADII[1]).powi(2);
    RADII[2] * u.max(0.0).sqrt()
}

/// Eye centres: sunk 1 cm under the skull surface so the front 2.5 mm of the eyeball shows.
pub fn eye_centre(side: f32) -> [f32; 3] {
    let x = side * EYE_X;
    [x, EYE_Y, ellipsoid_z(x, EYE_Y) - 0.010]
}

/// One skull vertex: ellipsoid point, a narrower neck below the jaw, and facial relief in z only (so
/// every ring keeps one height, which the joint regressor relies on).
fn head_vertex(theta: f32, phi: f32) -> [f32; 3] {
    let (st, ct) = theta.sin_cos();
    let (sp, cp) = phi.sin_cos();
    let y = CENTRE[1] + RADII[1] * ct;
    let neck = smoothstep(0.62 * std::f32::consts::PI, THETA_MAX, theta);
    let rx = (1.0 - neck) * RADII[0] * st + neck * 0.055;
    let rz = (1.0 - neck) * RADII[2] * st + neck * 0.05;
    let x = CENTRE[0] + rx * sp;
    let mut z = CENTRE[2] + rz * cp - neck * 0.01;
    let front = smoothstep(0.0, 0.03, z);
    let mut relief = 0.018 * gauss(x * x / 0.36 + y * y / 1.6, 0.015); // nose
    relief += 0.006 * gauss((y - 0.047).powi(2), 0.009) * smoothstep(0.06, 0.03, x.abs()); // brow ridge
    relief += 0.008 * gauss(x * x / 2.0 + (y + 0.066).powi(2), 0.013); // chin
    relief -= 0.003 * gauss(x * x / 6.0 + (y + 0.03).powi(2) * 4.0, 0.012); // mouth line
    for side in [-1.0, 1.0] {
        relief -= 0.005 * gauss((x - side * EYE_X).powi(2) + (y - EYE_Y).powi(2), 0.016);
        // eye socket
    }
    z += front * relief;
    [x, y, z]
}

fn head_index(ring: usize, seg: usize) -> i64 {
    (1 + (ring - 1) * SEGMENTS + seg % SEGMENTS) as i64
}

fn push_quad_strip(faces: &mut Vec<i64>, upper: impl Fn(usize) -> i64, lower: impl Fn(usize) -> i64, n: usize) {
    for j in 0..n {
        let (a, b, c, d) = (upper(j), upper(j + 1), lower(j), lower(j + 1));
        faces.extend_from_slice(&[a, c, d, a, d, b]);
    }
}

fn eyeball(vertices: &mut Vec<f32>, faces: &mut Vec<i64>, centre: [f32; 3]) {
    let base = (vertices.len() / 3) as i64;
    let pi = std::f32::consts::PI;
    let mut push = |d: [f32; 3]| vertices.extend((0..3).map(|i| centre[i] + EYE_RADIUS * d[i]));
    push([0.0, 0.0, 1.0]);
    for k in 1..=EYE_RINGS {
        let a = pi * k as f32 / (EYE_RINGS + 1) as f32;
        for m in 0..EYE_SEGMENTS {
            let b = 2.0 * pi * m as f32 / EYE_SEGMENTS as f32;
            push([a.sin() * b.cos(), a.sin() * b.sin(), a.cos()]);
        }
    }
    push([0.0, 0.0, -1.0]);
    let ring = |k: usize| move |m: usize| base + 1 + ((k - 1) * EYE_SEGMENTS + m % EYE_SEGMENTS) as i64;
    let back = base + (EYE_VERTICES - 1) as i64;
    for m in 0..EYE_SEGMENTS {
        faces.extend_from_slice(&[base, ring(1)(m), ring(1)(m + 1)]);
    }
    for k in 1..EYE_RINGS {
        push_quad_strip(faces, ring(k), ring(k + 1), EYE_SEGMENTS);
    }
    for m in 0..EYE_SEGMENTS {
        faces.extend_from_slice(&[back, ring(EYE_RINGS)(m + 1), ring(EYE_RINGS)(m)]);
    }
}

/// Regressor weights putting a point of the symmetry plane (x = 0) between two rings' front and back
/// vertices (segment 0 looks forward, segment SEGMENTS/2 backward): four non-negative weights.
fn regress_between_rings(v: &[f32], target: [f32; 3]) -> Vec<(usize, f32)> {
    let ring_y = |r: usize| v[3 * head_index(r, 0) as usize + 1];
    let r1 = (1..RINGS).find(|&r| ring_y(r + 1) <= target[1]).unwrap_or(RINGS - 1);
    let ty = ((ring_y(r1) - target[1]) / (ring_y(r1) - ring_y(r1 + 1))).clamp(0.0, 1.0);
    let mut out = Vec::new();
    for (r, wr) in [(r1, 1.0 - ty), (r1 + 1, ty)] {
        let (f, b) = (head_index(r, 0) as usize, head_index(r, SEGMENTS / 2) as usize);
        let tz = ((target[2] - v[3 * b + 2]) / (v[3 * f + 2] - v[3 * b + 2])).clamp(0.0, 1.0);
        out.push((f, wr * tz));
        out.push((b, wr * (1.0 - tz)));
    }
    out
}

/// Builds the template mesh and its rig.
pub fn build() -> HeadMesh {
    let pi = std::f32::consts::PI;
    let mut v = Vec::with_capacity(3 * VERTICES);
    v.extend_from_slice(&[CENTRE[0], CENTRE[1] + RADII[1], CENTRE[2]]);
    for r in 1..=RINGS {
        let theta = THETA_MAX * r as f32 / RINGS as f32;
        for s in 0..SEGMENTS {
            v.extend_from_slice(&head_vertex(theta, 2.0 * pi * s as f32 / SEGMENTS as f32));
        }
    }
    let mut faces = Vec::with_capacity(3 * FACES);
    for s in 0..SEGMENTS {
        faces.extend_from_slice(&[0, head_index(1, s), head_index(1, s + 1)]);
    }
    for r in 1..RINGS {
        push_quad_strip(&mut faces, |s| head_index(r, s), |s| head_index(r + 1, s), SEGMENTS);
    }
    let eyes = [eye_centre(1.0), eye_centre(-1.0)];
    for centre in eyes {
        eyeball(&mut v, &mut faces, centre);
    }

    let joints = [[0.0, -0.075, -0.01], [0.0, -0.045, -0.01], [0.0, -0.02, 0.01], eyes[0], eyes[1]];
    let mut j_regressor = vec![0f32; JOINTS * VERTICES];
    for (j, &target) in joints.iter().enumerate().take(3) {
        for (i, w) in regress_between_rings(&v, target) {
            j_regressor[j * VERTICES + i] += w;
        }
    }
    for e in 0..2 {
        let start = HEAD_VERTICES + e * EYE_VERTICES;
        for i in start..start + EYE_VERTICES {
            j_regressor[(3 + e) * VERTICES + i] = 1.0 / EYE_VERTICES as f32;
        }
    }
    let mut weights = vec![0f32; VERTICES * JOINTS];
    for i in 0..VERTICES {
        let w = &mut weights[i * JOINTS..(i + 1) * JOINTS];
        if i >= HEAD_VERTICES {
            w[3 + (i - HEAD_VERTICES) / EYE_VERTICES] = 1.0;
            continue;
        }
        let (y, z) = (v[3 * i + 1], v[3 * i + 2]);
        let root = smoothstep(-0.06, -0.08, y);
        // The jaw carries the lower lip, chin and jaw line: below the mouth, in front of the ears.
        let jaw = smoothstep(-0.026, -0.036, y) * smoothstep(-0.02, 0.04, z) * (1.0 - root);
        w[0] = root;
        w[2] = jaw;
        w[1] = 1.0 - root - jaw;
    }
    let mut rest = [[0f32; 3]; JOINTS];
    for (j, joint) in rest.iter_mut().enumerate() {
        for i in 0..VERTICES {
            for c in 0..3 {
                joint[c] += j_regressor[j * VERTICES + i] * v[3 * i + c];
            }
        }
    }
    HeadMesh { vertices: v, faces, joints: rest, j_regressor, weights }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_match_flame_2020() {
        let m = build();
        assert_eq!((VERTICES, FACES), (5023, 9976));
        assert_eq!(m.vertices.len(), 3 * 5023);
        assert_eq!(m.faces.len(), 3 * 9976);
        assert!(m.faces.iter().all(|&f| (0..5023).contains(&f)));
    }

    #[test]
    fn every_edge_is_shared_by_two_faces_except_the_neck_rim() {
        let m = build();
        let mut edges = std::collections::HashMap::new();
        let mut directed = std::collections::HashSet::new();
        for f in m.faces.chunks_exact(3) {
            for (a, b) in [(f[0], f[1]), (f[1], f[2]), (f[2], f[0])] {
                *edges.entry((a.min(b), a.max(b))).or_insert(0) += 1;
                // A consistently oriented surface uses each directed edge once.
                assert!(directed.insert((a, b)), "directed edge {a}->{b} used twice: inconsistent winding");
            }
        }
        let open = edges.values().filter(|&&n| n == 1).count();
        assert!(edges.values().all(|&n| n == 1 || n == 2));
        assert_eq!(open, SEGMENTS, "only the neck rim is open");
    }

    #[test]
    fn faces_point_outward() {
        let m = build();
        let v = |i: i64| [m.vertices[3 * i as usize], m.vertices[3 * i as usize + 1], m.vertices[3 * i as usize + 2]];
        let mut outward = 0;
        for (n, f) in m.faces.chunks_exact(3).enumerate() {
            let (a, b, c) = (v(f[0]), v(f[1]), v(f[2]));
            let e1 = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
            let e2 = [c[0] - a[0], c[1] - a[1], c[2] - a[2]];
            let normal = [e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0]];
            let eye_faces = (FACES - HEAD_FACES) / 2;
            let centre = match n {
                n if n < HEAD_FACES => CENTRE,
                n if n < HEAD_FACES + eye_faces => eye_centre(1.0),
                _ => eye_centre(-1.0),
            };
            let d: f32 = (0..3).map(|i| normal[i] * ((a[i] + b[i] + c[i]) / 3.0 - centre[i])).sum();
            outward += (d > 0.0) as usize;
        }
        assert!(outward as f32 > 0.98 * FACES as f32, "{outward} of {FACES} faces point outward");
    }

    #[test]
    fn regressor_and_weights_are_convex_and_joints_land_where_placed() {
        let m = build();
        for j in 0..JOINTS {
            let row = &m.j_regressor[j * VERTICES..(j + 1) * VERTICES];
            assert!(row.iter().all(|&w| w >= 0.0));
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4, "regressor row {j}");
        }
        for row in m.weights.chunks_exact(JOINTS) {
            assert!(row.iter().all(|&w| w >= 0.0) && (row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
        // Neck below the jaw, jaw below and in front of the neck, eyes high and in front.
        let [root, neck, jaw, le, re] = m.joints;
        assert!(root[1] < neck[1] && neck[1] < jaw[1] && jaw[2] > neck[2]);
        assert!((jaw[1] + 0.02).abs() < 1e-3 && (jaw[2] - 0.01).abs() < 1e-3, "jaw at {jaw:?}");
        assert!(le[0] > 0.02 && re[0] < -0.02 && le[2] > 0.05 && le[1] > jaw[1]);
        let extent = |c: usize| {
            let vals = m.vertices.iter().skip(c).step_by(3);
            vals.clone().fold(f32::MIN, |a, &b| a.max(b)) - vals.fold(f32::MAX, |a, &b| a.min(b))
        };
        for c in 0..3 {
            assert!((0.14..0.26).contains(&extent(c)), "extent along axis {c}: {}", extent(c));
        }
    }
}
