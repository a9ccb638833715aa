//! End-to-end conversions of the seeded `small` checkpoint and FLAME asset (written by `dev`), read
//! back through `gaga_runtime::model::Model`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gaga_runtime::format::{DType, Reason, Stage};
use gaga_runtime::model::Model;
use gaga_runtime::{Error, ModelConfig, WeightMap, Weights};
use safetensors::tensor::{Dtype, View};

use crate::{convert, dev, ConvertOptions, Keep, Precision};

const SEED: u64 = 7;

struct Inputs {
    dir: PathBuf,
    checkpoint: PathBuf,
    flame: PathBuf,
}

/// The seeded inputs, written once per test process. Directories left by earlier test processes that
/// have exited are removed first (unit tests have no teardown hook).
fn inputs() -> &'static Inputs {
    static INPUTS: OnceLock<Inputs> = OnceLock::new();
    INPUTS.get_or_init(|| {
        let prefix = "gaga-converter-tests-";
        for e in std::fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix(prefix) {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = std::env::temp_dir().join(format!("{prefix}{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let checkpoint = dir.join("small.pt");
        let flame = dir.join("flame.pt");
        dev::write_checkpoint_file(&checkpoint, &ModelConfig::small(), "small", SEED).expect("seeded checkpoint");
        dev::flame::build(SEED).write_file(&flame).expect("seeded FLAME");
        Inputs { dir, checkpoint, flame }
    })
}

/// An output path whose file is removed when the test ends.
struct Out(PathBuf);

impl Drop for Out {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl std::ops::Deref for Out {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

fn out_path(tag: &str) -> Out {
    Out(inputs().dir.join(format!("{tag}.gaga")))
}

fn options(checkpoint: &Path, precision: Precision, out: &Path) -> ConvertOptions {
    ConvertOptions {
        checkpoint: checkpoint.to_path_buf(),
        flame: inputs().flame.clone(),
        output: out.to_path_buf(),
        precision,
        keep: vec![],
        created_by: "converter tests".into(),
    }
}

/// Converts and maps the result; the file is unlinked at once (the map keeps it readable).
fn run(precision: Precision, tag: &str) -> Model {
    let out = out_path(tag);
    convert(&options(&inputs().checkpoint, precision, &out), &mut |_| {}).expect("conversion");
    Model::open(&*out).expect("written model validates")
}

/// Every tensor the file should hold, by runtime name: the seeded checkpoint minus the omitted ones,
/// plus the FLAME arrays.
fn expected() -> WeightMap {
    let mut w = dev::seeded_weights(&ModelConfig::small(), SEED);
    w.tensors.retain(|n, _| !crate::convert::OMIT.iter().any(|(p, _)| gaga_runtime::format::meta::glob_match(p, n)));
    w.tensors.extend(dev::flame::build(SEED).to_weight_map().tensors);
    w
}

#[test]
fn inferred_configuration_is_the_small_preset() {
    let m = run(Precision::Fp32, "config");
    assert_eq!(m.config(), &ModelConfig::small());
}

#[test]
fn fp32_round_trip_reproduces_every_tensor_exactly() {
    let m = run(Precision::Fp32, "fp32");
    let want = expected();
    assert_eq!(m.tensors().len(), want.tensors.len());
    for (name, (shape, values)) in &want.tensors {
        let got = m.f32_shaped(name, shape).expect("present");
        assert!(got[..] == values[..], "{name} differs");
    }
    m.verify().expect("checksums");
}

#[test]
fn fp16_round_trip_is_within_fp16_rounding() {
    let m = run(Precision::Fp16, "fp16");
    for (name, (shape, values)) in &expected().tensors {
        let got = m.f32_shaped(name, shape).expect("present");
        let e = m.tensor(name).expect("present").entry;
        for (x, y) in values.iter().zip(got.iter()) {
            // Round to nearest in an 11-bit significand: half an ulp, 2^-11 relative; 2^-25 absolute
            // covers subnormals. fp32-kept tensors must be exact.
            let tol = if e.dtype == DType::F16 { x.abs() * 2f32.powi(-11) + 2f32.powi(-25) } else { 0.0 };
            assert!((x - y).abs() <= tol, "{name}: {x} stored as {y} ({:?})", e.dtype);
        }
    }
}

#[test]
fn int8_round_trip_is_within_half_a_step_per_channel() {
    let m = run(Precision::Int8, "int8");
    let mut int8 = 0;
    for (name, (shape, values)) in &expected().tensors {
        let t = m.tensor(name).expect("present");
        if t.entry.dtype != DType::I8 {
            continue;
        }
        int8 += 1;
        let scales = m.f32(&format!("{name}@scale")).expect("scales");
        let axis = t.entry.quant_axis.expect("axis") as usize;
        let inner: usize = shape[axis + 1..].iter().product();
        let got = m.f32(name).expect("dequantised");
        for (i, (x, y)) in values.iter().zip(got.iter()).enumerate() {
            let s = scales[(i / inner) % shape[axis]];
            // Round to nearest leaves half a step; 1e-6 relative covers the f32 multiply.
            assert!((x - y).abs() <= s * 0.5 * (1.0 + 1e-6), "{name}[{i}]: {x} -> {y}, step {s}");
        }
    }
    assert!(int8 > 50, "only {int8} int8 tensors");
    let e = m.tensor("head_base").expect("present").entry;
    assert_eq!((e.dtype, e.reason), (DType::F16, Reason::PolicyRule));
    let f = m.tensor("flame.shapedirs").expect("present").entry;
    assert_eq!((f.dtype, f.stage), (DType::F32, Stage::Flame));
    assert!(m.stage_bytes(Stage::Frame) > 0 && m.stage_bytes(Stage::Tracker) > 0);
}

#[test]
fn equal_inputs_give_byte_identical_files() {
    let a = run(Precision::Int8, "det-a");
    let b = run(Precision::Int8, "det-b");
    assert!(a.bytes() == b.bytes(), "two conversions differ");
}

#[test]
fn omitted_tensors_are_listed_with_reasons() {
    let m = run(Precision::Fp16, "omitted");
    let omitted: HashMap<&str, &str> = m.meta().omitted.iter().map(|o| (o.name.as_str(), o.reason.as_str())).collect();
    assert!(omitted.contains_key("base_model.dino_model.mask_token"));
    assert!(omitted.contains_key("base_model.refinenet.0.resConfUnit1.conv1.weight"));
    assert!(omitted.keys().any(|k| k.starts_with("percep_loss.")));
    assert!(omitted.keys().any(|k| k.starts_with("upsampler.toRGB.")));
    assert!(m.tensor("base_model.dino_model.mask_token").is_err());
}

#[test]
fn keep_override_is_applied_and_recorded() {
    let out = out_path("keep");
    let mut o = options(&inputs().checkpoint, Precision::Int8, &out);
    o.keep = vec![Keep::parse("upsampler.final_conv.weight=fp32").expect("valid")];
    convert(&o, &mut |_| {}).expect("conversion");
    let m = Model::open(&*out).expect("valid");
    let e = m.tensor("upsampler.final_conv.weight").expect("present").entry;
    assert_eq!((e.dtype, e.reason), (DType::F32, Reason::UserOverride));
    assert_eq!(m.meta().precision.keep_overrides, vec!["upsampler.final_conv.weight=fp32".to_string()]);
}

#[test]
fn progress_reaches_every_tensor_and_byte() {
    let mut last = None;
    let out = out_path("progress");
    convert(&options(&inputs().checkpoint, Precision::Fp16, &out), &mut |p| last = Some((p.done, p.total, p.bytes_written, p.bytes_total)))
        .expect("conversion");
    let (done, total, written, bytes) = last.expect("progress was reported");
    assert_eq!((done, written), (total, bytes));
}

/// A tensor for the safetensors writer.
struct St(Vec<usize>, Vec<u8>);

impl View for &St {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.0
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.1)
    }
    fn data_len(&self) -> usize {
        self.1.len()
    }
}

/// The seeded state dict as safetensors, after `edit`.
fn safetensors_checkpoint(tag: &str, edit: impl FnOnce(&mut HashMap<String, St>)) -> Out {
    let mut map: HashMap<String, St> = dev::seeded_weights(&ModelConfig::small(), SEED)
        .tensors
        .into_iter()
        .map(|(n, (s, v))| (n, St(s, v.iter().flat_map(|x| x.to_le_bytes()).collect())))
        .collect();
    edit(&mut map);
    let path = Out(inputs().dir.join(format!("{tag}.safetensors")));
    safetensors::tensor::serialize_to_file(map.iter().map(|(n, t)| (n.clone(), t)), None, &path).expect("safetensors");
    path
}

#[test]
fn safetensors_input_gives_the_same_tensors() {
    let path = safetensors_checkpoint("same", |_| {});
    let out = out_path("from-st");
    convert(&options(&path, Precision::Fp32, &out), &mut |_| {}).expect("conversion");
    let m = Model::open(&*out).expect("valid");
    assert_eq!(m.config(), &ModelConfig::small());
    for (name, (shape, values)) in &expected().tensors {
        assert!(m.f32_shaped(name, shape).expect("present")[..] == values[..], "{name}");
    }
}

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn assert_no_output(out: &Path) {
    assert!(!out.exists(), "{} was left behind", out.display());
    assert!(!gaga_runtime::write_aside::temporary_path(out).exists(), "temporary file was left behind");
}

#[test]
fn missing_tensor_is_named_and_nothing_is_written() {
    let path = safetensors_checkpoint("missing", |m| {
        m.remove("upsampler.final_conv.bias");
    });
    let out = out_path("missing");
    let e = convert(&options(&path, Precision::Fp32, &out), &mut |_| {}).expect_err("incomplete checkpoint");
    assert!(e.to_string().contains("tensor `upsampler.final_conv.bias` is missing"), "{e}");
    assert_no_output(&out);
}

#[test]
fn wrong_shape_names_tensor_expected_and_found() {
    let path = safetensors_checkpoint("shape", |m| {
        if let Some(t) = m.get_mut("upsampler.final_conv.weight") {
            t.0 = vec![t.0[0], t.0[1], 1, 9];
        }
    });
    let out = out_path("shape");
    let e = convert(&options(&path, Precision::Fp32, &out), &mut |_| {}).expect_err("bad shape");
    assert!(matches!(&e, Error::Shape { name, .. } if name == "upsampler.final_conv.weight"), "{e}");
    assert!(e.to_string().contains("expected shape [16, 16, 3, 3], found [16, 16, 1, 9]"), "{e}");
    assert_no_output(&out);
}

#[test]
fn unwritable_output_path_fails_without_a_partial_file() {
    let out = inputs().dir.join("no-such-dir").join("model.gaga");
    let e = convert(&options(&inputs().checkpoint, Precision::Fp16, &out), &mut |_| {}).expect_err("no directory");
    assert!(e.to_string().contains("no-such-dir"), "{e}");
    assert_no_output(&out);
}

#[test]
fn failure_after_writing_began_removes_the_partial_file() {
    // The output's name is an existing directory: everything is written, then the rename fails.
    let out = inputs().dir.join("occupied.gaga");
    std::fs::create_dir_all(out.join("inside")).expect("dir");
    let _cleanup = Dir(out.clone());
    let e = convert(&options(&inputs().checkpoint, Precision::Fp16, &out), &mut |_| {}).expect_err("rename onto a directory");
    assert!(e.to_string().contains("occupied.gaga"), "{e}");
    assert!(!gaga_runtime::write_aside::temporary_path(&out).exists(), "temporary file was left behind");
}

#[test]
fn official_schema_is_the_published_key_list_minus_the_omitted_tensors() {
    // The spec's TSV (copied from shared/spec): key, shape, dtype, numel, use.
    let tsv = include_str!("../tests/fixtures/gagavatar-state-dict-keys.tsv");
    let mut published: Vec<(String, Vec<usize>)> = Vec::new();
    for line in tsv.lines().filter(|l| !l.starts_with('#')) {
        let cols: Vec<&str> = line.split('\t').collect();
        let omitted = crate::convert::OMIT.iter().any(|(p, _)| gaga_runtime::format::meta::glob_match(p, cols[0]));
        if !omitted {
            let shape = cols[1].trim_matches(|c| c == '[' || c == ']').split(", ").map(|d| d.parse().expect("dim")).collect();
            published.push((cols[0].to_string(), shape));
        }
    }
    let mut schema: Vec<(String, Vec<usize>)> = gaga_runtime::format::schema::required_tensors(&ModelConfig::official())
        .into_iter()
        .filter(|r| !r.name.starts_with("flame."))
        .map(|r| (r.name, r.shape))
        .collect();
    published.sort();
    schema.sort();
    // 36 perceptual-loss, 14 toRGB, mask_token and 4 refinenet.0.resConfUnit1 tensors are left out.
    assert_eq!(published.len(), 597 - 55);
    assert_eq!(schema, published);
}

#[test]
fn a_checkpoint_given_as_the_flame_asset_is_named() {
    let out = out_path("not-flame");
    let mut o = options(&inputs().checkpoint, Precision::Fp16, &out);
    o.flame = inputs().checkpoint.clone();
    let e = convert(&o, &mut |_| {}).expect_err("no FLAME arrays");
    assert!(e.to_string().contains("small.pt: holds no `flame_model.*` arrays"), "{e}");
    assert_no_output(&out);
}
