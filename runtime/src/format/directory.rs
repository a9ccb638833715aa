//! Directory records: one per tensor, in file order. Each enum's code is its on-disk byte.

use super::FormatError;

/// Element type of a stored tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32 = 0,
    F16 = 1,
    I8 = 2,
    I32 = 3,
    I64 = 4,
    U8 = 5,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 => 2,
            DType::I8 | DType::U8 => 1,
            DType::I64 => 8,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::I8 => "i8",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::U8 => "u8",
        }
    }
    pub fn is_integer(self) -> bool {
        matches!(self, DType::I32 | DType::I64 | DType::U8)
    }
    fn from_code(c: u8) -> Option<Self> {
        [DType::F32, DType::F16, DType::I8, DType::I32, DType::I64, DType::U8].into_iter().find(|d| *d as u8 == c)
    }
}

/// How elements are arranged. Codes 4..=255 stay reserved for other packed layouts (for example blocked
/// conv weights for a GPU backend).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// As in the checkpoint.
    RowMajor = 0,
    /// f32 conv weights in the CPU SGEMM's panels (`docs/format.md`): the weight is read as a matrix
    /// `[m, kk]` with `kk` the product of the last three dims (`c_in * k * k`) and `m` the product of the
    /// others; rows are grouped in panels of [`PANEL_ROWS`], zero-padded, element `(row, q)` at
    /// `(row / 8) * 8 * kk + q * 8 + row % 8`.
    Panels = 1,
    /// f16 refiner conv weights in the layout `gaga_kernels::qgemm` reads (`PackedFormat::F16`): the
    /// [`Layout::Panels`] arrangement with IEEE half elements. Version in the declared name.
    QPanelsF16 = 2,
    /// int8 refiner conv weights `[.., c_in, k, k]` (square odd `k`) in `qgemm`'s `PackedFormat::I8`:
    /// 8-row panels of 4-channel groups, tap-major; scales stay in `<name>@scale`. Version in the
    /// declared name.
    QPanelsI8 = 3,
}

/// Rows per panel of [`Layout::Panels`] (the SGEMM micro-kernel's `MR`).
pub const PANEL_ROWS: u64 = 8;

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::RowMajor => "row-major",
            Layout::Panels => "panels8",
            Layout::QPanelsF16 => "qpanels8-f16",
            Layout::QPanelsI8 => "qpanels8x4-i8",
        }
    }
    fn from_code(c: u8) -> Option<Self> {
        [Layout::RowMajor, Layout::Panels, Layout::QPanelsF16, Layout::QPanelsI8].into_iter().find(|l| *l as u8 == c)
    }
}

/// When a tensor is used, so a backend can place or drop it per stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// Once per source photo (DINOv2, DPT head, Gaussian generators, `head_base`).
    Lift = 0,
    /// Every frame (the StyleUNet refiner).
    Frame = 1,
    /// FLAME arrays, used at lift and every frame.
    Flame = 2,
    /// Landmark embeddings, used only by a tracker.
    Tracker = 3,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::Lift, Stage::Frame, Stage::Flame, Stage::Tracker];
    pub fn name(self) -> &'static str {
        match self {
            Stage::Lift => "lift",
            Stage::Frame => "frame",
            Stage::Flame => "flame",
            Stage::Tracker => "tracker",
        }
    }
    fn from_code(c: u8) -> Option<Self> {
        Stage::ALL.into_iter().find(|s| *s as u8 == c)
    }
}

/// Why a tensor has the precision it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The precision the conversion asked for.
    Requested = 0,
    /// Kept wider by one of the precision rules recorded in the meta section.
    PolicyRule = 1,
    /// Kept wider by a `--keep` override.
    UserOverride = 2,
    /// Integer data (indices), stored exactly.
    IntegerData = 3,
    /// The fp32 scales of an int8 tensor.
    QuantScale = 4,
    /// Set by calibration on real inputs (`converter/src/calibrate.rs`): a layer kept at fp16 because
    /// int8 cost too much accuracy, or a `<weight>@act_scale` activation scale.
    Calibrated = 5,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::Requested => "requested",
            Reason::PolicyRule => "policy rule",
            Reason::UserOverride => "user override",
            Reason::IntegerData => "integer data",
            Reason::QuantScale => "quantisation scale",
            Reason::Calibrated => "calibrated",
        }
    }
    fn from_code(c: u8) -> Option<Self> {
        [Reason::Requested, Reason::PolicyRule, Reason::UserOverride, Reason::IntegerData, Reason::QuantScale, Reason::Calibrated]
            .into_iter()
            .find(|r| *r as u8 == c)
    }
}

/// On-disk code for "no quantisation axis".
pub const NO_QUANT_AXIS: u8 = 0xff;
/// Deepest tensor rank accepted (the checkpoint's deepest is 5).
pub const MAX_RANK: usize = 8;

/// One directory record. `offset` is relative to the start of the data section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: DType,
    pub layout: Layout,
    pub stage: Stage,
    /// For per-channel int8: the axis whose channels each have a scale in `<name>@scale`.
    pub quant_axis: Option<u8>,
    pub reason: Reason,
    pub shape: Vec<u64>,
    pub offset: u64,
    pub length: u64,
    pub checksum: u64,
}

impl TensorEntry {
    /// Number of elements, or `None` on overflow.
    pub fn numel(&self) -> Option<u64> {
        self.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d))
    }
    /// Bytes the dtype, layout and shape call for, or `None` on overflow (or a shape the layout cannot
    /// hold: panels need rank >= 4).
    pub fn expected_length(&self) -> Option<u64> {
        let elements = match self.layout {
            Layout::RowMajor => self.numel()?,
            Layout::Panels | Layout::QPanelsF16 => {
                let (m, kk) = self.panel_matrix()?;
                m.div_ceil(PANEL_ROWS).checked_mul(PANEL_ROWS)?.checked_mul(kk)?
            }
            Layout::QPanelsI8 => {
                let (m, c_in, k) = self.conv_dims()?;
                // Inner groups of 4 channels per tap, each group padded to whole 4 bytes.
                m.div_ceil(PANEL_ROWS)
                    .checked_mul(PANEL_ROWS)?
                    .checked_mul(k.checked_mul(k)?)?
                    .checked_mul(c_in.div_ceil(4).checked_mul(4)?)?
            }
        };
        elements.checked_mul(self.dtype.size() as u64)
    }

    /// `(m, kk)` of a [`Layout::Panels`] tensor's matrix view, or `None` below rank 4 or on overflow.
    pub fn panel_matrix(&self) -> Option<(u64, u64)> {
        let r = self.shape.len();
        if r < 4 {
            return None;
        }
        let prod = |d: &[u64]| d.iter().try_fold(1u64, |a, &v| a.checked_mul(v));
        Some((prod(&self.shape[..r - 3])?, prod(&self.shape[r - 3..])?))
    }
    /// `(c_out, c_in, k)` of a conv weight `[.., c_out, c_in, k, k]` (leading dims fold into `c_out`), or
    /// `None` below rank 4, for a non-square or even kernel, or on overflow.
    pub fn conv_dims(&self) -> Option<(u64, u64, u64)> {
        let r = self.shape.len();
        if r < 4 || self.shape[r - 1] != self.shape[r - 2] || self.shape[r - 1] & 1 == 0 {
            return None;
        }
        let m = self.shape[..r - 3].iter().try_fold(1u64, |a, &v| a.checked_mul(v))?;
        Some((m, self.shape[r - 3], self.shape[r - 1]))
    }

    pub fn shape_usize(&self) -> Vec<usize> {
        self.shape.iter().map(|&d| d as usize).collect()
    }

    /// Appends the record to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.name.len() as u16).to_le_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(&[
            self.dtype as u8,
            self.layout as u8,
            self.stage as u8,
            self.quant_axis.unwrap_or(NO_QUANT_AXIS),
            self.reason as u8,
            self.shape.len() as u8,
        ]);
        for v in self.shape.iter().chain(&[self.offset, self.length, self.checksum]) {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// Decodes the record at `*pos` and advances it. `index` is only for messages.
    pub fn decode(b: &[u8], pos: &mut usize, index: usize) -> Result<TensorEntry, FormatError> {
        let mut r = Reader { b, pos: *pos, index };
        let name_len = u16::from_le_bytes([r.u8()?, r.u8()?]) as usize;
        let name = std::str::from_utf8(r.take(name_len)?)
            .map_err(|_| FormatError::new(format!("directory record {index}: name is not UTF-8")))?
            .to_string();
        let at = |what: String| FormatError::new(format!("directory record {index} (`{name}`): {what}"));
        let [dtype, layout, stage, axis, reason, rank] = [r.u8()?, r.u8()?, r.u8()?, r.u8()?, r.u8()?, r.u8()?];
        let dtype = DType::from_code(dtype).ok_or_else(|| at(format!("unknown dtype code {dtype}")))?;
        let layout = Layout::from_code(layout).ok_or_else(|| at(format!("unknown layout code {layout}")))?;
        let stage = Stage::from_code(stage).ok_or_else(|| at(format!("unknown stage code {stage}")))?;
        let reason = Reason::from_code(reason).ok_or_else(|| at(format!("unknown precision-reason code {reason}")))?;
        if rank as usize > MAX_RANK {
            return Err(at(format!("rank {rank} exceeds {MAX_RANK}")));
        }
        let shape = (0..rank).map(|_| r.u64()).collect::<Result<Vec<_>, _>>()?;
        let (offset, length, checksum) = (r.u64()?, r.u64()?, r.u64()?);
        let quant_axis = (axis != NO_QUANT_AXIS).then_some(axis);
        *pos = r.pos;
        Ok(TensorEntry { name, dtype, layout, stage, quant_axis, reason, shape, offset, length, checksum })
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    index: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.ok_or_else(|| FormatError::new(format!("directory record {} runs past the end of the directory", self.index)))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64, FormatError> {
        let mut a = [0; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
}
