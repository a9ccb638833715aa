//! Fixtures in `fixtures/` are written by `fixtures/make_fixtures.py` (numpy pickles as the tracker
//! writes them); the expected values below are that script's formulas.

use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/driving/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn expected_expcode(idx: usize) -> Vec<f32> {
    (0..100).map(|i| ((idx * 1000 + i) as f64 / 1000.0) as f32).collect()
}

fn input_error(r: Result<Vec<DrivingFrame>>) -> (String, String, String, String) {
    match r {
        Err(Error::Input { source_name, frame, field, what }) => (source_name, frame, field, what),
        other => panic!("expected an input error, got {other:?}"),
    }
}

#[test]
fn tracker_pickles_of_every_protocol_decode_in_frame_order() {
    for name in ["tracker_p2.pkl", "tracker_p2_numpy1.pkl", "tracker_p4.pkl", "tracker_p5.pkl"] {
        let frames = parse_tracker_pickle(&fixture(name), name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let keys: Vec<&str> = frames.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(keys, ["clip_1", "clip_2", "clip_10"], "{name}");
        for (f, idx) in frames.iter().zip([1usize, 2, 10]) {
            assert_eq!(f.expcode, expected_expcode(idx), "{name} {}", f.key);
            assert_eq!(f.shapecode.as_ref().map(Vec::len), Some(300));
            assert_eq!(f.posecode[3], (0.05 * idx as f64) as f32, "{name} {} jaw (f64 in clip_1)", f.key);
            assert_eq!(f.eyecode, [(0.01 * idx as f64) as f32; 6]);
            // Row-major [R | T] even where the array was stored in Fortran order (clip_2).
            assert_eq!(f.transform[0][3], (0.01 * idx as f64) as f32, "{name} {} T.x", f.key);
            assert_eq!(f.transform[2][3], 9.0);
            let a = 0.1 * idx as f64;
            assert!((f.transform[0][2] as f64 + a.sin()).abs() < 1e-6, "{name} {} R[0][2]", f.key);
            assert!(f.face);
        }
    }
}

#[test]
fn a_scaled_rotation_is_refused_with_file_frame_and_field() {
    let (source, frame, field, what) = input_error(parse_tracker_pickle(&fixture("bad_rotation.pkl"), "bad_rotation.pkl"));
    assert_eq!((source.as_str(), frame.as_str(), field.as_str()), ("bad_rotation.pkl", "clip_3", "transform_matrix"));
    assert!(what.contains("not a rotation"), "{what}");
}

#[test]
fn nan_and_short_arrays_are_refused() {
    let (_, frame, field, what) = input_error(parse_tracker_pickle(&fixture("nan_expcode.pkl"), "nan.pkl"));
    assert_eq!((frame.as_str(), field.as_str()), ("clip_4", "expcode"));
    assert!(what.contains("value 7"), "{what}");
    let (_, _, field, what) = input_error(parse_tracker_pickle(&fixture("short_expcode.pkl"), "short.pkl"));
    assert_eq!(field, "expcode");
    assert!(what.contains("expected 100") && what.contains("99"), "{what}");
}

#[test]
fn truncated_pickles_fail_without_panicking() {
    let bytes = fixture("tracker_p4.pkl");
    for cut in [0, 1, 10, bytes.len() / 2, bytes.len() - 1] {
        assert!(parse_tracker_pickle(&bytes[..cut], "cut.pkl").is_err(), "cut at {cut}");
    }
}

fn frame(key: &str, jaw: f32) -> DrivingFrame {
    DrivingFrame {
        key: key.into(),
        expcode: (0..100).map(|i| i as f32 * 0.013 - 0.4).collect(),
        posecode: [0.0, 0.0, 0.0, jaw, 0.0, 0.0],
        eyecode: [0.01, -0.02, 0.0, 0.01, -0.02, 0.0],
        transform: [[-1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 9.0144]],
        shapecode: None,
        face: true,
    }
}

#[test]
fn jsonl_round_trips_exactly() {
    let mut frames = vec![frame("a", 0.1), frame("b", 1.0 / 3.0)];
    frames[1].shapecode = Some(vec![0.1; 300]);
    frames[1].face = false;
    let text = to_jsonl(&frames);
    assert_eq!(text.lines().count(), 2);
    assert_eq!(parse_jsonl(&text, "x.jsonl").expect("own output parses"), frames);
}

#[test]
fn jsonl_defaults_key_to_line_number_and_face_to_true() {
    let line = to_jsonl(&[frame("k", 0.2)]).replace("\"key\":\"k\",", "");
    let frames = parse_jsonl(&format!("\n{line}"), "x.jsonl").expect("valid");
    assert_eq!(frames[0].key, "2");
    assert!(frames[0].face);
}

#[test]
fn a_faceless_jsonl_frame_may_repeat_the_previous_parameters() {
    let first = to_jsonl(&[frame("0", 0.25)]);
    let text = format!("{first}{{\"key\":\"1\",\"face\":false}}\n");
    let frames = parse_jsonl(&text, "x.jsonl").expect("valid");
    assert_eq!(frames[1].posecode, frames[0].posecode);
    assert!(!frames[1].face);
    let (_, frame, field, _) = input_error(parse_jsonl("{\"key\":\"z\",\"face\":false}", "x.jsonl"));
    assert_eq!((frame.as_str(), field.as_str()), ("z", "expcode"), "nothing to repeat on the first line");
}

#[test]
fn jsonl_errors_name_the_line_or_field() {
    let (_, at, _, _) = input_error(parse_jsonl("{\"key\":1}\nnot json\n", "x.jsonl"));
    assert!(at == "1" || at == "line 2", "{at}");
    let good = to_jsonl(&[frame("m", 0.0)]);
    let bad = good.replace("\"posecode\":[0,0,0,0,0,0]", "\"posecode\":[0,0,0]");
    let (_, at, field, what) = input_error(parse_jsonl(&bad, "x.jsonl"));
    assert_eq!((at.as_str(), field.as_str()), ("m", "posecode"));
    assert!(what.contains("expected 6"), "{what}");
    let mirrored = good.replace("[0,0,-1,9.0144]", "[0,0,1,9.0144]");
    let (_, _, field, what) = input_error(parse_jsonl(&mirrored, "x.jsonl"));
    assert_eq!(field, "transform_matrix");
    assert!(what.contains("det = -1"), "{what}");
}

#[test]
fn rotation_check_accepts_printed_rotations_and_rejects_shear() {
    let a = 0.3f32;
    let mut t: Transform = [[a.cos(), 0.0, a.sin(), 0.0], [0.0, 1.0, 0.0, 0.0], [-a.sin(), 0.0, a.cos(), 5.0]];
    assert!(check_rotation(&t).is_ok());
    // Five significant digits, as a hand-written file would have: still a rotation.
    t[0][0] = 0.95534;
    assert!(check_rotation(&t).is_ok());
    t[0][1] = 0.01; // shear
    assert!(check_rotation(&t).is_err());
}

#[test]
fn source_params_round_trip_and_validate() {
    let p = SourceParams {
        shapecode: (0..300).map(|i| i as f32 * 1e-3).collect(),
        transform: [[-1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 9.0144]],
    };
    let text = source_params_json(&p);
    assert_eq!(parse_source_params(&text, "s.json").expect("own output parses"), p);
    let short = source_params_json(&SourceParams { shapecode: vec![0.0; 299], ..p });
    match parse_source_params(&short, "s.json") {
        Err(Error::Input { field, what, .. }) => assert!(field == "shapecode" && what.contains("300"), "{field}: {what}"),
        other => panic!("expected a shapecode error, got {other:?}"),
    }
}
