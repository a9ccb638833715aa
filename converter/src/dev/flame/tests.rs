use gaga_runtime::flame::Flame;
use gaga_runtime::ModelConfig;

use super::*;

fn array<'a>(a: &'a FlameAsset, name: &str) -> (&'a [usize], &'a FlameData) {
    let (_, shape, data) = a.arrays.iter().find(|(n, _, _)| n == name).expect(name);
    (shape, data)
}

fn f32s<'a>(a: &'a FlameAsset, name: &str) -> &'a [f32] {
    match array(a, name).1 {
        FlameData::F32(v) => v,
        FlameData::I64(_) => panic!("{name} is int64"),
    }
}

#[test]
fn asset_has_the_official_keys_shapes_and_dtypes() {
    let a = build(0);
    let want: [(&str, &[usize], bool); 13] = [
        ("flame_model.v_template", &[5023, 3], true),
        ("flame_model.f", &[9976, 3], false),
        ("flame_model.shapedirs", &[5023, 3, 400], true),
        ("flame_model.posedirs", &[5023, 3, 36], true),
        ("flame_model.J_regressor", &[5, 5023], true),
        ("flame_model.kintree_table", &[2, 5], false),
        ("flame_model.weights", &[5023, 5], true),
        ("lmk_embeddings.static_lmk_faces_idx", &[51], false),
        ("lmk_embeddings.static_lmk_bary_coords", &[51, 3], true),
        ("lmk_embeddings.dynamic_lmk_faces_idx", &[79, 17], false),
        ("lmk_embeddings.dynamic_lmk_bary_coords", &[79, 17, 3], true),
        ("lmk_embeddings.full_lmk_faces_idx_with_eye", &[1, 70], false),
        ("lmk_embeddings.full_lmk_bary_coords_with_eye", &[1, 70, 3], true),
    ];
    assert_eq!(a.arrays.len(), want.len());
    for (name, shape, is_f32) in want {
        let (s, data) = array(&a, name);
        assert_eq!(s, shape, "{name}");
        let len = match data {
            FlameData::F32(v) => v.len(),
            FlameData::I64(v) => v.len(),
        };
        assert_eq!(len, shape.iter().product::<usize>(), "{name} length");
        assert_eq!(matches!(data, FlameData::F32(_)), is_f32, "{name} dtype");
    }
    let FlameData::I64(kt) = array(&a, "flame_model.kintree_table").1 else { panic!("kintree dtype") };
    assert_eq!(&kt[..5], &[-1, 0, 1, 1, 1]);
}

#[test]
fn landmarks_index_real_faces_with_convex_barycentrics() {
    let a = build(0);
    for (name, _, data) in &a.arrays {
        match data {
            FlameData::I64(v) if name.contains("faces_idx") => {
                assert!(v.iter().all(|&f| (0..9976).contains(&f)), "{name}");
            }
            FlameData::F32(v) if name.contains("bary") => {
                for b in v.chunks_exact(3) {
                    assert!(b.iter().all(|&x| x > 0.0) && (b.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{name}");
                }
            }
            _ => {}
        }
    }
    let FlameData::I64(full) = array(&a, "lmk_embeddings.full_lmk_faces_idx_with_eye").1 else { panic!("dtype") };
    assert!(full[68] as usize >= HEAD_FACES && full[69] as usize >= HEAD_FACES, "pupils lie on the eyeballs");
    assert!(full[..68].iter().all(|&f| (f as usize) < HEAD_FACES));
}

/// Per-vertex displacement (metres) of `coeffs` applied to bases `first..first + coeffs.len()`.
fn displacement(dirs: &[f32], first: usize, coeffs: &[f32]) -> Vec<f32> {
    (0..VERTICES)
        .map(|i| {
            let d: Vec<f32> =
                (0..3).map(|c| coeffs.iter().enumerate().map(|(k, x)| x * dirs[(i * 3 + c) * 400 + first + k]).sum()).collect();
            (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt()
        })
        .collect()
}

#[test]
fn expressions_of_two_move_the_face_by_millimetres_to_centimetres() {
    let a = build(3);
    let dirs = f32s(&a, "flame_model.shapedirs");
    let mut one = vec![0.0; EXPR_PARAMS];
    one[0] = 2.0;
    let single = displacement(dirs, SHAPE_PARAMS, &one).into_iter().fold(0f32, f32::max);
    assert!((0.005..0.012).contains(&single), "expression 0 at 2 moves the face by {single} m");
    let mut rng = TensorRng::new(11, "coeffs");
    for trial in 0..3 {
        let expr: Vec<f32> = (0..EXPR_PARAMS).map(|_| rng.uniform(0.0, 2.0 / 3f32.sqrt())).collect();
        let d = displacement(dirs, SHAPE_PARAMS, &expr);
        let max = d.iter().fold(0f32, |m, &x| m.max(x));
        let mut face: Vec<f32> = d[..HEAD_VERTICES].iter().copied().filter(|&x| x > 0.0).collect();
        face.sort_by(f32::total_cmp);
        let median = face[face.len() / 2];
        assert!((0.004..0.035).contains(&max), "trial {trial}: max expression displacement {max} m");
        assert!(median > 0.0005, "trial {trial}: median face displacement {median} m");
        assert!(d[HEAD_VERTICES..].iter().all(|&x| x == 0.0), "eyeballs ignore expressions");
        let shape: Vec<f32> = (0..SHAPE_PARAMS).map(|_| rng.uniform(0.0, 2.0 / 3f32.sqrt())).collect();
        let s = displacement(dirs, 0, &shape).into_iter().fold(0f32, f32::max);
        assert!((0.003..0.04).contains(&s), "trial {trial}: max identity displacement {s} m");
    }
}

#[test]
fn bases_are_smooth_along_mesh_edges() {
    // A basis value changes along an edge by at most |gradient| * length: amplitude 6 mm times
    // frequency 80 rad/m plus the mask's slope is under 1 m/m, so 1.0 flags noise, not smooth fields.
    let a = build(5);
    let (v, dirs) = (f32s(&a, "flame_model.v_template"), f32s(&a, "flame_model.shapedirs"));
    let FlameData::I64(faces) = array(&a, "flame_model.f").1 else { panic!("faces dtype") };
    let mut worst = 0f32;
    for f in faces.chunks_exact(3) {
        let (i, j) = (f[0] as usize, f[1] as usize);
        let len = (0..3).map(|c| (v[3 * i + c] - v[3 * j + c]).powi(2)).sum::<f32>().sqrt().max(1e-4);
        for k in (0..400).step_by(7) {
            for c in 0..3 {
                let diff = (dirs[(i * 3 + c) * 400 + k] - dirs[(j * 3 + c) * 400 + k]).abs();
                worst = worst.max(diff / len);
            }
        }
    }
    assert!(worst < 1.0, "steepest basis slope {worst} m per m");
}

#[test]
fn runtime_flame_opens_the_jaw_and_keeps_the_skull_still() {
    let a = build(0);
    let w = a.to_weight_map();
    let cfg = ModelConfig::official();
    let mut flame = Flame::new(&w, &cfg).expect("seeded FLAME loads in the runtime");
    flame.set_identity(&vec![0.0; SHAPE_PARAMS]).expect("identity");
    let (mut rest, mut open) = (vec![0f32; 3 * VERTICES], vec![0f32; 3 * VERTICES]);
    let expr = vec![0.0; EXPR_PARAMS];
    flame.pose(&expr, &[0.0; 6], &[0.0; 6], "rest", &mut rest).expect("rest pose");
    flame.pose(&expr, &[0.0, 0.0, 0.0, 0.3, 0.0, 0.0], &[0.0; 6], "open", &mut open).expect("jaw pose");
    let weights = f32s(&a, "flame_model.weights");
    let moved = |i: usize| (0..3).map(|c| (open[3 * i + c] - rest[3 * i + c]).powi(2)).sum::<f32>().sqrt();
    let chin = (0..HEAD_VERTICES).filter(|&i| weights[i * JOINTS + 2] > 0.9).map(moved).fold(0f32, f32::max);
    let crown = (0..HEAD_VERTICES).filter(|&i| weights[i * JOINTS + 1] > 0.999).map(moved).fold(0f32, f32::max);
    // World units (x5): a 0.3 rad jaw swings the chin ~5 cm x 0.3 = 1.5 cm metric = 7.5 world cm.
    assert!(chin > 0.03, "chin moved {chin} world units");
    assert!(crown < 0.02, "skull moved {crown} world units (pose correctives only)");
}

#[test]
fn file_is_byte_reproducible_for_a_seed() {
    let (x, y) = (build(2).write(Vec::new()).expect("memory"), build(2).write(Vec::new()).expect("memory"));
    assert_eq!(x, y);
    assert_ne!(x, build(3).write(Vec::new()).expect("memory"));
}
