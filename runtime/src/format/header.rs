//! The 128-byte preamble at offset 0: magic, version, section table, file length, header checksum.

use super::FormatError;

/// First 8 bytes of every `.gaga` file (the PNG trick: a high byte, CR LF, and ^Z catch text-mode damage).
pub const MAGIC: [u8; 8] = *b"\x89GAGA\r\n\x1a";
pub const VERSION_MAJOR: u16 = 1;
pub const VERSION_MINOR: u16 = 0;
pub const PREAMBLE_LEN: usize = 128;
/// Every section starts at a multiple of this (covers 4 KiB and 16 KiB page kernels).
pub const SECTION_ALIGN: u64 = 16384;
/// Every tensor starts at a multiple of this within the data section.
pub const TENSOR_ALIGN: u64 = 256;
/// Flag bits a reader must understand to read the file; none are defined in 1.0. The high 16 bits are
/// optional hints a reader may ignore.
pub const REQUIRED_FLAGS_MASK: u32 = 0x0000_ffff;
/// Byte range of the header checksum inside the preamble (zeroed while hashing).
pub const CHECKSUM_AT: usize = 80;

/// Offset and length in bytes of one section, from the start of the file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Section {
    pub offset: u64,
    pub length: u64,
}

impl Section {
    pub fn end(&self) -> Option<u64> {
        self.offset.checked_add(self.length)
    }
}

/// The decoded preamble. Field offsets are documented in `docs/format.md`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Preamble {
    pub major: u16,
    pub minor: u16,
    pub flags: u32,
    pub file_length: u64,
    pub meta: Section,
    pub directory: Section,
    pub data: Section,
    pub tensor_count: u32,
    pub header_checksum: u64,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl Preamble {
    /// Encodes the preamble; reserved bytes are zero.
    pub fn encode(&self) -> [u8; PREAMBLE_LEN] {
        let mut b = [0u8; PREAMBLE_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&self.major.to_le_bytes());
        b[10..12].copy_from_slice(&self.minor.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.file_length.to_le_bytes());
        let fields = [self.meta.offset, self.meta.length, self.directory.offset, self.directory.length, self.data.offset, self.data.length];
        for (i, v) in fields.iter().enumerate() {
            b[24 + 8 * i..32 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        b[72..76].copy_from_slice(&self.tensor_count.to_le_bytes());
        b[CHECKSUM_AT..CHECKSUM_AT + 8].copy_from_slice(&self.header_checksum.to_le_bytes());
        b
    }

    /// Decodes and checks magic, version, flags and reserved bytes; section bounds are checked by the
    /// caller, which knows the file length.
    pub fn decode(b: &[u8]) -> Result<Preamble, FormatError> {
        if b.len() < PREAMBLE_LEN {
            return Err(FormatError::new(format!("truncated: file has {} bytes, the preamble alone needs {PREAMBLE_LEN}", b.len())));
        }
        if b[0..8] != MAGIC {
            return Err(FormatError::new(format!("not a .gaga file: magic is {:02x?}, expected {:02x?}", &b[0..8], MAGIC)));
        }
        let p = Preamble {
            major: u16_at(b, 8),
            minor: u16_at(b, 10),
            flags: u32_at(b, 12),
            file_length: u64_at(b, 16),
            meta: Section { offset: u64_at(b, 24), length: u64_at(b, 32) },
            directory: Section { offset: u64_at(b, 40), length: u64_at(b, 48) },
            data: Section { offset: u64_at(b, 56), length: u64_at(b, 64) },
            tensor_count: u32_at(b, 72),
            header_checksum: u64_at(b, CHECKSUM_AT),
        };
        if p.major != VERSION_MAJOR {
            return Err(FormatError::new(format!(
                "format version {}.{} is not readable: this reader reads major version {VERSION_MAJOR}",
                p.major, p.minor
            )));
        }
        if p.flags & REQUIRED_FLAGS_MASK != 0 {
            return Err(FormatError::new(format!(
                "unknown required flags 0x{:04x} (this reader knows none)",
                p.flags & REQUIRED_FLAGS_MASK
            )));
        }
        let reserved = b[76..80].iter().chain(&b[88..PREAMBLE_LEN]).any(|&x| x != 0);
        if reserved {
            return Err(FormatError::new("reserved preamble bytes 76..80 or 88..128 are not zero".to_string()));
        }
        Ok(p)
    }
}

/// xxh3-64 over the preamble with its checksum field zeroed, then the meta bytes, then the directory.
pub fn header_checksum(preamble: &[u8; PREAMBLE_LEN], meta: &[u8], directory: &[u8]) -> u64 {
    let mut p = *preamble;
    p[CHECKSUM_AT..CHECKSUM_AT + 8].fill(0);
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&p);
    h.update(meta);
    h.update(directory);
    h.digest()
}

/// `v` rounded up to a multiple of `align` (a power of two), or `None` on overflow.
pub fn align_up(v: u64, align: u64) -> Option<u64> {
    Some(v.checked_add(align - 1)? & !(align - 1))
}
