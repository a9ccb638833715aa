//! Torch zip checkpoints (`torch.save` since 1.6): `<prefix>/data.pkl` holds the object tree, with each
//! tensor's storage a persistent id naming the entry `<prefix>/data/<key>`. Entries are stored
//! uncompressed, so tensors are read in place from the memory map.
//!
//! Exactly what `torch.load(weights_only=True)` accepts is read (`interpret::ALLOWED`); any other global
//! fails with its name.

mod interpret;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use gaga_runtime::pickle;
use gaga_runtime::{Error, Result};

use crate::source::SourceFile;

pub use interpret::ALLOWED;

/// Opens the torch zip mapped in `map`.
pub(crate) fn open(path: &Path, map: memmap2::Mmap) -> Result<SourceFile> {
    let err = |what: String| Error::Format { path: path.to_path_buf(), what };
    let entries = stored_entries(&map).map_err(|e| err(format!("torch zip: {e}")))?;
    let pkl: Vec<&String> = entries.keys().filter(|n| n.ends_with("/data.pkl") || n.as_str() == "data.pkl").collect();
    let pkl_name = match pkl.as_slice() {
        [one] => (*one).clone(),
        [] => return Err(err("torch zip has no `*/data.pkl` entry".into())),
        many => return Err(err(format!("torch zip has {} `data.pkl` entries, expected one", many.len()))),
    };
    let prefix = pkl_name.strip_suffix("data.pkl").unwrap_or("").to_string();
    if let Some(r) = entries.get(&format!("{prefix}byteorder")) {
        let order = map.get(r.clone()).unwrap_or(b"");
        if order != b"little" {
            return Err(err(format!(
                "`{prefix}byteorder` is `{}`, only little-endian checkpoints are read",
                String::from_utf8_lossy(order)
            )));
        }
    }
    let pkl_range = entries[&pkl_name].clone();
    let root = pickle::load(&map[pkl_range], ALLOWED).map_err(|e| err(format!("`{pkl_name}`: {e}")))?;
    let storage = |key: &str| entries.get(&format!("{prefix}data/{key}")).cloned();
    let tensors = interpret::collect_tensors(&root, &storage).map_err(|e| err(format!("`{pkl_name}`: {e}")))?;
    Ok(SourceFile { path: path.to_path_buf(), map, tensors, root: Some(root) })
}

/// Name -> byte range of every entry, refusing compressed entries (torch never compresses, and a
/// stored entry can be read in place).
fn stored_entries(bytes: &[u8]) -> std::result::Result<HashMap<String, Range<usize>>, String> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| e.to_string())?;
    let mut out = HashMap::with_capacity(zip.len());
    for i in 0..zip.len() {
        let f = zip.by_index_raw(i).map_err(|e| format!("entry {i}: {e}"))?;
        let name = f.name().to_string();
        if f.compression() != zip::CompressionMethod::Stored {
            return Err(format!("entry `{name}` is compressed ({:?}); torch writes stored entries", f.compression()));
        }
        let start = usize::try_from(f.data_start()).map_err(|_| format!("entry `{name}` offset overflows"))?;
        let len = usize::try_from(f.compressed_size()).map_err(|_| format!("entry `{name}` size overflows"))?;
        let end = start.checked_add(len).filter(|&e| e <= bytes.len());
        let end = end.ok_or_else(|| format!("entry `{name}` ({len} bytes at {start:#x}) runs past the end of the file"))?;
        out.insert(name, start..end);
    }
    Ok(out)
}
