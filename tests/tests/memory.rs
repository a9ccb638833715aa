//! Releasing the lift stage's pages: the resident set shrinks and the model still reads correctly.
//! Own test binary with a single test, so no other test allocates while resident memory is measured.

use gaga_converter::dev::{flame, write_checkpoint_file};
use gaga_converter::{convert, ConvertOptions, Precision};
use gaga_runtime::format::Stage;
use gaga_runtime::model::{resident, Model};
use gaga_runtime::{ModelConfig, Weights};

#[test]
fn releasing_the_lift_stage_lowers_resident_memory_and_keeps_the_weights_readable() {
    let dir = std::env::temp_dir().join(format!("gaga-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (ck, fl, out) = (dir.join("ck.pt"), dir.join("flame.pt"), dir.join("m.gaga"));
    write_checkpoint_file(&ck, &ModelConfig::small(), "small", 7).expect("seeded checkpoint");
    flame::build(7).write_file(&fl).expect("seeded FLAME");
    let opts = ConvertOptions {
        checkpoint: ck,
        flame: fl,
        output: out.clone(),
        precision: Precision::Fp32,
        keep: vec![],
        created_by: "tests/memory".into(),
    };
    convert(&opts, &mut |_| {}).expect("convert");
    let m = Model::open(&out).expect("open");
    let lift: Vec<String> = m.tensors().iter().filter(|e| e.stage == Stage::Lift).map(|e| e.name.clone()).collect();
    // Fault every lift page in (a sum the optimiser cannot drop), as a lift would.
    let touch = |m: &Model| lift.iter().map(|n| m.tensor(n).expect("listed").bytes.iter().map(|&b| b as u64).sum::<u64>()).sum::<u64>();
    let sum = touch(&m);
    let Some(before) = resident() else { return }; // no /proc: nothing to measure
    let released = m.release(Stage::Lift).expect("release");
    let after = resident().expect("/proc was readable a moment ago");
    assert!(released > m.stage_bytes(Stage::Lift) / 2, "released {released} of {} lift bytes", m.stage_bytes(Stage::Lift));
    // Resident memory is page-granular and other runtime threads may touch a page or two: ask for at
    // least half of what was released to leave the resident set.
    let dropped = before.now.saturating_sub(after.now);
    assert!(dropped >= released / 2, "RSS {} -> {} bytes after releasing {released}", before.now, after.now);
    // A later lift faults the pages back in from the file, unchanged.
    assert_eq!(touch(&m), sum);
    m.verify().expect("checksums after release");
    assert!(m.f32("base_model.dino_model.cls_token").is_ok());
    std::fs::remove_dir_all(&dir).ok();
}
