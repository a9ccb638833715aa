//! Writes files in `torch.save`'s zip layout, streaming: each entry's bytes go straight to the output
//! and its CRC and size follow in a data descriptor (zip flag bit 3), as torch's own writer does, so a
//! 750 MB checkpoint never exists twice in memory and the output needs no seeking.
//!
//! Layout (torch >= 2.1): `<prefix>/data.pkl`, `.format_version`, `.storage_alignment`, `byteorder`,
//! `data/<n>` (one per storage, stored uncompressed with the payload aligned to 64 bytes through a
//! padding extra field `FB`), `version` (`3`), `.data/serialization_id`. Plain zip32: the writer refuses
//! archives past 4 GiB instead of writing zip64 records.

use std::io::{self, Write};

use sha2::{Digest, Sha256};

use super::pickle::Py;

/// Payload alignment inside the archive; torch >= 2.1 uses 64 and records it in `.storage_alignment`.
pub const ALIGNMENT: u64 = 64;

const LOCAL_HEADER: u32 = 0x0403_4b50;
const DATA_DESCRIPTOR: u32 = 0x0807_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END_OF_CENTRAL_DIR: u32 = 0x0605_4b50;
/// Bit 3: sizes and CRC follow the data; bit 11: names are UTF-8.
const FLAGS: u16 = 0x0808;
/// 1980-01-01 in MS-DOS date format, the earliest valid date (timestamps carry nothing here).
const DOS_DATE: u16 = 0x0021;
const VERSION: u16 = 20;

/// Element type of a stored tensor, as torch names its storage classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    I64,
}

impl DType {
    fn storage_class(self) -> &'static str {
        match self {
            DType::F32 => "FloatStorage",
            DType::I64 => "LongStorage",
        }
    }
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::I64 => 8,
        }
    }
}

/// The pickled form of a contiguous tensor whose bytes are archive entry `data/<storage>`:
/// `torch._utils._rebuild_tensor_v2(pid, 0, shape, strides, False, OrderedDict())` with persistent id
/// `('storage', torch.<Dtype>Storage, '<storage>', 'cpu', numel)`.
pub fn tensor_ref(storage: usize, dtype: DType, shape: &[usize]) -> Py {
    let numel: usize = shape.iter().product();
    let mut strides = vec![1i64; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1] as i64;
    }
    let pid = Py::Tuple(vec![
        Py::str("storage"),
        Py::global("torch", dtype.storage_class()),
        Py::Str(storage.to_string()),
        Py::str("cpu"),
        Py::Int(numel as i64),
    ]);
    Py::Reduce {
        callable: Box::new(Py::global("torch._utils", "_rebuild_tensor_v2")),
        args: vec![
            Py::PersistentId(Box::new(pid)),
            Py::Int(0),
            Py::Tuple(shape.iter().map(|&s| Py::Int(s as i64)).collect()),
            Py::Tuple(strides.into_iter().map(Py::Int).collect()),
            Py::Bool(false),
            Py::ordered_dict(Vec::new(), None),
        ],
        items: Vec::new(),
        state: None,
    }
}

/// Writes a whole torch archive: `top` pickled as `data.pkl`, then `storages` data entries whose bytes
/// `write_storage(n, sink)` streams (little-endian), then the trailing records.
pub fn write_torch_archive<W: Write>(
    out: W,
    top: &Py,
    storages: usize,
    mut write_storage: impl FnMut(usize, &mut EntryWriter<'_, W>) -> io::Result<()>,
) -> io::Result<W> {
    let pickle = super::pickle::to_pickle(top);
    let mut zip = ZipWriter::new(out, "archive");
    zip.add("data.pkl", &pickle)?;
    zip.add(".format_version", b"1")?;
    zip.add(".storage_alignment", ALIGNMENT.to_string().as_bytes())?;
    zip.add("byteorder", b"little")?;
    for n in 0..storages {
        zip.add_streamed(&format!("data/{n}"), |w| write_storage(n, w))?;
    }
    zip.add("version", b"3\n")?;
    zip.add(".data/serialization_id", serialization_id(&pickle).as_bytes())?;
    zip.finish()
}

/// torch writes a random 40-digit id; a digest of the pickle keeps seeded files byte-reproducible.
fn serialization_id(pickle: &[u8]) -> String {
    let digest = Sha256::digest(pickle);
    digest.iter().take(20).map(|b| format!("{:02}", b % 100)).collect()
}

struct CentralEntry {
    name: String,
    crc: u32,
    size: u32,
    offset: u32,
}

/// A streaming zip writer for stored (uncompressed) entries with 64-byte-aligned payloads.
pub struct ZipWriter<W: Write> {
    out: W,
    pos: u64,
    prefix: String,
    entries: Vec<CentralEntry>,
}

/// The sink for one entry's bytes; counts them and keeps the running CRC-32.
pub struct EntryWriter<'a, W: Write> {
    zip: &'a mut ZipWriter<W>,
    crc: crc32fast::Hasher,
    size: u64,
}

impl<W: Write> Write for EntryWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.zip.out.write(buf)?;
        self.crc.update(&buf[..n]);
        self.size += n as u64;
        self.zip.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.zip.out.flush()
    }
}

fn too_big(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{what} exceeds the zip32 limit of 4 GiB (zip64 is not written)"))
}

impl<W: Write> ZipWriter<W> {
    /// Entries are named `<prefix>/<name>`.
    pub fn new(out: W, prefix: &str) -> Self {
        ZipWriter { out, pos: 0, prefix: prefix.to_string(), entries: Vec::new() }
    }

    fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// Adds an entry whose bytes are all at hand.
    pub fn add(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.add_streamed(name, |w| w.write_all(bytes))
    }

    /// Adds an entry whose bytes `fill` writes into the given sink.
    pub fn add_streamed(&mut self, name: &str, fill: impl FnOnce(&mut EntryWriter<'_, W>) -> io::Result<()>) -> io::Result<()> {
        let full = format!("{}/{}", self.prefix, name);
        let offset = u32::try_from(self.pos).map_err(|_| too_big("archive"))?;
        let name_end = self.pos + 30 + full.len() as u64 + 4;
        let pad = (ALIGNMENT - name_end % ALIGNMENT) % ALIGNMENT;
        let mut header = Vec::with_capacity(30 + full.len() + 4 + pad as usize);
        header.extend_from_slice(&LOCAL_HEADER.to_le_bytes());
        for v in [VERSION, FLAGS, 0, 0, DOS_DATE] {
            header.extend_from_slice(&v.to_le_bytes());
        }
        header.extend_from_slice(&[0; 12]); // CRC and sizes: in the data descriptor
        header.extend_from_slice(&(full.len() as u16).to_le_bytes());
        header.extend_from_slice(&(4 + pad as u16).to_le_bytes());
        header.extend_from_slice(full.as_bytes());
        header.extend_from_slice(b"FB");
        header.extend_from_slice(&(pad as u16).to_le_bytes());
        header.resize(header.len() + pad as usize, b'Z');
        self.raw(&header)?;

        let mut entry = EntryWriter { zip: self, crc: crc32fast::Hasher::new(), size: 0 };
        fill(&mut entry)?;
        let (crc, size) = (entry.crc.finalize(), entry.size);
        let size = u32::try_from(size).map_err(|_| too_big(&full))?;

        let mut desc = Vec::with_capacity(16);
        for v in [DATA_DESCRIPTOR, crc, size, size] {
            desc.extend_from_slice(&v.to_le_bytes());
        }
        self.raw(&desc)?;
        self.entries.push(CentralEntry { name: full, crc, size, offset });
        Ok(())
    }

    /// Writes the central directory and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        let start = u32::try_from(self.pos).map_err(|_| too_big("archive"))?;
        let count =
            u16::try_from(self.entries.len()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "more than 65535 zip entries"))?;
        let mut dir = Vec::new();
        for e in &self.entries {
            dir.extend_from_slice(&CENTRAL_HEADER.to_le_bytes());
            for v in [VERSION, VERSION, FLAGS, 0, 0, DOS_DATE] {
                dir.extend_from_slice(&v.to_le_bytes());
            }
            for v in [e.crc, e.size, e.size] {
                dir.extend_from_slice(&v.to_le_bytes());
            }
            for v in [e.name.len() as u16, 0, 0, 0, 0] {
                dir.extend_from_slice(&v.to_le_bytes());
            }
            dir.extend_from_slice(&0u32.to_le_bytes()); // external attributes
            dir.extend_from_slice(&e.offset.to_le_bytes());
            dir.extend_from_slice(e.name.as_bytes());
        }
        let dir_len = u32::try_from(dir.len()).map_err(|_| too_big("central directory"))?;
        dir.extend_from_slice(&END_OF_CENTRAL_DIR.to_le_bytes());
        for v in [0u16, 0, count, count] {
            dir.extend_from_slice(&v.to_le_bytes());
        }
        dir.extend_from_slice(&dir_len.to_le_bytes());
        dir.extend_from_slice(&start.to_le_bytes());
        dir.extend_from_slice(&0u16.to_le_bytes());
        self.raw(&dir)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }
    fn u16_at(b: &[u8], at: usize) -> usize {
        u16::from_le_bytes([b[at], b[at + 1]]) as usize
    }

    /// Walks the central directory the way a reader does and returns (name, payload offset, size, crc).
    fn entries(zip: &[u8]) -> Vec<(String, usize, usize, u32)> {
        let eocd = zip.len() - 22;
        assert_eq!(u32_at(zip, eocd), END_OF_CENTRAL_DIR);
        let count = u16_at(zip, eocd + 10);
        let mut at = u32_at(zip, eocd + 16) as usize;
        let mut out = Vec::new();
        for _ in 0..count {
            assert_eq!(u32_at(zip, at), CENTRAL_HEADER);
            let crc = u32_at(zip, at + 16);
            let size = u32_at(zip, at + 24) as usize;
            let name_len = u16_at(zip, at + 28);
            let local = u32_at(zip, at + 42) as usize;
            let name = String::from_utf8(zip[at + 46..at + 46 + name_len].to_vec()).expect("utf-8 name");
            let data = local + 30 + u16_at(zip, local + 26) + u16_at(zip, local + 28);
            out.push((name, data, size, crc));
            at += 46 + name_len;
        }
        out
    }

    #[test]
    fn payloads_are_aligned_and_checksummed() {
        let mut zip = ZipWriter::new(Vec::new(), "archive");
        zip.add("a", b"hello").expect("write to memory");
        zip.add_streamed("data/0", |w| {
            w.write_all(&[1, 2, 3])?;
            w.write_all(&[4; 61])
        })
        .expect("write to memory");
        let bytes = zip.finish().expect("write to memory");
        let found = entries(&bytes);
        assert_eq!(found.len(), 2);
        for (name, data, size, crc) in found {
            assert_eq!(data as u64 % ALIGNMENT, 0, "{name} payload offset {data}");
            assert_eq!(crc32fast::hash(&bytes[data..data + size]), crc, "{name} crc");
        }
        assert_eq!(&bytes[64..69], b"hello");
    }

    #[test]
    fn tensor_ref_has_contiguous_strides() {
        let Py::Reduce { args, .. } = tensor_ref(3, DType::F32, &[2, 3, 4]) else { panic!("not a reduce") };
        assert_eq!(args[3], Py::Tuple(vec![Py::Int(12), Py::Int(4), Py::Int(1)]));
        let Py::Reduce { args: scalar, .. } = tensor_ref(0, DType::I64, &[]) else { panic!("not a reduce") };
        assert_eq!(scalar[3], Py::Tuple(vec![]));
    }
}
