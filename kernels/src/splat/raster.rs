//! Blending one 16x16 tile, the work of one CUDA block in `renderCUDA`.
//!
//! The tile's Gaussians (front to back) are first gathered into per-thread buffers and bucketed by the
//! 8-pixel groups (row, half row) their box can reach (`footprint::reach`; skipping the others changes
//! nothing, they would fail the `alpha >= 1/255` test). Pixels are then processed eight at a time along a row (one SIMD register of f32 on AVX2, two on SSE/NEON):
//! the Gaussian's falloff and alpha are computed for all eight lanes at once, then each live lane applies the
//! official per-pixel rules in order: skip `power > 0` and `alpha < 1/255`, stop (without blending) when
//! `T (1 - alpha) < 1e-4`, otherwise `C += f alpha T` per channel. Colours are accumulated 32 channels at a
//! time; wider feature vectors repeat the (colour-independent) blending walk per 32-channel block.
//! Every lane performs exactly the float operations of the scalar reference, so results match it bit for bit.
//!
//! Builds, picked at run time by `select`: AVX-512 (32-channel groups in `raster_x86`'s intrinsics, 1.6-1.8x
//! the AVX2 build on a head), AVX2 (this code auto-vectorised), portable (SSE2 / NEON).

use std::cell::RefCell;

use super::project::{exp, Projected, Splat2d, BLOCK};
use crate::matmul::SyncPtr;

/// Pixels blended together.
const LANES: usize = 8;
/// Channels accumulated per walk over a tile's list; GAGAvatar's 32 take one walk.
pub const CH_BLOCK: usize = 32;
/// `1.0f / 255.0f`: weaker contributions are skipped.
pub const MIN_ALPHA: f32 = 1.0 / 255.0;
/// A pixel stops when its transmittance would fall below this.
pub const MIN_T: f32 = 0.0001;
/// Alpha is clamped here so no single Gaussian makes a pixel fully opaque.
pub const MAX_ALPHA: f32 = 0.99;

/// What every tile reads.
pub struct Frame<'a> {
    pub projected: &'a [Projected],
    /// `[N, channels]`.
    pub colors: &'a [f32],
    pub channels: usize,
    pub width: usize,
    pub height: usize,
    pub grid_x: usize,
    pub background: &'a [f32],
}

/// A tile's Gaussians gathered front to back into contiguous arrays, so the pixel groups walk memory
/// linearly instead of chasing indices, with the box (`[x_lo, x_hi, y_lo, y_hi]`, from
/// `footprint::reach`) outside which each one is never blended.
pub struct TileSplats<'a> {
    pub ids: &'a [u32],
    pub splats: &'a [Splat2d],
    pub boxes: &'a [[f32; 4]],
}

/// Per-thread buffers of `render_tile`, grown to the longest tile list seen and then reused.
#[derive(Default)]
struct TileBuf {
    splats: Vec<Splat2d>,
    boxes: Vec<[f32; 4]>,
    rows: Rows,
}

/// 8-pixel groups per tile row.
const GROUPS: usize = BLOCK / LANES;

/// Per 8-pixel group of a tile (row-major: `rows[(y - y0) * GROUPS + g]`), the indices (into the tile's
/// list) of the Gaussians whose box reaches it, front to back.
pub type Rows = [Vec<u32>; BLOCK * GROUPS];

thread_local! {
    static TILE_BUF: RefCell<TileBuf> = RefCell::new(TileBuf::default());
}

/// The longest tile list any thread has rendered. Every thread grows its buffers to it on its next tile, so
/// once a frame has been rendered twice no buffer grows again, whichever worker gets the longest tile.
static LONGEST_LIST: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A tile renderer: the portable, AVX2 or AVX-512 build. `Rows` is a reusable
/// workspace for the per-row lists.
pub type TileFn = unsafe fn(&Frame, usize, &TileSplats, &mut Rows, &SyncPtr);

/// The best tile renderer this CPU supports.
pub fn select() -> TileFn {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vl") {
            return render_tile_avx512;
        }
        if std::is_x86_feature_detected!("avx2") {
            return render_tile_avx2_checked;
        }
    }
    render_tile_portable
}

/// Renders tile `tile` (its Gaussians `list`, front to back) into `out`, a `[channels, height, width]`
/// buffer, with `kernel`, gathering the tile's splats into this thread's reusable buffers first.
///
/// # Safety
/// `out` must point at `channels * height * width` writable floats (`frame`'s sizes) that nobody else reads
/// or writes during the call except at other tiles' pixels (each call writes only its own tile's pixels),
/// and `kernel` must be one `select` returned on this CPU.
pub unsafe fn render_tile(kernel: TileFn, frame: &Frame, tile: usize, list: &[u32], out: &SyncPtr) {
    TILE_BUF.with(|cell| {
        // Tiles never nest (nothing below calls back into rayon); a fresh buffer covers it regardless.
        let mut fresh = TileBuf::default();
        let mut guard = cell.try_borrow_mut();
        let buf = match guard.as_deref_mut() {
            Ok(buf) => buf,
            Err(_) => &mut fresh,
        };
        buf.splats.clear();
        buf.boxes.clear();
        buf.rows.iter_mut().for_each(Vec::clear);
        let longest = LONGEST_LIST.fetch_max(list.len(), std::sync::atomic::Ordering::Relaxed).max(list.len());
        // No-ops once the capacity is there: the buffers are empty, so `reserve(n)` asks for n in all.
        buf.splats.reserve(longest);
        buf.boxes.reserve(longest);
        buf.rows.iter_mut().for_each(|r| r.reserve(longest));
        for &id in list {
            let p = &frame.projected[id as usize];
            let (s, [rx, ry]) = (p.splat, p.reach);
            buf.splats.push(s);
            buf.boxes.push([s.x - rx, s.x + rx, s.y - ry, s.y + ry]);
        }
        let splats = TileSplats { ids: list, splats: &buf.splats, boxes: &buf.boxes };
        // SAFETY: forwarded from this function's contract.
        unsafe { kernel(frame, tile, &splats, &mut buf.rows, out) }
    })
}

/// The portable build (SSE2 on x86-64, NEON on aarch64).
///
/// # Safety
/// As for [`render_tile`]'s `out`.
pub unsafe fn render_tile_portable(frame: &Frame, tile: usize, splats: &TileSplats, rows: &mut Rows, out: &SyncPtr) {
    tile_body::<false>(frame, tile, splats, rows, out)
}

/// [`render_tile_avx2`] as a [`TileFn`] (the previous fast path; kept for AVX2-only hosts and A/B timing).
///
/// # Safety
/// As for [`render_tile`]'s `out`; the CPU must support AVX2 (`select` checks before handing this out).
#[cfg(target_arch = "x86_64")]
pub unsafe fn render_tile_avx2_checked(frame: &Frame, tile: usize, splats: &TileSplats, rows: &mut Rows, out: &SyncPtr) {
    // SAFETY: AVX2 and `out` are our caller's promises.
    unsafe { render_tile_avx2(frame, tile, splats, rows, out) }
}

/// The same code compiled for AVX2 (8-lane vectors, no FMA, so the rounding is unchanged).
///
/// # Safety
/// The CPU must support AVX2; `out` as for [`render_tile`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub unsafe fn render_tile_avx2(frame: &Frame, tile: usize, splats: &TileSplats, rows: &mut Rows, out: &SyncPtr) {
    tile_body::<false>(frame, tile, splats, rows, out)
}

/// The AVX-512 build: the 32-channel blend groups use `raster_x86`'s intrinsics, anything else the same
/// code as the other builds.
///
/// # Safety
/// The CPU must support AVX2, AVX-512F and AVX-512VL; `out` as for [`render_tile`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f,avx512vl")]
pub unsafe fn render_tile_avx512(frame: &Frame, tile: usize, splats: &TileSplats, rows: &mut Rows, out: &SyncPtr) {
    tile_body::<true>(frame, tile, splats, rows, out)
}

#[inline(always)]
fn tile_body<const AVX512: bool>(frame: &Frame, tile: usize, splats: &TileSplats, rows: &mut Rows, out: &SyncPtr) {
    let (tx, ty) = (tile % frame.grid_x, tile / frame.grid_x);
    let (x0, y0) = (tx * BLOCK, ty * BLOCK);
    let (x1, y1) = ((x0 + BLOCK).min(frame.width), (y0 + BLOCK).min(frame.height));
    // Bucket the Gaussians by the 8-pixel groups their box reaches, keeping the front-to-back order in
    // each. A box is a rectangle, so which groups of a row it reaches is decided once per Gaussian, not
    // once per (row, group) in the walk: that test was a data-dependent branch per list entry.
    rows.iter_mut().for_each(Vec::clear);
    let last = (y1 - 1) as f32;
    // Each group's first and last pixel column; a group past the image edge spans nothing.
    let spans: [(f32, f32); GROUPS] = std::array::from_fn(|g| {
        let gx = x0 + g * LANES;
        if gx < x1 {
            (gx as f32, (gx + LANES.min(x1 - gx) - 1) as f32)
        } else {
            (f32::INFINITY, f32::NEG_INFINITY)
        }
    });
    for (k, b) in splats.boxes.iter().enumerate() {
        let (lo, hi) = (b[2].max(y0 as f32).ceil(), b[3].min(last).floor());
        if lo <= hi {
            // The same predicate the walk used (`b[1] < x_lo || b[0] > x_hi` skips), so a NaN box still
            // reaches every group, as before.
            let reach: [bool; GROUPS] = std::array::from_fn(|g| !(b[1] < spans[g].0 || b[0] > spans[g].1));
            for y in lo as usize..=hi as usize {
                for (g, &r) in reach.iter().enumerate() {
                    if r {
                        rows[(y - y0) * GROUPS + g].push(k as u32);
                    }
                }
            }
        }
    }
    for y in y0..y1 {
        for gx in (x0..x1).step_by(LANES) {
            let row = &rows[(y - y0) * GROUPS + (gx - x0) / LANES];
            let lanes = LANES.min(x1 - gx);
            if AVX512 && frame.channels == CH_BLOCK {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: only `render_tile_avx512` instantiates `AVX512 = true`, and it requires AVX-512F/VL;
                // 32 channels checked; `out` as for our caller.
                unsafe {
                    super::raster_x86::blend_group32(frame, splats, row, gx, lanes, y, out)
                }
            } else if frame.channels == CH_BLOCK {
                blend_group::<CH_BLOCK>(frame, splats, row, gx, lanes, y, 0, CH_BLOCK, out);
            } else {
                for ch0 in (0..frame.channels).step_by(CH_BLOCK) {
                    let cw = CH_BLOCK.min(frame.channels - ch0);
                    blend_group::<0>(frame, splats, row, gx, lanes, y, ch0, cw, out);
                }
            }
        }
    }
}

/// Blends `lanes` (<= 8) pixels of row `y` starting at column `gx`, channels `ch0..ch0 + cw`, walking
/// `row`, the Gaussians whose box reaches this group.
/// `FIXED > 0` fixes the channel count at compile time (the 32-channel build).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn blend_group<const FIXED: usize>(
    frame: &Frame,
    splats: &TileSplats,
    row: &[u32],
    gx: usize,
    lanes: usize,
    y: usize,
    ch0: usize,
    cw: usize,
    out: &SyncPtr,
) {
    let cw = if FIXED > 0 { FIXED } else { cw };
    let mut t = [1f32; LANES];
    let mut live = [false; LANES];
    live[..lanes].iter_mut().for_each(|l| *l = true);
    let mut acc = [[0f32; CH_BLOCK]; LANES];
    let pyf = y as f32;
    let pxf: [f32; LANES] = std::array::from_fn(|l| (gx + l) as f32);
    let c = frame.channels;

    for &k in row {
        let k = k as usize;
        let s = &splats.splats[k];
        let (sx, opacity) = (s.x, s.opacity);
        let [ca, cb, cc] = s.conic;
        let dy = s.y - pyf;
        let cdy = cc * dy * dy;
        let mut alpha = [0f32; LANES];
        let mut any = false;
        for l in 0..LANES {
            let dx = sx - pxf[l];
            let power = -0.5 * (ca * dx * dx + cdy) - cb * dx * dy;
            let a = (opacity * exp(power)).min(MAX_ALPHA);
            alpha[l] = if power > 0.0 { 0.0 } else { a };
            any |= alpha[l] >= MIN_ALPHA;
        }
        if !any {
            continue;
        }
        // The official per-pixel rules for all lanes at once: a lane blends when it is live and alpha
        // reaches 1/255, unless T would fall below 1e-4, which stops it without blending.
        let mut blend = [false; LANES];
        let mut next_t = t;
        let mut any_blend = false;
        let mut any_live = false;
        for l in 0..LANES {
            let a = alpha[l];
            let test_t = t[l] * (1.0 - a);
            let hit = live[l] & (a >= MIN_ALPHA);
            let stop = hit & (test_t < MIN_T);
            live[l] &= !stop;
            blend[l] = hit & !stop;
            next_t[l] = if blend[l] { test_t } else { t[l] };
            any_blend |= blend[l];
            any_live |= live[l];
        }
        if any_blend {
            let color = &frame.colors[splats.ids[k] as usize * c + ch0..][..cw];
            for l in 0..LANES {
                if blend[l] {
                    let (a, tl) = (alpha[l], t[l]);
                    for (acc, &f) in acc[l][..cw].iter_mut().zip(color) {
                        *acc += f * a * tl;
                    }
                }
            }
        }
        t = next_t;
        if !any_live {
            break;
        }
    }

    let plane = frame.width * frame.height;
    let bg = &frame.background[ch0..ch0 + cw];
    for l in 0..lanes {
        let pix = y * frame.width + gx + l;
        for (ch, (&a, &b)) in acc[l][..cw].iter().zip(bg).enumerate() {
            // SAFETY: pixel (gx + l, y) lies in this tile and ch0 + ch < channels, so the index is inside the
            // `[channels, height, width]` buffer `render_tile`'s caller vouched for, and no other tile writes it.
            unsafe { *out.0.add((ch0 + ch) * plane + pix) = a + t[l] * b };
        }
    }
}
