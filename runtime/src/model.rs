//! A converted model: a `.gaga` file mapped into memory, validated once, read by name.
//!
//! f32 tensors are lent to the pipeline without copying (the format aligns every tensor to 256 bytes
//! and the map is page-aligned); f16 and int8 tensors are dequantised on request, integer tensors
//! converted exactly.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::format::{DType, Header, Meta, Stage, TensorEntry};
use crate::weights::Weights;

enum Backing {
    Map(memmap2::Mmap),
    Owned(Vec<u8>),
}

/// A validated model file. Cheap to query; tensor bytes stay in the file's pages until used.
pub struct Model {
    path: PathBuf,
    backing: Backing,
    header: Header,
}

/// One stored tensor as it is in the file.
#[derive(Clone, Copy, Debug)]
pub struct TensorRef<'a> {
    pub entry: &'a TensorEntry,
    pub bytes: &'a [u8],
}

impl TensorRef<'_> {
    pub fn dtype(&self) -> DType {
        self.entry.dtype
    }
    pub fn shape(&self) -> Vec<usize> {
        self.entry.shape_usize()
    }
}

impl Model {
    /// Maps and validates the file at `path`.
    ///
    /// Safety condition (memmap2's, handed on): the file must not be modified or truncated while the
    /// `Model` exists; another process writing to it would change tensors under the pipeline, and
    /// truncation would fault on access. Model files are written aside and renamed into place by the
    /// converter, which never modifies a published file in place.
    pub fn open(path: impl AsRef<Path>) -> Result<Model> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::File::open(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
        // SAFETY: see the condition above; the mapping is read-only.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| Error::Io { path: path.clone(), source })?;
        let header = Header::parse(&map).map_err(|e| Error::Format { path: path.clone(), what: e.what })?;
        Ok(Model { path, backing: Backing::Map(map), header })
    }

    /// Validates an in-memory file (tests, fuzzing). f32 tensors are borrowed when the vector happens to
    /// be 4-byte aligned and copied otherwise.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Model> {
        let path = PathBuf::from("<memory>");
        let header = Header::parse(&bytes).map_err(|e| Error::Format { path: path.clone(), what: e.what })?;
        Ok(Model { path, backing: Backing::Owned(bytes), header })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        match &self.backing {
            Backing::Map(m) => m,
            Backing::Owned(v) => v,
        }
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn config(&self) -> &ModelConfig {
        &self.header.meta.config
    }

    pub fn meta(&self) -> &Meta {
        &self.header.meta
    }

    /// Directory entries in file order.
    pub fn tensors(&self) -> &[TensorEntry] {
        &self.header.entries
    }

    /// The stored form of `name`.
    pub fn tensor(&self, name: &str) -> Result<TensorRef<'_>> {
        let entry = self.header.entry(name).ok_or_else(|| Error::MissingTensor { name: name.to_string() })?;
        Ok(TensorRef { entry, bytes: self.header.data(self.bytes(), entry) })
    }

    /// Checks every tensor's checksum (reads the whole file).
    pub fn verify(&self) -> Result<()> {
        self.header.verify(self.bytes()).map_err(|e| Error::Format { path: self.path.clone(), what: e.what })
    }

    /// Bytes stored for tensors of `stage` (scales included).
    pub fn stage_bytes(&self, stage: Stage) -> u64 {
        self.tensors().iter().filter(|e| e.stage == stage).map(|e| e.length).sum()
    }

    /// Tells the kernel the pages holding `stage`'s tensors are no longer needed (for example
    /// [`Stage::Lift`] once the avatar exists), and returns how many bytes were advised. Only whole
    /// pages lying entirely inside runs of that stage's tensors are dropped, so other stages' pages stay.
    ///
    /// Safe for the model: the map is read-only and file-backed, so `MADV_DONTNEED` only discards clean
    /// page-cache copies from this process's resident set; a later read (another lift) faults them back
    /// in from the file, unchanged. In-memory models (`from_bytes`) release nothing.
    pub fn release(&self, stage: Stage) -> Result<u64> {
        let mut released = 0;
        for (start, end) in stage_runs(self.tensors(), stage) {
            released += self.advise_dont_need(start, end)?;
        }
        Ok(released)
    }

    /// Drops the pages lying entirely inside tensor `name`'s bytes from the resident set (see
    /// [`Model::release`]; here for one tensor whose values a kernel has copied). Returns the bytes
    /// advised: 0 for in-memory models and for tensors too small to cover an aligned 64 KiB block.
    pub fn release_tensor(&self, name: &str) -> Result<u64> {
        let entry = self.header.entry(name).ok_or_else(|| Error::MissingTensor { name: name.to_string() })?;
        self.advise_dont_need(entry.offset, entry.offset + entry.length)
    }

    /// `MADV_DONTNEED` on the whole 64 KiB blocks inside data-section bytes `[start, end)`.
    fn advise_dont_need(&self, start: u64, end: u64) -> Result<u64> {
        let Backing::Map(map) = &self.backing else { return Ok(0) };
        let base = self.header.preamble.data.offset;
        // Inward to a 64 KiB boundary: a multiple of every page size Linux uses (4, 16, 64 KiB).
        let (s, e) = ((base + start).next_multiple_of(RELEASE_ALIGN), (base + end) / RELEASE_ALIGN * RELEASE_ALIGN);
        if e <= s {
            return Ok(0);
        }
        #[cfg(unix)]
        // SAFETY: DontNeed on a read-only, file-backed shared map drops only clean pages, which are
        // re-read from the file on the next access; no reference into the map sees different bytes.
        unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, s as usize, (e - s) as usize) }
            .map_err(|source| Error::Io { path: self.path.clone(), source })?;
        #[cfg(not(unix))]
        let _ = map;
        Ok(e - s)
    }

    fn dequantise_i8(&self, t: TensorRef<'_>) -> Result<Vec<f32>> {
        let name = &t.entry.name;
        let scale = self.tensor(&format!("{name}@scale"))?;
        let scales = to_f32_copy(scale.bytes, DType::F32);
        // Validation guarantees the axis exists and the scale has one value per channel along it.
        let axis = t.entry.quant_axis.map(usize::from).unwrap_or(0);
        let shape = t.shape();
        let inner: usize = shape[axis + 1..].iter().product();
        let channels = shape[axis];
        Ok(t.bytes.iter().enumerate().map(|(i, &q)| q as i8 as f32 * scales[(i / inner.max(1)) % channels.max(1)]).collect())
    }
}

/// Alignment `release` rounds inward to.
const RELEASE_ALIGN: u64 = 64 << 10;

/// Data-section byte ranges `[start, end)` covered by consecutive (in file order) tensors of `stage`,
/// with no other stage's tensor inside a range.
fn stage_runs(entries: &[TensorEntry], stage: Stage) -> Vec<(u64, u64)> {
    let mut sorted: Vec<&TensorEntry> = entries.iter().filter(|e| e.length > 0).collect();
    sorted.sort_by_key(|e| e.offset);
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let mut open = false;
    for e in sorted {
        if e.stage != stage {
            open = false;
            continue;
        }
        match runs.last_mut() {
            Some(r) if open => r.1 = e.offset + e.length,
            _ => runs.push((e.offset, e.offset + e.length)),
        }
        open = true;
    }
    runs
}

/// This process's resident memory from `/proc/self/status`, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resident {
    /// `VmRSS`: resident now.
    pub now: u64,
    /// `VmHWM`: the peak since the process started or since [`reset_peak_resident`].
    pub peak: u64,
    /// `RssAnon`: the resident part of anonymous memory (heap, arenas, packed weights); 0 when absent.
    pub anonymous: u64,
    /// `RssFile`: resident file-backed pages (the mapped model, the executable); 0 when absent.
    pub file: u64,
}

/// Reads `VmRSS`, `VmHWM`, `RssAnon` and `RssFile` (Linux); `None` where `/proc` is not available.
pub fn resident() -> Option<Resident> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |key: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        let kb: u64 = line[key.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    };
    Some(Resident {
        now: field("VmRSS:")?,
        peak: field("VmHWM:")?,
        anonymous: field("RssAnon:").unwrap_or(0),
        file: field("RssFile:").unwrap_or(0),
    })
}

/// Resets `VmHWM` to the current resident size (Linux >= 4.0, writing 5 to `/proc/self/clear_refs`),
/// so a later [`resident`] reports the peak of what followed. Returns false where that is not possible.
pub fn reset_peak_resident() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Little-endian element bytes to f32 (a copy).
fn to_f32_copy(b: &[u8], dtype: DType) -> Vec<f32> {
    fn le<const N: usize>(c: &[u8]) -> [u8; N] {
        let mut a = [0; N];
        a.copy_from_slice(c);
        a
    }
    match dtype {
        DType::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes(le(c))).collect(),
        DType::F16 => b.chunks_exact(2).map(|c| half::f16::from_le_bytes(le(c)).to_f32()).collect(),
        DType::I8 => b.iter().map(|&x| x as i8 as f32).collect(),
        DType::U8 => b.iter().map(|&x| x as f32).collect(),
        DType::I32 => b.chunks_exact(4).map(|c| i32::from_le_bytes(le(c)) as f32).collect(),
        DType::I64 => b.chunks_exact(8).map(|c| i64::from_le_bytes(le(c)) as f32).collect(),
    }
}

impl Weights for Model {
    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.tensor(name)?.shape())
    }

    fn f32(&self, name: &str) -> Result<Cow<'_, [f32]>> {
        let t = self.tensor(name)?;
        if t.entry.layout == crate::format::Layout::Panels {
            // Validation allows panels for f32 only; readers of `f32` get the checkpoint's layout.
            return Ok(Cow::Owned(crate::format::panels::unpack_f32(t.entry, t.bytes)));
        }
        if matches!(t.entry.layout, crate::format::Layout::QPanelsF16 | crate::format::Layout::QPanelsI8) {
            // The qgemm layouts (f16 / int8 refiner weights packed by `gaga convert --pack-refiner`).
            let scales = self.stored(name)?.scales;
            let v = crate::format::panels::unpack_q_f32(t.entry, t.bytes, scales.as_deref()).map_err(Error::Other)?;
            return Ok(Cow::Owned(v));
        }
        match t.dtype() {
            DType::F32 if cfg!(target_endian = "little") => match bytemuck::try_cast_slice::<u8, f32>(t.bytes) {
                Ok(v) => Ok(Cow::Borrowed(v)),
                Err(_) => Ok(Cow::Owned(to_f32_copy(t.bytes, DType::F32))),
            },
            DType::I8 => Ok(Cow::Owned(self.dequantise_i8(t)?)),
            other => Ok(Cow::Owned(to_f32_copy(t.bytes, other))),
        }
    }

    fn release_tensor(&self, name: &str) -> Result<u64> {
        Model::release_tensor(self, name)
    }

    fn as_sync(&self) -> Option<&(dyn Weights + Sync)> {
        Some(self)
    }

    fn stored(&self, name: &str) -> Result<crate::weights::Stored<'_>> {
        let t = self.tensor(name)?;
        let scales = match t.dtype() {
            DType::I8 => {
                let s = self.tensor(&format!("{name}@scale"))?;
                Some(match bytemuck::try_cast_slice::<u8, f32>(s.bytes) {
                    Ok(v) if cfg!(target_endian = "little") => Cow::Borrowed(v),
                    _ => Cow::Owned(to_f32_copy(s.bytes, DType::F32)),
                })
            }
            _ => None,
        };
        Ok(crate::weights::Stored {
            dtype: t.dtype(),
            layout: t.entry.layout,
            shape: t.shape(),
            bytes: Cow::Borrowed(t.bytes),
            scales,
            quant_axis: t.entry.quant_axis.map(usize::from),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tests::{tiny_config, tiny_file};

    #[test]
    fn f32_tensors_are_borrowed_from_the_mapped_file() {
        let path = std::env::temp_dir().join(format!("gaga-model-test-{}.gaga", std::process::id()));
        std::fs::write(&path, tiny_file()).expect("write temp file");
        let m = Model::open(&path).expect("valid file");
        let w = m.f32("head_base").expect("present");
        assert!(matches!(w, Cow::Borrowed(_)), "f32 should be zero-copy from the map");
        let c = tiny_config();
        assert_eq!(w.len(), c.flame.vertices * c.head_base_dim);
        assert_eq!(w[5], 5.0 * 0.001);
        m.verify().expect("checksums");
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn integer_tensors_convert_exactly() {
        let m = Model::from_bytes(tiny_file()).expect("valid");
        let faces = m.f32_shaped("flame.faces", &[20, 3]).expect("faces");
        assert_eq!(&faces[..14], &[0., 1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11., 0., 1.]);
    }

    #[test]
    fn missing_tensor_and_wrong_shape_are_named() {
        let m = Model::from_bytes(tiny_file()).expect("valid");
        let e = m.f32("nope").expect_err("missing");
        assert_eq!(e.to_string(), "tensor `nope` is missing from the model");
        let e = m.f32_shaped("head_base", &[1, 2]).expect_err("shape");
        assert!(e.to_string().contains("expected shape [1, 2], found [12, 16]"), "{e}");
    }

    #[test]
    fn stage_runs_merge_neighbours_and_stop_at_other_stages() {
        let e = |name: &str, stage: Stage, offset: u64, length: u64| TensorEntry {
            name: name.into(),
            dtype: DType::F32,
            layout: crate::format::Layout::RowMajor,
            stage,
            quant_axis: None,
            reason: crate::format::Reason::Requested,
            shape: vec![length / 4],
            offset,
            length,
            checksum: 0,
        };
        let entries = [
            e("c", Stage::Lift, 1024, 100),
            e("a", Stage::Lift, 0, 256),
            e("b", Stage::Lift, 256, 700),
            e("d", Stage::Frame, 1280, 256),
            e("f", Stage::Lift, 1536, 8),
            e("g", Stage::Lift, 2048, 0),
        ];
        assert_eq!(stage_runs(&entries, Stage::Lift), vec![(0, 1124), (1536, 1544)]);
        assert_eq!(stage_runs(&entries, Stage::Frame), vec![(1280, 1536)]);
    }

    #[test]
    fn released_stages_still_read_correctly() {
        let path = std::env::temp_dir().join(format!("gaga-model-release-{}.gaga", std::process::id()));
        std::fs::write(&path, tiny_file()).expect("write temp file");
        let m = Model::open(&path).expect("valid file");
        let before = m.f32("head_base").expect("present").into_owned();
        for stage in Stage::ALL {
            m.release(stage).expect("madvise on a read-only map");
        }
        // The pages come back from the file on the next read.
        assert_eq!(m.f32("head_base").expect("present").as_ref(), &before[..]);
        m.verify().expect("checksums after release");
        assert_eq!(Model::from_bytes(tiny_file()).expect("valid").release(Stage::Lift).expect("no-op"), 0);
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn resident_memory_is_read_from_proc() {
        if let Some(r) = resident() {
            assert!(r.now > 0 && r.peak >= r.now, "{r:?}");
        }
    }

    #[test]
    fn open_names_the_file_when_it_is_not_a_model() {
        let path = std::env::temp_dir().join(format!("gaga-model-bad-{}.gaga", std::process::id()));
        std::fs::write(&path, b"hello").expect("write");
        let e = Model::open(&path).err().expect("not a model");
        assert!(e.to_string().starts_with(&path.display().to_string()), "{e}");
        assert!(e.to_string().contains("truncated"), "{e}");
        std::fs::remove_file(&path).ok();
    }
}
