//! The writers against the project's own reader (`SourceFile`, over the runtime's unpickler): every
//! seeded tensor comes back with its name, shape, dtype and exact values. `torch.load` is checked by hand
//! (`docs/seeded-models.md`) since CI has no torch.

use std::path::PathBuf;

use gaga_runtime::pickle::Value;
use gaga_runtime::ModelConfig;

use super::flame::{self, FlameData};
use super::{checkpoint_specs, write_checkpoint_file};
use crate::source::{SourceFile, SrcDType, TensorData};

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("gaga-dev-{}-{name}", std::process::id()))
}

#[test]
fn seeded_small_checkpoint_reads_back_exactly() {
    let cfg = ModelConfig::small();
    let path = temp("small.pt");
    write_checkpoint_file(&path, &cfg, "small", 7).expect("write");
    let file = SourceFile::open(&path).expect("our reader opens our writer's file");
    let specs = checkpoint_specs(&cfg);
    assert_eq!(file.tensors.len(), specs.len());
    for (t, spec) in file.tensors.iter().zip(&specs) {
        // The reader names a checkpoint's tensors by their path from the root: `model.<state-dict key>`.
        assert_eq!((t.name.strip_prefix("model."), &t.shape, t.dtype), (Some(spec.name.as_str()), &spec.shape, SrcDType::F32));
        assert_eq!(file.read(t).expect("read"), TensorData::F32(spec.values(7)), "{}", t.name);
    }
    let root = file.root.as_ref().expect("torch files keep their root");
    let plane = root.get("meta_cfg").and_then(|m| m.get("DATASET")).and_then(|d| d.get("POINT_PLANE_SIZE"));
    assert_eq!(plane.and_then(Value::as_int), Some(cfg.plane_size as i64));
    std::fs::remove_file(&path).ok();
}

#[test]
fn seeded_flame_reads_back_with_int64_indices() {
    let asset = flame::build(1);
    let path = temp("flame.pt");
    asset.write_file(&path).expect("write");
    let file = SourceFile::open(&path).expect("our reader opens the FLAME file");
    assert_eq!(file.tensors.len(), asset.arrays.len());
    for (name, shape, data) in &asset.arrays {
        let t = file.get(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(&t.shape, shape, "{name}");
        match (file.read(t).expect("read"), data) {
            (TensorData::F32(got), FlameData::F32(want)) => assert_eq!(&got, want, "{name}"),
            (TensorData::I64(got), FlameData::I64(want)) => assert_eq!(&got, want, "{name}"),
            _ => panic!("{name}: dtype changed"),
        }
    }
    std::fs::remove_file(&path).ok();
}

/// `torch.load(weights_only=True)` on the seeded files, when the reference venv is installed (it is not
/// in CI; the test then says it skipped).
#[test]
fn torch_loads_seeded_files_when_the_reference_venv_exists() {
    let python = std::path::Path::new("/opt/gaga-ref-venv/bin/python");
    if !python.exists() {
        eprintln!("skipped: {} not found", python.display());
        return;
    }
    let (ckpt, flame_path) = (temp("torch-small.pt"), temp("torch-flame.pt"));
    write_checkpoint_file(&ckpt, &ModelConfig::small(), "small", 3).expect("write checkpoint");
    flame::build(3).write_file(&flame_path).expect("write FLAME");
    let script = "import sys, torch\n\
        c = torch.load(sys.argv[1], weights_only=True, mmap=True)\n\
        f = torch.load(sys.argv[2], weights_only=True)\n\
        assert c['meta_cfg']['MODEL']['NAME'] == 'GAGAvatar'\n\
        assert '' in c['model']._metadata\n\
        assert f['flame_model.f'].dtype == torch.int64 and tuple(f['flame_model.shapedirs'].shape) == (5023, 3, 400)\n\
        print(len(c['model']), float(c['model']['head_base'][0, 0]))\n";
    let out = std::process::Command::new(python).args(["-c", script]).arg(&ckpt).arg(&flame_path).output().expect("run python");
    std::fs::remove_file(&ckpt).ok();
    std::fs::remove_file(&flame_path).ok();
    assert!(out.status.success(), "torch.load failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first = checkpoint_specs(&ModelConfig::small())[0].values(3)[0];
    assert_eq!(stdout.trim(), format!("{} {}", checkpoint_specs(&ModelConfig::small()).len(), first as f64));
}
