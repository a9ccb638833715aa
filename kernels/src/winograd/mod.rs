//! Winograd F(4x4, 3x3) convolution for 3x3, stride-1, pad-1 layers (the refiner's bulk): 36 multiplies
//! per 4x4 output tile and channel pair instead of 144.
//!
//! Layout (after ncnn's `conv3x3s1_winograd43`, written from Lavin & Gray 2015):
//! - weights are transformed once ([`WinogradWeights::new`]): `U = G g G^T` per `(out, in)` pair, stored as
//!   36 independent `[c_out x c_in]` matrices, each packed into `crate::sgemm` panels (4x the 3x3 weights);
//! - per call, the output tiles are cut into blocks of `nt` tiles (raster order). For one block: the input
//!   transform writes `V[xi][c_in][nt]`, 36 GEMMs on our SGEMM micro-kernels give `M[xi][c_out][nt]`, and the
//!   output transform writes `out = A^T M A + bias` into the output planes (partial tiles clipped), or passes
//!   each value through an [`Epilogue`] (LeakyReLU, or multiply / add into the map already in `out`: the
//!   refiner's SFT), which saves the following element-wise pass and its temporary map;
//! - a block's last strip of at most 16 tiles (16x16 maps) runs on a 16-column kernel (`products.rs`),
//!   which gives the same bits as the wide one;
//! - blocks run in parallel (one buffer per worker, `scratch::run_tiled_in`); maps with too few blocks run
//!   one block at a time with its three phases split over the pool instead (no nested parallelism).
//!
//! Results do not depend on the thread count: every output is made by the same operations in the same order.
//! `GAGA_WINOGRAD=0` makes [`enabled`] false, so callers keep their direct convolutions.

#[cfg(target_arch = "x86_64")]
mod avx512;
mod channel;
mod products;
mod transforms;

use rayon::prelude::*;

use crate::conv::{Conv2d, Scratch};
use crate::matmul::SyncPtr;
use crate::scratch::{run_tiled_in, tiled_len};
use crate::sgemm::{self, Isa, MR};
use channel::{dispatch_input, dispatch_output};
use transforms::{weight_tile, XI};

/// Floats of one block's `V` and `M` aimed at (1 MiB, half this host's per-core L2): wide layers get
/// fewer tiles per block, thin ones more.
const BLOCK_FLOATS: usize = 1 << 18;

/// Most tiles per block.
const NT_MAX: usize = 256;

/// Fewest output pixels for which Winograd beats the direct packed convolution (measured, see
/// `docs/performance.md`, "Winograd"): below it (4x4 and 8x8 maps) the 36 weight matrices stream through
/// the cache for a handful of tiles padded to a whole micro-kernel strip.
pub const MIN_PIXELS: usize = 16 * 16;

/// A 3x3 convolution's weights in the Winograd domain, packed for the SGEMM micro-kernels, plus its bias.
#[derive(Clone, Debug)]
pub struct WinogradWeights {
    spec: Conv2d,
    /// `XI` panel sets of `sgemm::packed_a_len(c_out, c_in)` floats.
    u: Vec<f32>,
    bias: Vec<f32>,
}

/// True unless `GAGA_WINOGRAD` is `0`, `off` or `false` (the escape hatch to the direct convolutions).
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| !matches!(std::env::var("GAGA_WINOGRAD").as_deref(), Ok("0" | "off" | "false")))
}

/// True when `spec` is a shape this module computes (3x3, stride 1, pad 1).
pub fn supports(spec: &Conv2d) -> bool {
    spec.kernel == 3 && spec.stride == 1 && spec.pad == 1 && spec.c_in > 0 && spec.c_out > 0
}

/// The selection rule: a supported shape on a map of at least [`MIN_PIXELS`], and [`enabled`].
pub fn pays(spec: &Conv2d, h: usize, w: usize) -> bool {
    enabled() && supports(spec) && h * w >= MIN_PIXELS
}

impl WinogradWeights {
    /// Transforms and packs a PyTorch `[c_out, c_in, 3, 3]` weight and optional `[c_out]` bias.
    pub fn new(spec: &Conv2d, weight: &[f32], bias: Option<&[f32]>) -> Result<WinogradWeights, String> {
        if !supports(spec) {
            return Err(format!("Winograd F(4,3) needs a 3x3 stride-1 pad-1 convolution, found {spec:?}"));
        }
        let (co, ci) = (spec.c_out, spec.c_in);
        if weight.len() != co * ci * 9 {
            return Err(format!("Winograd weight {spec:?}: expected {} floats, found {}", co * ci * 9, weight.len()));
        }
        if let Some(b) = bias.filter(|b| b.len() != co) {
            return Err(format!("Winograd bias: expected {co} floats, found {}", b.len()));
        }
        let plen = sgemm::packed_a_len(co, ci);
        let mut u = vec![0f32; XI * plen];
        for o in 0..co {
            let (p, r) = (o / MR, o % MR);
            for i in 0..ci {
                let t = weight_tile(&weight[(o * ci + i) * 9..][..9]);
                // Element (o, i) of matrix xi, in `sgemm::pack_a`'s panel layout.
                for (xi, v) in t.iter().enumerate() {
                    u[xi * plen + p * MR * ci + i * MR + r] = *v;
                }
            }
        }
        let bias = bias.map_or_else(|| vec![0.0; co], <[f32]>::to_vec);
        Ok(WinogradWeights { spec: *spec, u, bias })
    }

    /// The convolution's shape.
    pub fn spec(&self) -> &Conv2d {
        &self.spec
    }

    /// The `[c_out, c_in, 3, 3]` weights recovered from the transformed ones (`g = H U H^T` with `H` the
    /// exact left inverse of `G` built from its rows 0, 1 and 5; f64, ~1 ulp of the largest tap of a
    /// row), so a caller that kept only these can still run the direct convolution on small maps.
    pub fn kernel_weights(&self) -> Vec<f32> {
        const H: [[f64; 6]; 3] = [[4.0, 0.0, 0.0, 0.0, 0.0, 0.0], [-4.0, -6.0, 0.0, 0.0, 0.0, -1.0], [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]];
        let (co, ci) = (self.spec.c_out, self.spec.c_in);
        let plen = sgemm::packed_a_len(co, ci);
        let mut g = vec![0f32; co * ci * 9];
        for o in 0..co {
            let (p, r) = (o / MR, o % MR);
            for i in 0..ci {
                let u = |xi: usize| self.u[xi * plen + p * MR * ci + i * MR + r] as f64;
                for a in 0..3 {
                    for b in 0..3 {
                        let mut v = 0f64;
                        for (x, ha) in H[a].iter().enumerate().filter(|(_, h)| **h != 0.0) {
                            for (y, hb) in H[b].iter().enumerate().filter(|(_, h)| **h != 0.0) {
                                v += ha * u(x * 6 + y) * hb;
                            }
                        }
                        g[(o * ci + i) * 9 + a * 3 + b] = v as f32;
                    }
                }
            }
        }
        g
    }

    /// The bias (zeros when the convolution had none).
    pub fn bias(&self) -> &[f32] {
        &self.bias
    }

    /// Bytes held (transformed weights and bias).
    pub fn bytes(&self) -> usize {
        4 * (self.u.len() + self.bias.len())
    }
}

/// What the output transform does with each output value `y = (A^T M A)[p] + bias` at pixel `p`: the
/// element-wise pass that would follow the convolution, done while the value is in a register and with
/// the same single rounding, so the result is bit-identical to the convolution then the plain pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Epilogue {
    /// `out[p] = y`.
    Store,
    /// `out[p] = if y < 0 { y * slope } else { y }` (`act::leaky_relu`).
    LeakyRelu(f32),
    /// `out[p] *= y` (`out` holds the map to scale, e.g. the SFT condition's scale).
    MulInto,
    /// `out[p] += y` (the SFT condition's shift).
    AddInto,
}

impl Epilogue {
    /// The epilogue on one value `y` whose destination currently holds `d`.
    #[inline(always)]
    fn apply(self, y: f32, d: f32) -> f32 {
        match self {
            Epilogue::Store => y,
            Epilogue::LeakyRelu(slope) => {
                if y < 0.0 {
                    y * slope
                } else {
                    y
                }
            }
            Epilogue::MulInto => d * y,
            Epilogue::AddInto => d + y,
        }
    }
}

/// Whether [`conv3x3_with`] runs a last strip of at most 16 tiles on the narrow 16-column kernel (on by
/// default; [`set_narrow_strips`] turns it off).
static NARROW: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

fn narrow_strips() -> bool {
    NARROW.load(std::sync::atomic::Ordering::Relaxed)
}

/// Turns the narrow last strip of the products on or off process-wide, for old-vs-new timings in one
/// process (the benches). Either way every output has the same bits.
#[doc(hidden)]
pub fn set_narrow_strips(on: bool) {
    NARROW.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// How one call cuts its tiles: `nt` tiles per block, `blocks` blocks, `tile` floats of buffer per block.
struct Plan {
    isa: Isa,
    tw: usize,
    tiles: usize,
    nt: usize,
    blocks: usize,
    co_pad: usize,
    tile: usize,
}

impl Plan {
    fn new(spec: &Conv2d, h: usize, w: usize) -> Plan {
        let isa = Isa::detect();
        let nr = isa.nr();
        let (tw, th) = (w.div_ceil(4), h.div_ceil(4));
        let tiles = tw * th;
        let co_pad = spec.c_out.next_multiple_of(MR);
        let fit = BLOCK_FLOATS / (XI * (spec.c_in + co_pad));
        let nt = (fit / nr * nr).clamp(nr, NT_MAX).min(tiles.next_multiple_of(nr));
        let blocks = tiles.div_ceil(nt);
        Plan { isa, tw, tiles, nt, blocks, co_pad, tile: XI * nt * (spec.c_in + co_pad) }
    }
}

/// Floats of scratch [`conv3x3`] takes for an `h x w` input.
pub fn scratch_len(spec: &Conv2d, h: usize, w: usize) -> usize {
    let p = Plan::new(spec, h, w);
    tiled_len(p.blocks, p.tile)
}

/// `out = conv3x3(input) + bias` ("same" padding): `input` `[c_in, h, w]`, `out` `[c_out, h, w]`.
/// Allocates nothing once `scratch` has grown.
pub fn conv3x3(scratch: &mut Scratch, ww: &WinogradWeights, input: &[f32], h: usize, w: usize, out: &mut [f32]) -> Result<(), String> {
    conv3x3_with(scratch, ww, input, h, w, out, Epilogue::Store)
}

/// [`conv3x3`] whose output values go through `epi` on their way into `out` (for [`Epilogue::MulInto`] and
/// [`Epilogue::AddInto`], `out` holds the map they combine with). Bit-identical to [`conv3x3`] into a
/// temporary followed by the element-wise pass.
pub fn conv3x3_with(
    scratch: &mut Scratch,
    ww: &WinogradWeights,
    input: &[f32],
    h: usize,
    w: usize,
    out: &mut [f32],
    epi: Epilogue,
) -> Result<(), String> {
    conv3x3_strips(scratch, ww, input, h, w, out, epi, narrow_strips())
}

/// [`conv3x3_with`] with the narrow last strip on (`narrow`) or off: the two give the same bits.
#[allow(clippy::too_many_arguments)]
fn conv3x3_strips(
    scratch: &mut Scratch,
    ww: &WinogradWeights,
    input: &[f32],
    h: usize,
    w: usize,
    out: &mut [f32],
    epi: Epilogue,
    narrow: bool,
) -> Result<(), String> {
    let spec = &ww.spec;
    if input.len() != spec.c_in * h * w || out.len() != spec.c_out * h * w {
        return Err(format!(
            "Winograd conv {spec:?} on {h}x{w}: expected {} input and {} output floats, found {} and {}",
            spec.c_in * h * w,
            spec.c_out * h * w,
            input.len(),
            out.len()
        ));
    }
    if out.is_empty() {
        return Ok(());
    }
    let plan = Plan::new(spec, h, w);
    let buf = scratch.take(tiled_len(plan.blocks, plan.tile));
    let dst = SyncPtr(out.as_mut_ptr());
    run_tiled_in(buf, plan.blocks, plan.tile, |blk, buf, pool| {
        let t0 = blk * plan.nt;
        let n = plan.nt.min(plan.tiles - t0);
        let (v, m) = buf.split_at_mut(XI * spec.c_in * plan.nt);
        let ctx = Block { ww, plan: &plan, input, h, w, t0, n, par: pool > 1, narrow };
        ctx.input_transform(v);
        ctx.products(v, m);
        // SAFETY: this block alone writes the pixels of tiles t0..t0 + n of every output plane.
        unsafe { ctx.output_transform(m, dst, epi) };
    });
    Ok(())
}

/// Channels ahead the AVX-512 input transform prefetches (the same tiles' rows of channel `i + PF` while
/// channel `i` is transformed): +6-9 % on the 256- and 512-wide maps, whose input rows come from L3.
#[cfg(target_arch = "x86_64")]
const PF: usize = 2;
/// One block of tiles `t0..t0 + n`; `par` splits each phase over the pool (few blocks per call).
struct Block<'a> {
    ww: &'a WinogradWeights,
    plan: &'a Plan,
    input: &'a [f32],
    h: usize,
    w: usize,
    t0: usize,
    n: usize,
    par: bool,
    /// Products of a last strip of at most 16 columns on the narrow kernel (see `products.rs`).
    narrow: bool,
}

/// Runs `f(i)` for `i < n`, over the pool when `par`.
fn each(n: usize, par: bool, f: impl Fn(usize) + Sync + Send) {
    if par {
        (0..n).into_par_iter().for_each(f);
    } else {
        (0..n).for_each(f);
    }
}

impl Block<'_> {
    /// `v[(xi * c_in + i) * nt + t]` for every channel `i` and tile `t` of the block.
    fn input_transform(&self, v: &mut [f32]) {
        let (ci, nt) = (self.ww.spec.c_in, self.plan.nt);
        let vp = SyncPtr(v.as_mut_ptr());
        each(ci, self.par, |i| {
            let plane = &self.input[i * self.h * self.w..(i + 1) * self.h * self.w];
            #[cfg(target_arch = "x86_64")]
            if self.plan.isa == Isa::Avx512 {
                // Prefetch only when this thread walks the channels in order (not split over the pool).
                let ahead = if i + PF < ci && !self.par { PF * self.h * self.w } else { 0 };
                // SAFETY: AVX-512F was detected; channel i owns rows xi * c_in + i of V (nt >= n floats each).
                unsafe {
                    avx512::input_channel(plane, self.h, self.w, self.plan.tw, self.t0, self.n, vp.get().add(i * nt), ci * nt, ahead)
                };
                return;
            }
            // SAFETY: channel i owns rows xi * c_in + i of V (nt floats each, inside `v`).
            let rows: [&mut [f32]; XI] =
                std::array::from_fn(|xi| unsafe { std::slice::from_raw_parts_mut(vp.get().add((xi * ci + i) * nt), nt) });
            dispatch_input(self.plan.isa, plane, self.h, self.w, self.plan.tw, self.t0, self.n, rows);
        });
    }

    /// `out[o] = A^T M A + bias[o]` for every output channel, clipped to the map.
    ///
    /// # Safety
    /// `dst` is the `[c_out, h, w]` output; no one else writes this block's pixels during the call.
    unsafe fn output_transform(&self, m: &[f32], dst: SyncPtr, epi: Epilogue) {
        let (co, nt, co_pad) = (self.ww.spec.c_out, self.plan.nt, self.plan.co_pad);
        let hw = self.h * self.w;
        each(co, self.par, |o| {
            // SAFETY: channel o's plane; this block writes only its own tiles' pixels of it.
            let plane = unsafe { std::slice::from_raw_parts_mut(dst.get().add(o * hw), hw) };
            #[cfg(target_arch = "x86_64")]
            if self.plan.isa == Isa::Avx512 {
                // SAFETY: AVX-512F was detected; rows xi * co_pad + o of M (nt >= n floats each) are in `m`.
                unsafe {
                    avx512::output_channel(
                        m[o * nt..].as_ptr(),
                        co_pad * nt,
                        self.ww.bias[o],
                        self.h,
                        self.w,
                        self.plan.tw,
                        self.t0,
                        self.n,
                        plane,
                        epi,
                    )
                };
                return;
            }
            let rows: [&[f32]; XI] = std::array::from_fn(|xi| &m[(xi * co_pad + o) * nt..][..nt]);
            dispatch_output(self.plan.isa, rows, self.ww.bias[o], self.h, self.w, self.plan.tw, self.t0, self.n, plane, epi);
        });
    }
}

#[cfg(test)]
mod tests;
