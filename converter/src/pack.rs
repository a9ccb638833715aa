//! Pre-packed refiner weights: rewrites a model file so the refiner's f32 conv weights are stored in the
//! CPU SGEMM's panel layout (`Layout::Panels`, `docs/format.md`), which the runtime then borrows from the
//! map instead of packing at load. Every other tensor is copied unchanged (same bytes and checksum).
//!
//! A separate pass over a finished file (rather than a writer option) keeps the converter's own streams
//! untouched and lets any existing model be packed. Off by default (`gaga convert --pack-refiner`):
//! a row-major file is what every reader understands (the Vulkan upload, older readers, tools), and
//! packing at load costs well under a second at official size.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use gaga_kernels::qgemm::PackedConv;
use gaga_runtime::format::{self, panels, DType, Header, Layout, LayoutParams, Stage, TensorEntry};
use gaga_runtime::write_aside::{temporary_path, write_aside_checked};
use gaga_runtime::{Error, Result};

use crate::writer::{validate_written, write_header};

/// The layout [`pack_refiner`] stores `e` in: refiner conv weights (rank >= 4, per-frame stage, not the
/// constant input, which is no conv weight) of f32 go to `Panels`, f16 to `QPanelsF16` and int8 (square
/// odd kernel, scales along the output-channel axis) to `QPanelsI8`; `None` leaves `e` as it is.
pub fn packed_layout(e: &TensorEntry) -> Option<Layout> {
    let conv = e.stage == Stage::Frame
        && e.layout == Layout::RowMajor
        && e.shape.len() >= 4
        && e.name.ends_with(".weight")
        && !e.name.ends_with("constant_input.weight");
    if !conv {
        return None;
    }
    match e.dtype {
        DType::F32 => Some(Layout::Panels),
        DType::F16 => e.conv_dims().map(|_| Layout::QPanelsF16),
        DType::I8 if e.conv_dims().is_some() && e.quant_axis.map(usize::from) == Some(e.shape.len() - 4) => Some(Layout::QPanelsI8),
        _ => None,
    }
}

/// True for tensors [`pack_refiner`] stores packed.
pub fn packs(e: &TensorEntry) -> bool {
    packed_layout(e).is_some()
}

/// `old`'s row-major bytes `src` in the layout `new` (the scales of int8 from `scales`).
fn pack_bytes(old: &TensorEntry, new: Layout, src: &[u8], scales: Option<&[u8]>) -> Result<Vec<u8>> {
    let bad = |what: String| Error::Other(format!("tensor `{}`: {what}", old.name));
    if new == Layout::Panels {
        let values: Vec<f32> = src.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        return panels::pack_f32(&old.shape_usize(), &values).ok_or_else(|| bad(format!("shape {:?} cannot be packed", old.shape)));
    }
    let (m, c_in, k) = old.conv_dims().map(|(a, b, c)| (a as usize, b as usize, c as usize)).ok_or_else(|| bad("no conv weight".into()))?;
    let pc = if new == Layout::QPanelsF16 {
        let halves: Vec<half::f16> = src.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]])).collect();
        PackedConv::from_f16(&halves, m, c_in, k)
    } else {
        let scales: Vec<f32> = scales
            .ok_or_else(|| bad("int8 weight without `@scale` tensor".into()))?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        PackedConv::from_i8(bytemuck::cast_slice(src), &scales, m, c_in, k)
    };
    Ok(pc.map_err(|e| bad(e.0))?.packed_bytes().to_vec())
}

/// What [`pack_refiner`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackSummary {
    /// Tensors now in `Layout::Panels`.
    pub packed: usize,
    pub file_bytes: u64,
}

/// Reads the model `input` and writes `output` (aside, then renamed; `output` may equal `input`) with
/// every tensor [`packs`] selects in panels. The result is validated before the rename.
pub fn pack_refiner(input: &Path, output: &Path) -> Result<PackSummary> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| Error::Io { path: p.clone(), source }
    };
    let file = File::open(input).map_err(io(input))?;
    // SAFETY: the input must not change while this runs (documented, as for `convert`).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io(input))?;
    let header = Header::parse(&map).map_err(|e| Error::Format { path: input.to_path_buf(), what: e.what })?;
    let mut meta = header.meta.clone();
    let mut entries: Vec<TensorEntry> = header.entries.clone();
    let mut count = 0;
    for e in entries.iter_mut() {
        let Some(layout) = packed_layout(e) else { continue };
        e.layout = layout;
        e.length = e.expected_length().ok_or_else(|| Error::Other(format!("tensor `{}`: packed size overflows", e.name)))?;
        count += 1;
        let params = LayoutParams::of(layout).ok_or_else(|| Error::Other(format!("layout {} has no parameters", layout.name())))?;
        if !meta.layouts.contains(&params) {
            meta.layouts.push(params);
        }
    }
    let meta_json = serde_json::to_vec_pretty(&meta).map_err(|e| Error::Other(format!("meta JSON: {e}")))?;
    let pre = format::plan(meta_json.len(), &mut entries);
    let tmp = temporary_path(output);
    write_aside_checked(
        output,
        |w| {
            w.get_ref().set_len(pre.file_length).map_err(io(&tmp))?;
            for (old, new) in header.entries.iter().zip(entries.iter_mut()) {
                let src = header.data(&map, old);
                let bytes: std::borrow::Cow<[u8]> = if new.layout != old.layout {
                    let scales = header.entry(&format!("{}@scale", old.name)).map(|s| header.data(&map, s));
                    let packed = pack_bytes(old, new.layout, src, scales)?;
                    if packed.len() as u64 != new.length {
                        return Err(Error::Other(format!(
                            "tensor `{}`: packed {} bytes, layout needs {}",
                            old.name,
                            packed.len(),
                            new.length
                        )));
                    }
                    new.checksum = xxhash_rust::xxh3::xxh3_64(&packed);
                    packed.into()
                } else {
                    src.into()
                };
                w.seek(SeekFrom::Start(pre.data.offset + new.offset)).map_err(io(&tmp))?;
                w.write_all(&bytes).map_err(io(&tmp))?;
            }
            let dir = format::encode_directory(&entries);
            let head = format::finish_preamble(&pre, &meta_json, &dir);
            write_header(w, &tmp, &pre, &head, &meta_json, &dir)
        },
        |tmp| validate_written(tmp, "packed file"),
    )?;
    Ok(PackSummary { packed: count, file_bytes: pre.file_length })
}

#[cfg(test)]
mod tests {
    use gaga_runtime::model::Model;
    use gaga_runtime::refiner::{NoiseMode, Refiner};
    use gaga_runtime::ModelConfig;

    use super::*;
    use crate::{convert, dev, ConvertOptions, Precision};

    /// Writes the seeded small checkpoint + FLAME, converts at `precision` and packs; returns (dir,
    /// plain, packed).
    fn files(precision: Precision, tag: &str) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let tmp = tempfile::Builder::new().prefix(&format!("gaga-pack-tests-{tag}-")).tempdir().expect("temp dir");
        let dir = tmp.path();
        let (ck, flame) = (dir.join("small.pt"), dir.join("flame.pt"));
        dev::write_checkpoint_file(&ck, &ModelConfig::small(), "small", 11).expect("checkpoint");
        dev::flame::build(11).write_file(&flame).expect("flame");
        let plain = dir.join("plain.gaga");
        let opts =
            ConvertOptions { checkpoint: ck, flame, output: plain.clone(), precision, keep: vec![], created_by: "pack tests".into() };
        convert(&opts, &mut |_| {}).expect("conversion");
        let packed = dir.join("packed.gaga");
        let s = pack_refiner(&plain, &packed).expect("packing");
        // Small config: 4 levels x (2 ResBlocks x 3 + 2 x 2 conditions) + first + final + 3 x 4 + 2 modconvs.
        assert!(s.packed > 40, "packed {} tensors", s.packed);
        (tmp, plain, packed)
    }

    #[test]
    fn packed_in_file_and_packed_at_load_give_identical_frames_and_the_same_weights() {
        // Every precision: the same packed values reach the same kernels, so frames are equal bit for bit.
        for (precision, tag) in [(Precision::Int8, "int8"), (Precision::Fp16, "fp16"), (Precision::Fp32, "fp32")] {
            let (_dir, plain, packed) = files(precision, tag);
            let (a, b) = (Model::open(&plain).expect("row-major model loads"), Model::open(&packed).expect("packed model loads"));
            b.verify().expect("checksums of the packed file");
            let cfg = a.config().clone();
            let s = cfg.refiner.size;
            let x: Vec<f32> = (0..cfg.refiner.in_channels * s * s).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
            let mut frames = Vec::new();
            for m in [&a, &b] {
                let mut r = Refiner::new(m, &cfg, NoiseMode::Stored).expect("refiner loads");
                let mut out = vec![0f32; 3 * s * s];
                r.run(&x, &mut out).expect("runs");
                frames.push(out);
            }
            assert!(frames[0] == frames[1], "{tag}: packed-in-file frame differs from packed-at-load");
            let (n_plain, n_packed) = (a.tensors().len(), b.tensors().len());
            assert_eq!(n_plain, n_packed);
            for e in b.tensors() {
                use gaga_runtime::Weights;
                assert!(a.f32(&e.name).expect("plain") == b.f32(&e.name).expect("packed"), "{tag}: `{}` reads back differently", e.name);
            }
            let r = Refiner::new(&b, &cfg, NoiseMode::Stored).expect("loads");
            assert!(r.borrowed_convs() > 40, "{tag}: packed weights should be borrowed from the map, {} are", r.borrowed_convs());
        }
    }

    /// Load time and resident memory of the refiner from row-major vs packed files, alternating in one
    /// process: `GAGA_PACK_BENCH=plain.gaga,packed.gaga cargo test --release -p gaga-converter
    /// load_cost -- --ignored --nocapture` (official-size files: seconds and hundreds of MB).
    #[test]
    #[ignore]
    fn load_cost_of_row_major_and_packed_files() {
        use gaga_runtime::model::resident;
        let Ok(list) = std::env::var("GAGA_PACK_BENCH") else { return };
        let paths: Vec<&str> = list.split(',').collect();
        let mut times = vec![Vec::new(); paths.len()];
        for _ in 0..3 {
            for (i, p) in paths.iter().enumerate() {
                let before = resident().map_or(0, |r| r.now);
                let t0 = std::time::Instant::now();
                let m = Model::open(std::path::Path::new(p)).expect("model opens");
                let cfg = m.config().clone();
                let r = Refiner::new(&m, &cfg, NoiseMode::Stored).expect("refiner loads");
                let dt = t0.elapsed().as_secs_f64() * 1e3;
                let r_now = resident().expect("resident");
                println!(
                    "{p}: load {dt:.0} ms, +{:.0} MiB resident ({:.0} MiB anonymous, {:.0} MiB file-backed in total), {} convs borrowed",
                    (r_now.now.saturating_sub(before)) as f64 / 1048576.0,
                    r_now.anonymous as f64 / 1048576.0,
                    r_now.file as f64 / 1048576.0,
                    r.borrowed_convs()
                );
                times[i].push(dt);
                drop(r);
                drop(m);
            }
        }
        for (p, mut t) in paths.iter().zip(times) {
            t.sort_by(f64::total_cmp);
            println!("{p}: median load {:.0} ms", t[t.len() / 2]);
        }
    }
}
