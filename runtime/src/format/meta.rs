//! The meta section: UTF-8 JSON with the configuration, provenance, precision policy and the list of
//! source tensors left out. No timestamps, so equal inputs give byte-identical files.

use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub config: ModelConfig,
    pub provenance: Provenance,
    pub precision: PrecisionMeta,
    pub omitted: Vec<Omitted>,
    /// Packed layouts some tensor uses, with their parameters (absent when every tensor is row-major,
    /// so row-major files are unchanged byte for byte).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layouts: Vec<LayoutParams>,
}

/// The parameters of a packed layout as the writer used them; a reader refuses parameters other than
/// the ones it implements, naming both.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutParams {
    /// The directory's layout code.
    pub code: u8,
    pub name: String,
    /// Rows per panel.
    pub panel_rows: u32,
    /// Element type of the panels (`f32`).
    pub element: String,
}

impl LayoutParams {
    /// The parameters of `Layout::Panels` this version reads and writes.
    pub fn panels() -> LayoutParams {
        LayoutParams { code: 1, name: "panels8".into(), panel_rows: super::directory::PANEL_ROWS as u32, element: "f32".into() }
    }

    /// The parameters this version reads and writes for `layout` (`None` for row-major). The packed
    /// f16 / int8 names carry `gaga_kernels::qgemm::PACK_VERSION`, so another packing version is refused.
    pub fn of(layout: super::Layout) -> Option<LayoutParams> {
        use super::Layout;
        let q = |element: &str| LayoutParams {
            code: layout as u8,
            name: format!("{}-v{}", layout.name(), gaga_kernels::qgemm::PACK_VERSION),
            panel_rows: super::directory::PANEL_ROWS as u32,
            element: element.into(),
        };
        match layout {
            Layout::RowMajor => None,
            Layout::Panels => Some(LayoutParams::panels()),
            Layout::QPanelsF16 => Some(q("f16")),
            Layout::QPanelsI8 => Some(q("i8")),
        }
    }
}

/// Where the weights came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// Hex SHA-256 of the checkpoint file as read.
    pub checkpoint_sha256: String,
    /// Hex SHA-256 of the FLAME asset, empty when none was given.
    pub flame_sha256: String,
    pub converter_version: String,
    /// The program that wrote the file (`gaga convert`, a test, ...).
    pub created_by: String,
}

/// The precision asked for and the rules that kept some tensors wider.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrecisionMeta {
    /// `fp32`, `fp16` or `int8`.
    pub requested: String,
    /// User overrides as given (`PATTERN=fp32`).
    pub keep_overrides: Vec<String>,
    /// The policy, first match wins.
    pub rules: Vec<PrecisionRule>,
}

/// `pattern` is a tensor-name glob (see `glob_match`); a tensor it matches is stored
/// at no lower precision than `precision`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrecisionRule {
    pub pattern: String,
    pub precision: String,
    pub reason: String,
}

/// A source tensor that is not in the file, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Omitted {
    pub name: String,
    pub reason: String,
}

/// Matches `name` against a glob where `*` stands for any run of characters (including dots) and `?`
/// for exactly one character.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && (p[pi] == n[ni] || p[pi] == b'?') {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}
