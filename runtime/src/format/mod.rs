//! The `.gaga` model file: bytes in, a validated view or an error out. This module opens no files and
//! knows layers only through `schema` (which tensors a configuration needs). Layout, field by field, is
//! in `docs/format.md`:
//!
//! ```text
//! 0        preamble (128 bytes): magic, version, flags, section table, tensor count, header checksum
//! 16384    meta section: UTF-8 JSON (`meta::Meta`)
//! 16384*k  directory: one `TensorEntry` record per tensor
//! 16384*m  data: tensor bytes, each tensor at a multiple of 256 from the section start
//! ```
//!
//! `parse` checks everything later stages trust, once; `View::verify` additionally hashes every
//! tensor. The writer side (`plan`, `encode_directory`, `finish_preamble`, `build`) is used by the
//! converter and by tests, so there is one piece of code per encoding.

pub mod directory;
pub mod header;
pub mod meta;
pub mod panels;
pub mod schema;
mod validate;
mod write;

#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod tests_panels;
#[cfg(test)]
mod tests_qpanels;

use std::collections::HashMap;

pub use directory::{DType, Layout, Reason, Stage, TensorEntry, PANEL_ROWS};
pub use header::{Preamble, Section};
pub use meta::{LayoutParams, Meta, Omitted, PrecisionMeta, PrecisionRule, Provenance};
pub use write::{build, encode_directory, finish_preamble, plan};

/// Why bytes are not a valid model file: one sentence naming the check, the place and the values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}")]
pub struct FormatError {
    pub what: String,
}

impl FormatError {
    pub fn new(what: String) -> Self {
        FormatError { what }
    }
}

/// The parsed and validated header: everything but the tensor bytes, owned, so a `Model` can keep it
/// next to its memory map.
#[derive(Clone, Debug)]
pub struct Header {
    pub preamble: Preamble,
    pub meta: Meta,
    /// The meta section as stored.
    pub meta_json: String,
    pub entries: Vec<TensorEntry>,
    index: HashMap<String, usize>,
}

impl Header {
    /// Parses and validates `bytes` as a complete model file.
    pub fn parse(bytes: &[u8]) -> Result<Header, FormatError> {
        validate::parse(bytes)
    }

    /// The directory entry of `name`.
    pub fn entry(&self, name: &str) -> Option<&TensorEntry> {
        self.index.get(name).map(|&i| &self.entries[i])
    }

    /// The bytes of `entry` inside `bytes`, which must be the file this header was parsed from (the
    /// ranges were checked then).
    pub fn data<'a>(&self, bytes: &'a [u8], entry: &TensorEntry) -> &'a [u8] {
        let start = (self.preamble.data.offset + entry.offset) as usize;
        &bytes[start..start + entry.length as usize]
    }

    /// Hashes every tensor and compares with its directory checksum; the error names the first
    /// tensor that differs.
    pub fn verify(&self, bytes: &[u8]) -> Result<(), FormatError> {
        for e in &self.entries {
            let found = xxhash_rust::xxh3::xxh3_64(self.data(bytes, e));
            if found != e.checksum {
                return Err(FormatError::new(format!(
                    "tensor `{}` at data offset {:#x}: checksum {found:016x}, directory says {:016x}",
                    e.name, e.offset, e.checksum
                )));
            }
        }
        Ok(())
    }
}

/// A validated file borrowed from memory: the header plus the bytes.
pub struct View<'a> {
    pub header: Header,
    pub bytes: &'a [u8],
}

impl<'a> View<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<View<'a>, FormatError> {
        Ok(View { header: Header::parse(bytes)?, bytes })
    }

    /// Entry and bytes of `name`.
    pub fn tensor(&self, name: &str) -> Option<(&TensorEntry, &'a [u8])> {
        let e = self.header.entry(name)?;
        Some((e, self.header.data(self.bytes, e)))
    }
}
