//! The bundled defaults in `assets/defaults/` parse, validate, and are what `gaga dev` generates today
//! (so a change to the script or the formats cannot leave them stale).

use std::path::PathBuf;

use gaga_converter::dev::driver;
use gaga_runtime::driving::{read_driving, read_source_params, to_jsonl};

fn asset(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/defaults").join(name)
}

#[test]
fn bundled_source_params_are_the_frontal_default() {
    let source = read_source_params(&asset("source_params.json")).expect("bundled source parameters are valid");
    assert_eq!(source, driver::frontal_source());
}

#[test]
fn bundled_expressions_are_the_current_scripted_sequence() {
    let frames = read_driving(&asset("expressions.jsonl")).expect("bundled driving frames are valid");
    assert_eq!(frames.len(), 60);
    let regenerated = driver::scripted(60, 0, &driver::frontal_source());
    assert!(
        frames == regenerated,
        "assets/defaults/expressions.jsonl is stale: regenerate it with the command in assets/defaults/README.md"
    );
    let text = std::fs::read_to_string(asset("expressions.jsonl")).expect("readable");
    assert_eq!(text, to_jsonl(&regenerated), "byte-identical to the generator's output");
}
