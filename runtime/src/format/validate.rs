//! Every check a file must pass before anything trusts its offsets, in the order they can be made.

use std::collections::HashMap;

use super::directory::{DType, Layout, TensorEntry};
use super::header::{header_checksum, Preamble, Section, PREAMBLE_LEN, SECTION_ALIGN, TENSOR_ALIGN};
use super::meta::{LayoutParams, Meta};
use super::{schema, FormatError, Header};

fn err(what: String) -> FormatError {
    FormatError::new(what)
}

pub(super) fn parse(bytes: &[u8]) -> Result<Header, FormatError> {
    let preamble = Preamble::decode(bytes)?;
    if preamble.file_length != bytes.len() as u64 {
        return Err(err(format!(
            "truncated or padded: the preamble says the file has {} bytes, found {}",
            preamble.file_length,
            bytes.len()
        )));
    }
    check_sections(&preamble)?;
    let slice = |s: Section| &bytes[s.offset as usize..(s.offset + s.length) as usize];
    let (meta_bytes, dir_bytes) = (slice(preamble.meta), slice(preamble.directory));
    let mut head = [0u8; PREAMBLE_LEN];
    head.copy_from_slice(&bytes[..PREAMBLE_LEN]);
    let sum = header_checksum(&head, meta_bytes, dir_bytes);
    if sum != preamble.header_checksum {
        return Err(err(format!(
            "header checksum mismatch: computed {sum:016x}, stored {:016x} (preamble, meta or directory damaged)",
            preamble.header_checksum
        )));
    }
    let meta_json = std::str::from_utf8(meta_bytes).map_err(|e| err(format!("meta section is not UTF-8: {e}")))?;
    let meta: Meta = serde_json::from_str(meta_json).map_err(|e| err(format!("meta section JSON: {e}")))?;
    schema::check_config(&meta.config).map_err(|e| err(format!("meta config: {e}")))?;
    let entries = read_directory(&preamble, dir_bytes)?;
    let index = check_entries(&preamble, &entries)?;
    let header = Header { preamble, meta, meta_json: meta_json.to_string(), entries, index };
    check_scales(&header)?;
    check_layouts(&header)?;
    check_schema(&header)?;
    Ok(header)
}

fn check_sections(p: &Preamble) -> Result<(), FormatError> {
    let named = [("meta", p.meta), ("directory", p.directory), ("data", p.data)];
    for (name, s) in named {
        if s.offset % SECTION_ALIGN != 0 || s.offset < PREAMBLE_LEN as u64 {
            return Err(err(format!("{name} section offset {:#x} is not a non-zero multiple of {SECTION_ALIGN}", s.offset)));
        }
        match s.end() {
            Some(end) if end <= p.file_length => {}
            _ => {
                return Err(err(format!(
                    "{name} section [{:#x}, +{}) runs past the end of the {}-byte file",
                    s.offset, s.length, p.file_length
                )))
            }
        }
    }
    for (i, (a, sa)) in named.iter().enumerate() {
        for (b, sb) in &named[i + 1..] {
            // Ends were checked above, so they cannot overflow.
            if sa.offset < sb.offset + sb.length && sb.offset < sa.offset + sa.length {
                return Err(err(format!(
                    "{a} section [{:#x}, +{}) overlaps {b} section [{:#x}, +{})",
                    sa.offset, sa.length, sb.offset, sb.length
                )));
            }
        }
    }
    Ok(())
}

fn read_directory(p: &Preamble, dir: &[u8]) -> Result<Vec<TensorEntry>, FormatError> {
    // Each record takes at least 2 + 6 + 24 bytes, which bounds the allocation by the directory size.
    let count = p.tensor_count as usize;
    if count > dir.len() / 32 {
        return Err(err(format!("tensor count {count} cannot fit a {}-byte directory", dir.len())));
    }
    let mut pos = 0;
    let mut entries = Vec::with_capacity(count);
    for i in 0..count {
        entries.push(TensorEntry::decode(dir, &mut pos, i)?);
    }
    if pos != dir.len() {
        return Err(err(format!("directory has {} bytes after its {count} records", dir.len() - pos)));
    }
    Ok(entries)
}

fn check_entries(p: &Preamble, entries: &[TensorEntry]) -> Result<HashMap<String, usize>, FormatError> {
    let mut index = HashMap::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let n = &e.name;
        if n.is_empty() {
            return Err(err(format!("directory record {i} has an empty name")));
        }
        if index.insert(n.clone(), i).is_some() {
            return Err(err(format!("tensor `{n}` appears twice in the directory")));
        }
        check_packed(e)?;
        let Some(want) = e.expected_length() else {
            return Err(err(format!("tensor `{n}`: shape {:?} overflows", e.shape)));
        };
        if want != e.length {
            return Err(err(format!(
                "tensor `{n}`: {} x {:?} in layout {} needs {want} bytes, directory says {}",
                e.dtype.name(),
                e.shape,
                e.layout.name(),
                e.length
            )));
        }
        if e.offset % TENSOR_ALIGN != 0 {
            return Err(err(format!("tensor `{n}`: data offset {:#x} is not a multiple of {TENSOR_ALIGN}", e.offset)));
        }
        match e.offset.checked_add(e.length) {
            Some(end) if end <= p.data.length => {}
            _ => {
                return Err(err(format!(
                    "tensor `{n}`: bytes [{:#x}, +{}) run past the {}-byte data section",
                    e.offset, e.length, p.data.length
                )))
            }
        }
    }
    let mut by_offset: Vec<&TensorEntry> = entries.iter().filter(|e| e.length > 0).collect();
    by_offset.sort_by_key(|e| e.offset);
    for w in by_offset.windows(2) {
        if w[0].offset + w[0].length > w[1].offset {
            return Err(err(format!("tensors `{}` and `{}` overlap at data offset {:#x}", w[0].name, w[1].name, w[1].offset)));
        }
    }
    Ok(index)
}

fn check_scales(h: &Header) -> Result<(), FormatError> {
    for e in &h.entries {
        let n = &e.name;
        if let Some(base) = n.strip_suffix("@scale") {
            match h.entry(base) {
                Some(b) if b.dtype == DType::I8 => {}
                _ => return Err(err(format!("scale tensor `{n}` has no int8 tensor `{base}`"))),
            }
            continue;
        }
        match (e.dtype, e.quant_axis) {
            (DType::I8, Some(axis)) => {
                let Some(&channels) = e.shape.get(axis as usize) else {
                    return Err(err(format!("tensor `{n}`: quantisation axis {axis} but rank {}", e.shape.len())));
                };
                let scale_name = format!("{n}@scale");
                let Some(s) = h.entry(&scale_name) else {
                    return Err(err(format!("int8 tensor `{n}` has no scale tensor `{scale_name}`")));
                };
                if s.dtype != DType::F32 || s.shape != [channels] {
                    return Err(err(format!(
                        "scale tensor `{scale_name}`: expected f32 [{channels}], found {} {:?}",
                        s.dtype.name(),
                        s.shape
                    )));
                }
            }
            (DType::I8, None) => return Err(err(format!("int8 tensor `{n}` has no quantisation axis"))),
            (_, Some(axis)) => return Err(err(format!("tensor `{n}` is {} but has quantisation axis {axis}", e.dtype.name()))),
            (_, None) => {}
        }
    }
    Ok(())
}

/// What a packed layout may hold: f32 / f16 / i8 conv weights of rank >= 4, int8 with scales along the
/// output-channel axis and a square odd kernel.
fn check_packed(e: &TensorEntry) -> Result<(), FormatError> {
    let r = e.shape.len();
    let (want_dtype, axis) = match e.layout {
        Layout::RowMajor => return Ok(()),
        Layout::Panels => (DType::F32, None),
        Layout::QPanelsF16 => (DType::F16, None),
        Layout::QPanelsI8 => (DType::I8, r.checked_sub(4).map(|a| a as u8)),
    };
    let square = e.layout != Layout::QPanelsI8 || e.conv_dims().is_some();
    if e.dtype != want_dtype || r < 4 || e.quant_axis != axis || !square {
        let what = match axis {
            None => "without quantisation".to_string(),
            Some(a) => format!("with scales along axis {a} and a square odd kernel"),
        };
        return Err(err(format!(
            "tensor `{}`: layout {} holds {} weights of rank >= 4 {what}, found {} {:?} (quantisation axis {:?})",
            e.name,
            e.layout.name(),
            want_dtype.name(),
            e.dtype.name(),
            e.shape,
            e.quant_axis
        )));
    }
    Ok(())
}

/// Every packed layout a tensor uses must be declared in the meta section with the parameters this
/// reader implements (for the f16 / int8 layouts the name carries the packing version).
fn check_layouts(h: &Header) -> Result<(), FormatError> {
    let mut seen: Vec<Layout> = Vec::new();
    for e in h.entries.iter().filter(|e| e.layout != Layout::RowMajor) {
        if seen.contains(&e.layout) {
            continue;
        }
        seen.push(e.layout);
        let Some(want) = LayoutParams::of(e.layout) else { continue };
        match h.meta.layouts.iter().find(|l| l.code == want.code) {
            Some(found) if *found == want => {}
            Some(found) => {
                return Err(err(format!(
                    "tensor `{}`: layout code {}: this reader implements {want:?}, the meta section declares {found:?} \
                     (packed by another version: convert the checkpoint again)",
                    e.name, want.code
                )))
            }
            None => {
                return Err(err(format!(
                    "tensor `{}` uses layout {} (code {}) but the meta section declares no parameters for it",
                    e.name,
                    e.layout.name(),
                    want.code
                )))
            }
        }
    }
    Ok(())
}

fn check_schema(h: &Header) -> Result<(), FormatError> {
    for r in schema::required_tensors(&h.meta.config) {
        let Some(e) = h.entry(&r.name) else {
            return Err(err(format!("tensor `{}` required by the configuration is missing", r.name)));
        };
        let found = e.shape_usize();
        if found != r.shape {
            return Err(err(format!("tensor `{}`: configuration expects shape {:?}, found {:?}", r.name, r.shape, found)));
        }
    }
    Ok(())
}
