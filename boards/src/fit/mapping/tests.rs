use super::*;

#[test]
fn every_flame_landmark_averages_valid_distinct_mediapipe_points() {
    for (i, idx) in MEDIAPIPE_TO_FLAME.iter().enumerate() {
        assert!(!idx.is_empty(), "landmark {i} has no MediaPipe point");
        assert!(idx.iter().all(|&m| (m as usize) < MESH_POINTS), "landmark {i}: {idx:?}");
        let mut sorted = idx.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), idx.len(), "landmark {i} repeats a point: {idx:?}");
    }
}

#[test]
fn mirror_is_an_involution_that_swaps_the_two_sides() {
    for i in 0..FLAME_LANDMARKS {
        assert_eq!(mirror(mirror(i)), i, "point {i}");
    }
    assert_eq!((mirror(0), mirror(36), mirror(48), mirror(60), mirror(68)), (16, 45, 54, 64, 69));
}

#[test]
fn jaw_contour_is_weighted_low_and_the_rest_fully() {
    let w = default_weights();
    assert!(w[..JAW_CONTOUR].iter().all(|&x| x == 0.1));
    assert!(w[JAW_CONTOUR..].iter().all(|&x| x == 1.0));
}

#[test]
fn flame_points_average_the_listed_points_and_refuse_a_short_mesh() {
    let points: Vec<[f32; 3]> = (0..MESH_POINTS).map(|i| [i as f32, 2.0 * i as f32, 0.0]).collect();
    let lm = FaceLandmarks { points, width: 512, height: 512, presence: 1.0 };
    let out = flame_points(&lm).expect("468 points");
    assert_eq!(out[8], [152.0, 304.0]);
    assert_eq!(out[2], [(93.0 + 132.0) / 2.0, 93.0 + 132.0]);
    let ring_mean = RIGHT_EYE_RING.iter().map(|&m| m as f64).sum::<f64>() / 16.0;
    assert!((out[68][0] - ring_mean).abs() < 1e-12);
    let short = FaceLandmarks { points: vec![[0.0; 3]; 10], width: 512, height: 512, presence: 1.0 };
    assert!(flame_points(&short).is_none());
}

/// MediaPipe's canonical face model (fetched by scripts/fetch-assets.sh, not in git): 468 (x, y, z) in cm.
fn canonical_mesh() -> Option<Vec<[f64; 3]>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/fetched/geometry_pipeline_metadata_landmarks.binarypb");
    let bytes = std::fs::read(&path).ok()?;
    // Field 1 (Mesh3d) -> field 3: repeated fixed32 floats, 5 per vertex (x, y, z, u, v), not packed.
    let mesh = proto_fields(&bytes).into_iter().find(|(f, _)| *f == 1)?.1;
    let floats: Vec<f64> = proto_fields(mesh)
        .into_iter()
        .filter(|(f, v)| *f == 3 && v.len() == 4)
        .map(|(_, v)| f32::from_le_bytes([v[0], v[1], v[2], v[3]]) as f64)
        .collect();
    (floats.len() == 5 * MESH_POINTS).then(|| floats.chunks_exact(5).map(|c| [c[0], c[1], c[2]]).collect())
}

/// (field number, payload) of each length-delimited or fixed32 field of a protobuf message; varints are
/// skipped. Enough for the canonical-mesh file, whose layout real-assets.md section 4 gives.
fn proto_fields(b: &[u8]) -> Vec<(u64, &[u8])> {
    let varint = |i: &mut usize| -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let c = *b.get(*i)?;
            *i += 1;
            v |= ((c & 0x7f) as u64) << shift;
            if c < 0x80 {
                return Some(v);
            }
        }
        None
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let Some(key) = varint(&mut i) else { break };
        match key & 7 {
            0 => {
                if varint(&mut i).is_none() {
                    break;
                }
            }
            2 => {
                let Some(n) = varint(&mut i) else { break };
                let Some(v) = b.get(i..i + n as usize) else { break };
                out.push((key >> 3, v));
                i += n as usize;
            }
            5 => {
                let Some(v) = b.get(i..i + 4) else { break };
                out.push((key >> 3, v));
                i += 4;
            }
            _ => break,
        }
    }
    out
}

#[test]
fn on_the_canonical_mesh_the_table_has_the_ibug_layout() {
    let Some(v) = canonical_mesh() else {
        eprintln!("skipped: assets/fetched/geometry_pipeline_metadata_landmarks.binarypb missing (scripts/fetch-assets.sh)");
        return;
    };
    let p: Vec<[f64; 3]> = MEDIAPIPE_TO_FLAME
        .iter()
        .map(|idx| {
            let n = idx.len() as f64;
            idx.iter().fold([0.0; 3], |a, &m| {
                let q = v[m as usize];
                [a[0] + q[0] / n, a[1] + q[1] / n, a[2] + q[2] / n]
            })
        })
        .collect();
    // The canonical face is symmetric: mirrored points agree to the file's float precision (1e-5 cm).
    for i in 0..FLAME_LANDMARKS {
        let (a, b) = (p[i], p[mirror(i)]);
        assert!((a[0] + b[0]).abs() < 1e-4 && (a[1] - b[1]).abs() < 1e-4, "point {i} {a:?} vs mirror {b:?}");
    }
    let (x, y) = (|i: usize| p[i][0], |i: usize| p[i][1]);
    // Subject's right (points 0-8, 17-21, 36-41, 48) at negative x, left-to-right order along each contour.
    assert!(x(36) < x(37) && x(37) < x(38) && x(38) < x(39) && x(39) < 0.0);
    assert!(x(17) < x(18) && x(18) < x(19) && x(19) < x(20) && x(20) < x(21));
    assert!((0..8).all(|i| x(i) < x(i + 1)) && (0..8).all(|i| y(i) > y(i + 1)), "jaw runs down to the chin");
    assert!((48..51).all(|i| x(i) < x(i + 1)) && (27..30).all(|i| y(i) > y(i + 1)));
    // Brows above eyes above the nose tip above the mouth above the chin; pupils inside the eye corners.
    assert!(y(19) > y(37) && y(37) > y(30) && y(30) > y(51) && y(51) > y(57) && y(57) > y(8));
    assert!(x(36) < x(68) && x(68) < x(39) && (y(68) - (y(37) + y(41)) / 2.0).abs() < 0.2);
    // Inner lips inside the outer lips; the upper lid above the lower.
    assert!(y(62) < y(51) && y(66) > y(57) && y(37) > y(41) && y(43) > y(47));
}
