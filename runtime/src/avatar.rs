//! The `.gav` avatar file: a lifted `Avatar` saved once per person and loaded for every reenactment.
//! Layout (all little-endian; documented in docs/avatar-format.md):
//!
//! ```text
//! 0   8  magic "GAGAVATR"
//! 8   4  version (u32, 1)
//! 12  4  channels per Gaussian (u32)
//! 16  8  Gaussian count (u64)
//! 24  8  shapecode length (u64)
//! 32  8  fingerprint of the model configuration it was lifted with (u64, `config_fingerprint`)
//! 40     positions [count,3], colors [count,channels], opacities [count], scales [count,3],
//!        rotations [count,4], shapecode [len]: f32
//! end-8  8  xxh3-64 of every byte before it (u64)
//! ```
//!
//! Colours are always f32 in the file: an avatar whose colours a session narrowed to f16 is written
//! widened (exactly), and `load` returns f32 colours (`Session::prepare_avatar` narrows them if it wants).

use std::borrow::Cow;
use std::path::Path;

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::types::{Avatar, AvatarColors};

/// First bytes of every `.gav` file.
pub const MAGIC: &[u8; 8] = b"GAGAVATR";
/// The layout version this code writes and reads.
pub const VERSION: u32 = 1;
const HEADER_LEN: usize = 40;
const TRAILER_LEN: usize = 8;

/// xxh3-64 of the configuration's JSON: an avatar only fits the model configuration it was lifted with.
pub fn config_fingerprint(cfg: &ModelConfig) -> u64 {
    // Serialising plain numbers and vectors cannot fail; an empty string would still give a stable value.
    let json = serde_json::to_string(cfg).unwrap_or_default();
    xxhash_rust::xxh3::xxh3_64(json.as_bytes())
}

/// The fixed header of a `.gav` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GavHeader {
    pub version: u32,
    pub channels: u32,
    pub count: u64,
    pub shapecode_len: u64,
    pub fingerprint: u64,
}

impl GavHeader {
    /// Total file length implied by the header, or None when it overflows.
    fn file_len(&self) -> Option<u64> {
        let per_gaussian = 3u64.checked_add(self.channels as u64)?.checked_add(1 + 3 + 4)?;
        let floats = self.count.checked_mul(per_gaussian)?.checked_add(self.shapecode_len)?;
        floats.checked_mul(4)?.checked_add((HEADER_LEN + TRAILER_LEN) as u64)
    }
}

fn format_err(path: &Path, what: impl Into<String>) -> Error {
    Error::Format { path: path.to_path_buf(), what: what.into() }
}

/// The arrays of an avatar in file order (all f32: f16 colours widened), with their names and expected lengths.
fn arrays(a: &Avatar) -> [(&'static str, Cow<'_, [f32]>, usize); 6] {
    [
        ("positions", Cow::Borrowed(&a.positions[..]), 3 * a.count),
        ("colors", a.colors.to_f32(), a.channels * a.count),
        ("opacities", Cow::Borrowed(&a.opacities[..]), a.count),
        ("scales", Cow::Borrowed(&a.scales[..]), 3 * a.count),
        ("rotations", Cow::Borrowed(&a.rotations[..]), 4 * a.count),
        ("shapecode", Cow::Borrowed(&a.shapecode[..]), a.shapecode.len()),
    ]
}

/// Serialises an avatar to the `.gav` byte layout.
pub fn to_bytes(avatar: &Avatar, cfg: &ModelConfig) -> Result<Vec<u8>> {
    let arrays = arrays(avatar);
    for (name, values, expected) in &arrays {
        if values.len() != *expected {
            return Err(Error::Other(format!(
                "avatar to save: `{name}` holds {} values, expected {expected} for {} Gaussians of {} channels",
                values.len(),
                avatar.count,
                avatar.channels
            )));
        }
    }
    let channels = u32::try_from(avatar.channels)
        .map_err(|_| Error::Other(format!("avatar to save: {} channels do not fit the format", avatar.channels)))?;
    let header = GavHeader {
        version: VERSION,
        channels,
        count: avatar.count as u64,
        shapecode_len: avatar.shapecode.len() as u64,
        fingerprint: config_fingerprint(cfg),
    };
    let len = header.file_len().ok_or_else(|| Error::Other("avatar to save: too large for the format".into()))?;
    let mut out = Vec::with_capacity(len as usize);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&header.version.to_le_bytes());
    out.extend_from_slice(&header.channels.to_le_bytes());
    out.extend_from_slice(&header.count.to_le_bytes());
    out.extend_from_slice(&header.shapecode_len.to_le_bytes());
    out.extend_from_slice(&header.fingerprint.to_le_bytes());
    for (_, values, _) in &arrays {
        values.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    }
    let checksum = xxhash_rust::xxh3::xxh3_64(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    Ok(out)
}

/// Writes `avatar` to `path`, aside and renamed into place, so a crash never leaves half a file.
pub fn save(path: &Path, avatar: &Avatar, cfg: &ModelConfig) -> Result<()> {
    crate::write_aside::write_bytes_aside(path, &to_bytes(avatar, cfg)?)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Reads and checks the header: magic, version, and the file length it implies. `path` only names the file
/// in errors.
pub fn parse_header(path: &Path, bytes: &[u8]) -> Result<GavHeader> {
    // Magic first, so a short file of another kind is named as such rather than as truncated.
    let head = &bytes[..bytes.len().min(8)];
    if head != &MAGIC[..head.len()] {
        return Err(format_err(path, format!("not a .gav avatar: magic {head:?}, expected {MAGIC:?}")));
    }
    if bytes.len() < HEADER_LEN + TRAILER_LEN {
        return Err(format_err(
            path,
            format!("truncated: a .gav file has at least {} bytes, found {}", HEADER_LEN + TRAILER_LEN, bytes.len()),
        ));
    }
    let header = GavHeader {
        version: u32_at(bytes, 8),
        channels: u32_at(bytes, 12),
        count: u64_at(bytes, 16),
        shapecode_len: u64_at(bytes, 24),
        fingerprint: u64_at(bytes, 32),
    };
    if header.version != VERSION {
        return Err(format_err(path, format!("unsupported .gav version {}, this build reads version {VERSION}", header.version)));
    }
    match header.file_len() {
        Some(n) if n == bytes.len() as u64 => Ok(header),
        Some(n) if n > bytes.len() as u64 => Err(format_err(
            path,
            format!(
                "truncated: the header ({} Gaussians, {} channels) needs {n} bytes, found {}",
                header.count,
                header.channels,
                bytes.len()
            ),
        )),
        Some(n) => Err(format_err(path, format!("{} trailing bytes after the {n} the header describes", bytes.len() as u64 - n))),
        None => Err(format_err(path, format!("header counts overflow: {} Gaussians of {} channels", header.count, header.channels))),
    }
}

/// Parses `.gav` bytes for a model of configuration `cfg`, checking every field; `path` names the file in errors.
pub fn from_bytes(path: &Path, bytes: &[u8], cfg: &ModelConfig) -> Result<Avatar> {
    let header = parse_header(path, bytes)?;
    let body = bytes.len() - TRAILER_LEN;
    let (stored, actual) = (u64_at(bytes, body), xxhash_rust::xxh3::xxh3_64(&bytes[..body]));
    if stored != actual {
        return Err(format_err(path, format!("checksum mismatch: stored {stored:016x}, computed {actual:016x} (file corrupted)")));
    }
    let expected_fp = config_fingerprint(cfg);
    if header.fingerprint != expected_fp {
        return Err(format_err(
            path,
            format!(
                "lifted with another model configuration (fingerprint {:016x}, this model {expected_fp:016x}): lift the photo again with this model",
                header.fingerprint
            ),
        ));
    }
    let want = [
        ("Gaussian count", header.count, cfg.gaussians() as u64),
        ("channels", header.channels as u64, cfg.gaussian_channels as u64),
        ("shapecode length", header.shapecode_len, cfg.flame.shape_params as u64),
    ];
    for (what, found, expected) in want {
        if found != expected {
            return Err(format_err(path, format!("{what}: expected {expected}, found {found}")));
        }
    }
    let (count, channels) = (cfg.gaussians(), cfg.gaussian_channels);
    let mut at = HEADER_LEN;
    let mut take = |name: &str, n: usize| -> Result<Vec<f32>> {
        let values: Vec<f32> = bytes[at..at + 4 * n].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(format_err(path, format!("`{name}` value {i} (byte offset {}) is {}", at + 4 * i, values[i])));
        }
        at += 4 * n;
        Ok(values)
    };
    let avatar = Avatar {
        count,
        channels,
        positions: take("positions", 3 * count)?,
        colors: AvatarColors::F32(take("colors", channels * count)?),
        opacities: take("opacities", count)?,
        scales: take("scales", 3 * count)?,
        rotations: take("rotations", 4 * count)?,
        covariances: Vec::new(),
        shapecode: take("shapecode", cfg.flame.shape_params)?,
    };
    if let Some(i) = avatar.opacities.iter().position(|o| !(0.0..=1.0).contains(o)) {
        return Err(format_err(path, format!("opacity {i} is {}, expected a value in [0, 1]", avatar.opacities[i])));
    }
    if let Some(i) = avatar.scales.iter().position(|s| *s < 0.0) {
        return Err(format_err(path, format!("scale value {i} is {}, expected >= 0", avatar.scales[i])));
    }
    Ok(avatar)
}

/// Loads a `.gav` file for a model of configuration `cfg`.
pub fn load(path: &Path, cfg: &ModelConfig) -> Result<Avatar> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    from_bytes(path, &bytes, cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gaga_kernels::testing::seeded;

    fn avatar(cfg: &ModelConfig, count: usize) -> Avatar {
        let c = cfg.gaussian_channels;
        let unit = |seed, n| seeded(seed, n).into_iter().map(|v| 0.5 + 0.5 * v).collect::<Vec<f32>>();
        Avatar {
            count,
            channels: c,
            positions: seeded(1, 3 * count),
            colors: seeded(2, c * count).into(),
            opacities: unit(3, count),
            scales: unit(4, 3 * count).into_iter().map(|v| 0.05 * v).collect(),
            rotations: seeded(5, 4 * count),
            covariances: Vec::new(),
            shapecode: seeded(6, cfg.flame.shape_params),
        }
    }

    fn temp_path(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("gaga-avatar-test-{}-{name}.gav", std::process::id()))
    }

    fn load_err(bytes: &[u8], cfg: &ModelConfig) -> String {
        from_bytes(Path::new("person.gav"), bytes, cfg).expect_err("the file is bad").to_string()
    }

    fn rechecksum(bytes: &mut [u8]) {
        let body = bytes.len() - TRAILER_LEN;
        let sum = xxhash_rust::xxh3::xxh3_64(&bytes[..body]);
        bytes[body..].copy_from_slice(&sum.to_le_bytes());
    }

    #[test]
    fn saved_avatar_loads_back_identical_and_leaves_no_temporary_file() {
        let cfg = ModelConfig::small();
        let a = avatar(&cfg, cfg.gaussians());
        let path = temp_path("roundtrip");
        save(&path, &a, &cfg).expect("saves");
        let back = load(&path, &cfg).expect("loads");
        assert_eq!(back, a);
        assert!(!crate::write_aside::temporary_path(&path).exists());
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert_eq!(len as usize, HEADER_LEN + TRAILER_LEN + 4 * (cfg.gaussians() * (3 + 32 + 1 + 3 + 4) + 300));
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn truncated_files_fail_with_the_sizes() {
        let cfg = ModelConfig::small();
        let bytes = to_bytes(&avatar(&cfg, cfg.gaussians()), &cfg).expect("serialises");
        let err = load_err(&bytes[..bytes.len() - 100], &cfg);
        assert!(err.contains("person.gav") && err.contains("truncated") && err.contains(&bytes.len().to_string()), "{err}");
        let err = load_err(&bytes[..20], &cfg);
        assert!(err.contains("truncated") && err.contains("20"), "{err}");
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0; 4]);
        assert!(load_err(&longer, &cfg).contains("4 trailing bytes"));
    }

    #[test]
    fn wrong_magic_and_version_are_named() {
        let cfg = ModelConfig::small();
        let mut bytes = to_bytes(&avatar(&cfg, cfg.gaussians()), &cfg).expect("serialises");
        bytes[8] = 7;
        assert!(load_err(&bytes, &cfg).contains("version 7"));
        bytes[0] = b'X';
        let err = load_err(&bytes, &cfg);
        assert!(err.contains("not a .gav avatar") && err.contains("magic"), "{err}");
        let err = from_bytes(Path::new("model.gaga"), b"GAGAMODL", &cfg).expect_err("another format").to_string();
        assert!(err.contains("model.gaga") && err.contains("magic"), "{err}");
    }

    #[test]
    fn an_avatar_lifted_with_another_configuration_is_refused() {
        let small = ModelConfig::small();
        let bytes = to_bytes(&avatar(&small, small.gaussians()), &small).expect("serialises");
        let err = load_err(&bytes, &ModelConfig::official());
        assert!(err.contains("another model configuration") && err.contains(&format!("{:016x}", config_fingerprint(&small))), "{err}");
        assert_ne!(config_fingerprint(&small), config_fingerprint(&ModelConfig::official()));
    }

    #[test]
    fn a_flipped_byte_fails_the_checksum() {
        let cfg = ModelConfig::small();
        let mut bytes = to_bytes(&avatar(&cfg, cfg.gaussians()), &cfg).expect("serialises");
        bytes[HEADER_LEN + 1000] ^= 0x10;
        assert!(load_err(&bytes, &cfg).contains("checksum mismatch"));
    }

    #[test]
    fn counts_that_do_not_fit_the_model_are_named() {
        let cfg = ModelConfig::small();
        let bytes = to_bytes(&avatar(&cfg, 10), &cfg).expect("serialises");
        let err = load_err(&bytes, &cfg);
        assert!(err.contains("Gaussian count") && err.contains("expected 8223, found 10"), "{err}");
    }

    #[test]
    fn non_finite_and_out_of_range_values_are_named_with_their_offset() {
        let cfg = ModelConfig::small();
        let mut a = avatar(&cfg, cfg.gaussians());
        let AvatarColors::F32(colors) = &mut a.colors else { unreachable!("the test avatar has f32 colours") };
        colors[5] = f32::NAN;
        let err = load_err(&to_bytes(&a, &cfg).expect("serialises"), &cfg);
        assert!(err.contains("`colors` value 5") && err.contains("NaN"), "{err}");
        let mut a = avatar(&cfg, cfg.gaussians());
        a.opacities[2] = 1.5;
        let err = load_err(&to_bytes(&a, &cfg).expect("serialises"), &cfg);
        assert!(err.contains("opacity 2 is 1.5"), "{err}");
    }

    #[test]
    fn f16_colours_are_saved_widened_so_the_file_format_does_not_change() {
        let cfg = ModelConfig::small();
        let a = avatar(&cfg, cfg.gaussians());
        let mut half = a.clone();
        half.colors = half.colors.into_f16();
        assert!(half.colors.is_f16());
        let mut wide = half.clone();
        wide.colors = wide.colors.into_f32();
        let bytes = to_bytes(&half, &cfg).expect("serialises");
        assert_eq!(bytes, to_bytes(&wide, &cfg).expect("serialises"));
        assert_eq!(from_bytes(Path::new("half.gav"), &bytes, &cfg).expect("loads"), wide);
    }

    #[test]
    fn overflowing_header_counts_fail_cleanly() {
        let cfg = ModelConfig::small();
        let mut bytes = to_bytes(&avatar(&cfg, cfg.gaussians()), &cfg).expect("serialises");
        bytes[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        rechecksum(&mut bytes);
        assert!(load_err(&bytes, &cfg).contains("overflow"));
    }

    #[test]
    fn inconsistent_avatars_are_not_saved() {
        let cfg = ModelConfig::small();
        let mut a = avatar(&cfg, cfg.gaussians());
        a.scales.pop();
        let err = to_bytes(&a, &cfg).expect_err("short scales").to_string();
        assert!(err.contains("`scales`"), "{err}");
    }
}
