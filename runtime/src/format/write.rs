//! The writer's half: place sections and tensors, encode the directory, seal the preamble. The converter
//! streams tensor bytes into the places `plan` gives; `build` assembles a whole file in memory (tests,
//! fuzz seeds).

use super::directory::TensorEntry;
use super::header::{
    align_up, header_checksum, Preamble, Section, PREAMBLE_LEN, SECTION_ALIGN, TENSOR_ALIGN, VERSION_MAJOR, VERSION_MINOR,
};

/// Encodes all records in order.
pub fn encode_directory(entries: &[TensorEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        e.encode(&mut out);
    }
    out
}

/// Assigns each entry's `offset` (in order, 256-aligned; `length` must be set) and returns the preamble
/// for a meta section of `meta_len` bytes. The checksums are filled in later by `finish_preamble`.
///
/// Panics if a name is longer than 65535 bytes or the sizes overflow u64: writer inputs come from
/// validated checkpoints, so either is a bug in the caller.
pub fn plan(meta_len: usize, entries: &mut [TensorEntry]) -> Preamble {
    assert!(entries.iter().all(|e| e.name.len() <= u16::MAX as usize), "tensor name longer than 65535 bytes");
    let mut data_len = 0u64;
    for e in entries.iter_mut() {
        e.offset = align_up(data_len, TENSOR_ALIGN).expect("data section size overflows u64");
        data_len = e.offset + e.length;
    }
    let dir_len = encode_directory(entries).len() as u64;
    let meta = Section { offset: SECTION_ALIGN, length: meta_len as u64 };
    let directory = Section { offset: align_up(meta.offset + meta.length, SECTION_ALIGN).expect("overflow"), length: dir_len };
    let data = Section { offset: align_up(directory.offset + dir_len, SECTION_ALIGN).expect("overflow"), length: data_len };
    Preamble {
        major: VERSION_MAJOR,
        minor: VERSION_MINOR,
        flags: 0,
        file_length: data.offset + data.length,
        meta,
        directory,
        data,
        tensor_count: u32::try_from(entries.len()).expect("more than 2^32 tensors"),
        header_checksum: 0,
    }
}

/// The preamble's final bytes, with the header checksum over it, `meta` and `directory`.
pub fn finish_preamble(p: &Preamble, meta: &[u8], directory: &[u8]) -> [u8; PREAMBLE_LEN] {
    let mut p = p.clone();
    p.header_checksum = 0;
    p.header_checksum = header_checksum(&p.encode(), meta, directory);
    p.encode()
}

/// A complete file in memory. Each tensor's `length` and `checksum` are taken from its bytes.
pub fn build(meta_json: &[u8], tensors: Vec<(TensorEntry, Vec<u8>)>) -> Vec<u8> {
    let (mut entries, datas): (Vec<TensorEntry>, Vec<Vec<u8>>) = tensors.into_iter().unzip();
    for (e, d) in entries.iter_mut().zip(&datas) {
        e.length = d.len() as u64;
        e.checksum = xxhash_rust::xxh3::xxh3_64(d);
    }
    let p = plan(meta_json.len(), &mut entries);
    let dir = encode_directory(&entries);
    let mut out = vec![0u8; p.file_length as usize];
    out[..PREAMBLE_LEN].copy_from_slice(&finish_preamble(&p, meta_json, &dir));
    let put = |out: &mut Vec<u8>, at: u64, b: &[u8]| out[at as usize..at as usize + b.len()].copy_from_slice(b);
    put(&mut out, p.meta.offset, meta_json);
    put(&mut out, p.directory.offset, &dir);
    for (e, d) in entries.iter().zip(&datas) {
        put(&mut out, p.data.offset + e.offset, d);
    }
    out
}
