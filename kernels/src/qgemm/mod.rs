//! Reduced-precision convolutions and linear layers: int8 fixed point and fp16 storage.
//!
//! **int8** (`C_i32 = A_i8 * B_i8`, then an f32 epilogue): weights are symmetric per output channel
//! (`w ~= q * scale[o]`, `q` in `[-127, 127]`, see [`quantise`]), activations affine per tensor
//! (`x ~= s * (q - z)`, [`ActQuant`], see [`quantise_activation`]; the padding is the byte `z`), products
//! summed exactly in i32, and each output is `((acc - z * sum(w[o])) as f32) * (scale[o] * s) + bias[o]`
//! (that op order, no fused multiply-add, on every path).
//! Micro-kernels ([`QIsa`], picked at run time): AVX-512 VNNI (`vpdpbusd` on `x + 128` with a per-row
//! `128 * sum(w)` correction), AVX2 (`vpmaddubsw` on `|x|` and `w * sign(x)`, whose pair sums stay below
//! `2 * 127 * 127 = 32258` so never saturate, then `vpmaddwd` by 1), NEON with SDOT (stable `asm!`), plain
//! NEON (`smull` + `sadalp`) and portable loops. Integer sums are exact, so every path gives the same i32
//! and, with the shared epilogue, the same f32 bits.
//!
//! **fp16 storage**: weights stored as IEEE half, widened to f32 once per call (F16C / `fcvtl`) into the
//! packed SGEMM panels, then the fp32 micro-kernels of `crate::sgemm` (fp32 FMA accumulation). An fp16
//! convolution is therefore bitwise equal to the fp32 one on f16-rounded weights.
//!
//! Convolutions (1x1 and 3x3, stride 1, "same" zero padding) run as an implicit GEMM over a zero-bordered
//! copy of the input (`conv.rs`), linear layers as matrix-vector products. Layouts: `pack.rs` and
//! `docs/performance.md` ("Quantised kernels").

mod conv;
mod epilogue;
mod fconv;
mod kernels;
mod pack;
mod peak;
mod plan;
mod run;
mod upsample_quant;

#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use conv::gemm_i32;
pub use fconv::{narrow_f16, widen_f16};
pub use pack::{pack_f16, pack_f32, pack_i8, packed_len, quantise_rows, PackedConv, PackedFormat, RowMajor};
pub use peak::measure_int8_peak;
pub use run::Kernel;
pub use upsample_quant::MAX_F16_UP_WIDTH;

/// Rows (output channels) per packed weight panel, for every format and ISA.
pub const MR: usize = 8;

/// Inner-dimension values per int8 group: the 4 bytes one dot-product lane sums.
pub const KG: usize = 4;

/// Version of the F16 / I8 packed layouts (`pack.rs`). A model file records it in its layout tag, so a
/// file packed by another version is refused rather than misread: bump it whenever either layout changes.
pub const PACK_VERSION: u32 = 1;

/// Largest int8 inner dimension: `k * 255 * 127` (the VNNI path's offset sums) stays below `i32::MAX`.
pub const MAX_K_I8: usize = 66_000;

/// An error in a packed weight or a call's arguments; the message names the tensor or argument with
/// the expected and found values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QError(pub String);

impl std::fmt::Display for QError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for QError {}

/// Result of the quantised kernels.
pub type QResult<T> = Result<T, QError>;

/// Returns `Err` with a formatted message when `cond` is false.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err($crate::qgemm::QError(format!($($msg)+)));
        }
    };
}
pub(crate) use ensure;

/// Which int8 micro-kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QIsa {
    /// AVX-512F + AVX-512 VNNI: 8 x 32 tiles of `vpdpbusd`.
    Avx512Vnni,
    /// AVX2: 8 x 8 tiles of `vpsignb` / `vpmaddubsw` / `vpmaddwd`.
    Avx2,
    /// aarch64 with the dot-product extension: 8 x 8 tiles of SDOT.
    NeonDot,
    /// aarch64 baseline NEON: 8 x 8 tiles of `smull` / `sadalp`.
    Neon,
    /// Plain loops, any CPU.
    Portable,
}

impl QIsa {
    /// The fastest int8 kernel the running CPU supports (no allocation: it runs on every conv call).
    pub fn detect() -> QIsa {
        QIsa::FASTEST_FIRST.into_iter().find(|isa| isa.runs()).unwrap_or(QIsa::Portable)
    }

    /// Every int8 kernel the running CPU can run, fastest first (the last is always `Portable`).
    pub fn available() -> Vec<QIsa> {
        QIsa::FASTEST_FIRST.into_iter().filter(|isa| isa.runs()).collect()
    }

    /// Every kernel, fastest first.
    const FASTEST_FIRST: [QIsa; 5] = [QIsa::Avx512Vnni, QIsa::Avx2, QIsa::NeonDot, QIsa::Neon, QIsa::Portable];

    /// Whether this kernel runs on the running CPU; allocation-free, unlike [`QIsa::available`], so the
    /// per-call checks use it (a warmed-up frame must not allocate).
    pub fn runs(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            QIsa::Avx512Vnni => std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vnni"),
            #[cfg(target_arch = "x86_64")]
            QIsa::Avx2 => std::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "aarch64")]
            QIsa::NeonDot => std::arch::is_aarch64_feature_detected!("dotprod"),
            #[cfg(target_arch = "aarch64")]
            QIsa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            QIsa::Portable => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Output columns per micro-tile.
    pub fn nr(self) -> usize {
        match self {
            QIsa::Avx512Vnni => 32,
            _ => 8,
        }
    }

    /// Whether the kernel reads activations as `x + 128` (unsigned) and needs the row-sum correction.
    pub(crate) fn offset(self) -> bool {
        self == QIsa::Avx512Vnni
    }
}

/// How an int8 convolution quantises its input activations: `q = clamp(round_half_even(x * (1 / scale) +
/// zero), -127, 127)`, so `x ~= scale * (q - zero)` (see [`quantise_activation`]). The zero padding of a
/// convolution is the byte `zero` (it stands for `x = 0`), and `zero * sum(w)` is taken off every output
/// exactly in i32, so an affine quantiser costs one add per element and nothing per product.
///
/// The dynamic mode ([`act_quant_for`]) spreads the 255 levels over the map's `[min, max]` (widened to
/// take in 0): the refiner's activations are mostly LeakyReLU outputs, whose negative side is a fifth
/// of the positive one, so a symmetric scale would leave ~40 % of the levels unused (measured: +2.2 dB
/// end to end, `docs/performance.md`, session 11). Calibrated files may hold static ones
/// (`<weight>@act_scale`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActQuant {
    /// The step, finite and > 0.
    pub scale: f32,
    /// The integer that stands for 0, in [-127, 127].
    pub zero: i32,
}

impl ActQuant {
    /// A symmetric quantiser (`zero = 0`), as files before session 11 stored them.
    pub fn symmetric(scale: f32) -> ActQuant {
        ActQuant { scale, zero: 0 }
    }

    /// The dynamic quantiser of values spanning `r` (which holds 0): `scale = max / 254 - min / 254`, and
    /// `zero = round(-min / scale) - 127`, so `min` quantises to -127 and `max` to 127. A symmetric range
    /// gives `max / 127` and `zero = 0` exactly; an all-zero (or sub-1e-36) one scale 1, `zero = 0`.
    pub fn for_range(r: Range) -> ActQuant {
        let scale = r.hi / 254.0 - r.lo / 254.0;
        // A range so small that `1 / scale` overflows (below ~1e-36) quantises everything to 0 anyway;
        // scale 1 keeps `x * (1 / s)` finite, so `x = 0` still lands on the zero point.
        if !(scale > 0.0 && (1.0 / scale).is_finite()) {
            return ActQuant::symmetric(1.0);
        }
        let zero = ((-r.lo / scale).round_ties_even() - 127.0).clamp(-127.0, 127.0) as i32;
        ActQuant { scale, zero }
    }

    /// `Err` naming `what` unless the scale is finite and > 0 and the zero point in [-127, 127].
    pub fn check(self, what: &str) -> QResult<()> {
        let ActQuant { scale, zero } = self;
        ensure!(scale.is_finite() && scale > 0.0, "{what} activation scale: {scale}, expected finite and > 0");
        ensure!((-127..=127).contains(&zero), "{what} activation zero point: {zero}, expected -127..=127");
        Ok(())
    }
}

/// The smallest and largest finite values of a map, widened to take in 0 (so `lo <= 0 <= hi`); non-finite
/// values are ignored. Exact in any order, so split and merged freely.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Range {
    pub lo: f32,
    pub hi: f32,
}

impl Range {
    /// `self` widened to take in `v` (non-finite: unchanged). Two selects, so lane loops vectorise.
    #[inline(always)]
    pub fn with(self, v: f32) -> Range {
        let v = if v.abs() < f32::INFINITY { v } else { 0.0 };
        Range { lo: if v < self.lo { v } else { self.lo }, hi: if v > self.hi { v } else { self.hi } }
    }

    /// Both ranges' union.
    #[inline(always)]
    pub fn merge(self, o: Range) -> Range {
        self.with(o.lo).with(o.hi)
    }
}

/// The dynamic int8 quantiser of the activations `x` ([`ActQuant::for_range`] of [`range_of`]).
pub fn act_quant_for<E: crate::elem::Elem>(x: &[E]) -> ActQuant {
    ActQuant::for_range(range_of(x))
}

/// The [`Range`] of `x`. Large inputs are split over the thread pool (exact in any order, so the result
/// does not depend on the split).
pub fn range_of<E: crate::elem::Elem>(x: &[E]) -> Range {
    // Below this many values a second thread costs more than it saves.
    const PAR_MIN: usize = 1 << 16;
    if x.len() >= PAR_MIN && crate::matmul::threads() > 1 {
        use rayon::prelude::*;
        x.par_chunks(PAR_MIN).map(E::range).reduce(Range::default, Range::merge)
    } else {
        E::range(x)
    }
}

/// The symmetric int8 scale of a weight row (or any values): `max|x| / 127`, or 1 when `x` is all zeros or
/// holds no finite value. Non-finite elements are ignored.
pub fn weight_scale_for(x: &[f32]) -> f32 {
    let r = range_f32(x);
    scale_of_max(r.hi.max(-r.lo))
}

/// The symmetric scale for a largest finite `|x|` of `m`: `m / 127`, or 1 when `m` is 0.
pub(crate) fn scale_of_max(m: f32) -> f32 {
    if m > 0.0 {
        m / 127.0
    } else {
        1.0
    }
}

/// The [`Range`] of `x` as one vectorisable loop over 64 independent lanes (several vector registers, so
/// the min / max chains overlap: one 16-lane chain was latency-bound at half the quantise pass's speed).
#[inline(always)]
pub(crate) fn range_plain(x: &[f32]) -> Range {
    const L: usize = 64;
    let (mut lo, mut hi) = ([0f32; L], [0f32; L]);
    let chunks = x.chunks_exact(L);
    let tail = chunks.remainder();
    for c in chunks {
        lane_range(&mut lo, &mut hi, c);
    }
    lane_range(&mut lo, &mut hi, tail);
    lanes_merged(&lo, &hi)
}

/// `lo[i], hi[i]` widened to take in `c[i]` ([`Range::with`] lane by lane, separate arrays so the loop
/// vectorises): the inner step of every range pass.
#[inline(always)]
pub(crate) fn lane_range(lo: &mut [f32], hi: &mut [f32], c: &[f32]) {
    for ((l, h), &v) in lo.iter_mut().zip(hi.iter_mut()).zip(c) {
        let r = Range { lo: *l, hi: *h }.with(v);
        (*l, *h) = (r.lo, r.hi);
    }
}

/// The union of the lanes `lo[i], hi[i]`.
#[inline(always)]
pub(crate) fn lanes_merged(lo: &[f32], hi: &[f32]) -> Range {
    lo.iter().zip(hi).fold(Range::default(), |r, (&l, &h)| r.merge(Range { lo: l, hi: h }))
}

/// [`range_streams`] compiled for AVX-512 or AVX2 when the CPU has it.
pub(crate) fn range_f32(x: &[f32]) -> Range {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F was detected on this CPU.
            return unsafe { range_avx512(x) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 was detected on this CPU.
            return unsafe { range_avx2(x) };
        }
    }
    range_streams(x)
}

/// [`range_streams`] compiled for AVX-512.
///
/// # Safety
/// The CPU supports AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn range_avx512(x: &[f32]) -> Range {
    range_streams(x)
}

/// [`range_streams`] compiled for AVX2.
///
/// # Safety
/// The CPU supports AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn range_avx2(x: &[f32]) -> Range {
    range_streams(x)
}

/// [`range_plain`] reading four quarters of `x` side by side: one sequential stream was bound by how far
/// ahead the hardware prefetcher runs (~10 GB/s on a 64 MiB map, below the quantise pass, which reads four
/// channel planes at once); four streams keep more misses in flight.
#[inline(always)]
fn range_streams(x: &[f32]) -> Range {
    const S: usize = 4;
    const L: usize = 16;
    let part = x.len() / S / L * L;
    if part < 4096 {
        return range_plain(x);
    }
    let (mut lo, mut hi) = ([[0f32; L]; S], [[0f32; L]; S]);
    let (a, rest) = x.split_at(part);
    let (b, rest) = rest.split_at(part);
    let (c, rest) = rest.split_at(part);
    let (d, tail) = rest.split_at(part);
    for (((ca, cb), cc), cd) in a.chunks_exact(L).zip(b.chunks_exact(L)).zip(c.chunks_exact(L)).zip(d.chunks_exact(L)) {
        let [l0, l1, l2, l3] = &mut lo;
        let [h0, h1, h2, h3] = &mut hi;
        lane_range(l0, h0, ca);
        lane_range(l1, h1, cb);
        lane_range(l2, h2, cc);
        lane_range(l3, h3, cd);
    }
    range_plain(tail).merge(lanes_merged(lo.as_flattened(), hi.as_flattened()))
}

/// Symmetric int8 quantisation of a weight: `clamp(round_half_even(x / s), -127, 127)`. Ties round to
/// even so that `x = (q + 0.5) * s` does not bias upwards; NaN maps to 0, infinities to +-127.
#[inline]
pub fn quantise(x: f32, s: f32) -> i8 {
    round_clamp_lane(x / s) as u8 as i8
}

/// Activation quantisation, as every int8 convolution applies it: `clamp(round_half_even(x * (1 / s) + z),
/// -127, 127)` for [`ActQuant`] `{ scale: s, zero: z }` (one multiply per element instead of a division;
/// the add is exact for the values that are not clamped). With `z = 0` this is [`quantise`] with `x * (1 /
/// s)` in place of `x / s`, which differ only where `x / s` lies within an ulp of a rounding boundary.
#[inline]
pub fn quantise_activation(x: f32, a: ActQuant) -> i8 {
    quantise_lane(x, a.scale, a.zero as f32) as u8 as i8
}

/// [`quantise_activation`]'s two's-complement byte in the low 8 bits of a u32 (upper bits arbitrary), for
/// scale `s` and zero point `z` (as f32): the form that vectorises as 32-bit lanes when four channels are
/// packed into one word. `1 / s` is loop-invariant, so loops calling this compute it once.
#[inline(always)]
pub(crate) fn quantise_lane(x: f32, s: f32, z: f32) -> u32 {
    round_clamp_lane(x * (1.0 / s) + z)
}

/// `clamp(round_half_even(v), -127, 127)` as a two's-complement byte in the low 8 bits (NaN -> 0).
#[inline(always)]
fn round_clamp_lane(v: f32) -> u32 {
    // Clamping first is equivalent (the bounds are integers). Adding and removing 1.5 * 2^23 rounds to the
    // nearest integer, ties to even, in the default rounding mode; unlike `round_ties_even` it vectorises
    // without SSE4.1 (a libm call per element on baseline x86-64 was 20x slower than the whole int8 GEMM).
    // The sum's low mantissa byte is then the two's-complement result (MAGIC's low bits are zero), which
    // avoids a saturating float-to-int conversion that does not vectorise.
    const MAGIC: f32 = 12_582_912.0;
    let v = if v.is_nan() { 0.0 } else { v.clamp(-127.0, 127.0) };
    (v + MAGIC).to_bits()
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_conv;
#[cfg(test)]
mod tests_timing;
