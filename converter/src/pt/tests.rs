//! Torch zips written by torch 2.x (`converter/tests/fixtures/make_fixtures.py`).

use std::path::PathBuf;

use crate::source::{SourceFile, SrcDType, TensorData};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn read(f: &SourceFile, name: &str) -> TensorData {
    let t = f.get(name).unwrap_or_else(|| panic!("tensor {name} listed"));
    f.read(t).unwrap_or_else(|e| panic!("tensor {name}: {e}"))
}

#[test]
fn every_storage_layout_and_dtype_reads_as_torch_wrote_it() {
    let f = SourceFile::open(&fixture("layouts.pt")).expect("fixture opens");
    use TensorData::{F32, I64};
    assert_eq!(read(&f, "model.a"), F32(vec![0., 1., 2., 3., 4., 5.]));
    // A transposed view of the same storage: strides (1, 3).
    assert_eq!(read(&f, "model.a_t"), F32(vec![0., 3., 1., 4., 2., 5.]));
    assert_eq!(f.get("model.a_t").map(|t| t.storage.clone()), f.get("model.a").map(|t| t.storage.clone()));
    // base[2:8:2] of an f64 arange: offset 2, stride 2.
    assert_eq!(read(&f, "model.strided"), F32(vec![2., 4., 6.]));
    assert_eq!(read(&f, "model.half"), F32(vec![0.5, -1.25, 2.0]));
    assert_eq!(read(&f, "model.bf16"), F32(vec![1.0, -3.0]));
    assert_eq!(read(&f, "model.long"), I64(vec![1, -2, 3, 1 << 40]));
    assert_eq!(read(&f, "model.int"), I64(vec![7, -8]));
    assert_eq!(read(&f, "model.byte"), I64(vec![0, 255]));
    assert_eq!(read(&f, "model.flag"), I64(vec![1, 0]));
    assert_eq!(read(&f, "model.param"), F32(vec![4.0, 5.0]));
    assert_eq!(read(&f, "model.scalar"), F32(vec![3.5]));
    assert_eq!(read(&f, "model.empty"), F32(vec![]));
    assert_eq!(f.get("model.long").map(|t| (t.dtype, t.shape.clone())), Some((SrcDType::I64, vec![2, 2])));
}

#[test]
fn meta_cfg_is_readable_from_the_root() {
    let f = SourceFile::open(&fixture("layouts.pt")).expect("fixture opens");
    let ds = f.root.as_ref().and_then(|r| r.get("meta_cfg")).and_then(|m| m.get("DATASET"));
    assert_eq!(ds.and_then(|d| d.get("POINT_PLANE_SIZE")).and_then(|v| v.as_int()), Some(296));
}

#[test]
fn foreign_global_is_refused_by_name() {
    let e = SourceFile::open(&fixture("foreign_global.pt")).err().expect("refused");
    let msg = e.to_string();
    assert!(msg.contains("`argparse.Namespace`") && msg.contains("foreign_global.pt"), "{msg}");
}

#[test]
fn storage_reaching_past_its_entry_is_an_error() {
    let f = SourceFile::open(&fixture("layouts.pt")).expect("fixture opens");
    let mut t = f.get("model.a").expect("a").clone();
    t.strides = vec![3, 2];
    let e = f.read(&t).expect_err("index 5 + 2 x 2 is past 6 elements");
    assert!(e.to_string().contains("tensor `model.a`"), "{e}");
}

#[test]
fn truncated_zip_is_an_error_not_a_panic() {
    let bytes = std::fs::read(fixture("layouts.pt")).expect("fixture");
    let dir = std::env::temp_dir().join(format!("gaga-pt-trunc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for cut in [10, bytes.len() / 2, bytes.len() - 30] {
        let p = dir.join("cut.pt");
        std::fs::write(&p, &bytes[..cut]).expect("write");
        assert!(SourceFile::open(&p).is_err(), "accepted {cut} of {} bytes", bytes.len());
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn size_one_axis_with_a_huge_stride_reads_without_overflow() {
    let f = SourceFile::open(&fixture("layouts.pt")).expect("fixture opens");
    let mut t = f.get("model.a").expect("a").clone();
    // [2, 1, 3] over the same storage: the middle axis never moves, whatever its stride.
    t.shape = vec![2, 1, 3];
    t.strides = vec![3, usize::MAX / 2, 1];
    assert_eq!(f.read(&t).expect("valid view"), crate::source::TensorData::F32(vec![0., 1., 2., 3., 4., 5.]));
}
