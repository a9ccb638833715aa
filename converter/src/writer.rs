//! Streams planned tensors into a model file: data first (each tensor read, converted, hashed, written
//! and dropped), then the directory, meta and sealed preamble. The file is written aside and renamed
//! into place only after it parses, so no error leaves a partial model behind.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use gaga_runtime::format::{self, DType, Meta, TensorEntry};
use gaga_runtime::{Error, Result};

use gaga_runtime::write_aside::{temporary_path, write_aside_checked};

use crate::convert::{Job, Progress};
use crate::quant::{quantise_i8, to_f16_bytes, to_f32_bytes};
use crate::source::TensorData;

/// A directory entry (and its scale entry, for int8) for `jobs[job_index]`.
pub(crate) struct Planned {
    pub entry: TensorEntry,
    pub scale: Option<TensorEntry>,
    /// A calibrated activation quantiser `<name>@act_scale` and its values, written after the tensor.
    pub act: Option<(TensorEntry, Vec<f32>)>,
    pub job_index: usize,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// Writes the model and returns its size in bytes.
pub(crate) fn write_model(
    output: &Path,
    meta: &Meta,
    jobs: &[Job],
    planned: Vec<Planned>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<u64> {
    let meta_json = serde_json::to_vec_pretty(meta).map_err(|e| Error::Other(format!("meta JSON: {e}")))?;
    let mut entries: Vec<TensorEntry> = Vec::new();
    let mut first_entry = Vec::with_capacity(planned.len());
    for p in &planned {
        first_entry.push(entries.len());
        entries.push(p.entry.clone());
        entries.extend(p.scale.clone());
        entries.extend(p.act.as_ref().map(|a| a.0.clone()));
    }
    let pre = format::plan(meta_json.len(), &mut entries);
    let tmp = temporary_path(output);
    write_aside_checked(
        output,
        |w| {
            w.get_ref().set_len(pre.file_length).map_err(io(&tmp))?;
            w.seek(SeekFrom::Start(pre.data.offset)).map_err(io(&tmp))?;
            let mut pos = 0u64;
            let bytes_total = pre.data.length;
            for (k, p) in planned.iter().enumerate() {
                let job = &jobs[p.job_index];
                let data = job.src.read(job.tensor)?;
                let mut pieces = encode(&p.entry, &data, job)?;
                pieces.extend(p.act.as_ref().map(|a| a.1.iter().flat_map(|v| v.to_le_bytes()).collect()));
                for (i, bytes) in pieces.iter().enumerate() {
                    let e = &mut entries[first_entry[k] + i];
                    debug_assert_eq!(bytes.len() as u64, e.length, "{}", e.name);
                    // Zero padding up to the tensor's 256-byte-aligned offset.
                    let pad = e.offset - pos;
                    w.write_all(&vec![0u8; pad as usize]).map_err(io(&tmp))?;
                    w.write_all(bytes).map_err(io(&tmp))?;
                    e.checksum = xxhash_rust::xxh3::xxh3_64(bytes);
                    pos = e.offset + e.length;
                }
                drop(pieces);
                job.src.release(job.tensor);
                progress(&Progress { tensor: &job.name, done: k + 1, total: planned.len(), bytes_written: pos, bytes_total });
            }
            let dir = format::encode_directory(&entries);
            let head = format::finish_preamble(&pre, &meta_json, &dir);
            write_header(w, &tmp, &pre, &head, &meta_json, &dir)
        },
        |tmp| validate_written(tmp, "written file"),
    )?;
    Ok(pre.file_length)
}

/// Writes the sealed preamble, the meta JSON and the directory at their planned offsets.
pub(crate) fn write_header(
    w: &mut BufWriter<File>,
    tmp: &Path,
    pre: &format::Preamble,
    head: &[u8],
    meta: &[u8],
    dir: &[u8],
) -> Result<()> {
    for (at, bytes) in [(0, head), (pre.meta.offset, meta), (pre.directory.offset, dir)] {
        w.seek(SeekFrom::Start(at)).map_err(io(tmp))?;
        w.write_all(bytes).map_err(io(tmp))?;
    }
    Ok(())
}

/// A written model file must parse before it may replace anything (this touches only the header pages).
pub(crate) fn validate_written(tmp: &Path, what: &str) -> Result<()> {
    let file = File::open(tmp).map_err(io(tmp))?;
    // SAFETY: the temporary file is ours and nothing else writes it while it is mapped here.
    let written = unsafe { memmap2::Mmap::map(&file) }.map_err(io(tmp))?;
    format::Header::parse(&written)
        .map_err(|e| Error::Format { path: tmp.to_path_buf(), what: format!("{what} does not validate: {e}") })?;
    Ok(())
}

/// The stored bytes of one tensor: one piece, or two (values, scales) for int8.
fn encode(entry: &TensorEntry, data: &TensorData, job: &Job) -> Result<Vec<Vec<u8>>> {
    let kind = if matches!(data, TensorData::F32(_)) { "floats" } else { "integers (or out of the planned range)" };
    let mismatch = || Error::Other(format!("tensor `{}`: planned as {} but read as {kind}", job.name, entry.dtype.name()));
    Ok(match (entry.dtype, data) {
        (DType::F32, TensorData::F32(v)) => vec![to_f32_bytes(v)],
        (DType::F16, TensorData::F32(v)) => vec![to_f16_bytes(v)],
        (DType::I8, TensorData::F32(v)) => {
            let axis = entry.quant_axis.unwrap_or(0) as usize;
            let (q, scales) = quantise_i8(v, &job.tensor.shape, axis);
            vec![q.iter().map(|&x| x as u8).collect(), to_f32_bytes(&scales)]
        }
        (DType::I64, TensorData::I64(v)) => vec![v.iter().flat_map(|x| x.to_le_bytes()).collect()],
        (DType::I32, TensorData::I64(v)) => {
            let narrow: Option<Vec<u8>> =
                v.iter().map(|&x| i32::try_from(x).ok().map(|x| x.to_le_bytes())).collect::<Option<Vec<_>>>().map(|v| v.concat());
            vec![narrow.ok_or_else(mismatch)?]
        }
        _ => return Err(mismatch()),
    })
}
