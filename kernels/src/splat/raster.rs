//! Blending one 16x16 tile, the work of one CUDA block in `renderCUDA`.
//!
//! A tile is 32 blend groups of 8 pixels (16 rows, two halves of a row). Its list (front to back) is taken in
//! chunks of `CHUNK` Gaussians: each chunk is gathered into contiguous arrays and bucketed by the groups
//! each Gaussian's footprint box (`footprint::reach`) reaches, among the groups that still have a live pixel;
//! then every live group walks its bucket. A group's state (transmittance, live lanes, 32-channel
//! accumulators) lives in a `GroupState` across chunks, and the tile stops taking chunks once every pixel
//! has stopped. On an opaque head every pixel stops by transmittance, on average a third of the way down
//! its tile's list, so the rest of the list is never gathered nor bucketed (it was two thirds of the
//! bucket work). Skipping a Gaussian outside a box, or a group with no live pixel, changes nothing: the
//! first would fail `alpha >= 1/255`, the second blends nothing more.
//!
//! Per group, pixels are blended eight at a time along a row (one SIMD register of f32 on AVX2, two on
//! SSE/NEON): the Gaussian's falloff and alpha for all eight lanes at once, then each live lane applies the
//! official per-pixel rules in order: skip `power > 0` and `alpha < 1/255`, stop (without blending) when
//! `T (1 - alpha) < 1e-4`, otherwise `C += f alpha T` per channel. Colours are accumulated 32 channels at a
//! time; wider feature vectors repeat the (colour-independent) walk per 32-channel block, each block with its
//! own state. Every lane performs exactly the float operations of the scalar reference, in its order, so
//! results match it bit for bit whatever the chunk boundaries.
//!
//! Builds, picked at run time by `select`: AVX-512 (32-channel groups in `raster_x86`'s intrinsics, 1.6-1.8x
//! the AVX2 build on a head), AVX2 (this code auto-vectorised), portable (SSE2 / NEON).

use std::cell::RefCell;

use super::colors::Elem;
use super::project::{Projected, Splat2d, BLOCK};
use super::raster_portable::{blend_group, store_group};
use crate::matmul::SyncPtr;

/// Pixels blended together.
pub const LANES: usize = 8;
/// Channels accumulated per walk over a tile's list; GAGAvatar's 32 take one walk.
pub const CH_BLOCK: usize = 32;
/// `1.0f / 255.0f`: weaker contributions are skipped.
pub const MIN_ALPHA: f32 = 1.0 / 255.0;
/// A pixel stops when its transmittance would fall below this.
pub const MIN_T: f32 = 0.0001;
/// Alpha is clamped here so no single Gaussian makes a pixel fully opaque.
pub const MAX_ALPHA: f32 = 0.99;
/// Gaussians gathered and bucketed at a time. Small enough that a tile stops close to where its last pixel
/// stops and that buckets index with a byte, large enough that saving and restoring the 32 group states per
/// chunk stays negligible next to the walk.
pub const CHUNK: usize = 64;

/// 8-pixel groups per tile row.
const GROUPS: usize = BLOCK / LANES;
/// Blend groups per tile, row-major (`(y - y0) * GROUPS + g`); one bit each in a `u32` mask.
pub const TILE_GROUPS: usize = BLOCK * GROUPS;

/// What every tile reads; `T` is the colours' storage (f32, or f16 widened as each colour is loaded).
pub struct Frame<'a, T = f32> {
    pub projected: &'a [Projected],
    /// `[N, channels]`.
    pub colors: &'a [T],
    pub channels: usize,
    pub width: usize,
    pub height: usize,
    pub grid_x: usize,
    pub background: &'a [f32],
}

impl<'a, T: Elem> Frame<'a, T> {
    /// A frame of `camera`'s size over the projected Gaussians and their `[N, channels]` colours.
    pub fn new(projected: &'a [Projected], colors: &'a [T], channels: usize, camera: &super::SplatCamera, background: &'a [f32]) -> Self {
        Frame { projected, colors, channels, width: camera.width, height: camera.height, grid_x: camera.tile_grid().0, background }
    }
}

/// One chunk of a tile's list gathered front to back: global Gaussian indices (for colours) and their
/// 2D splats, walked in this order.
pub struct ChunkSplats<'a> {
    pub ids: &'a [u32],
    pub splats: &'a [Splat2d],
}

/// One blend group's progress through a tile's list for one 32-channel block: per pixel the transmittance
/// and the accumulated colour, and which pixels are still live (bit l = lane l).
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub struct GroupState {
    pub acc: [[f32; CH_BLOCK]; LANES],
    pub t: [f32; LANES],
    pub live: u8,
}

impl Default for GroupState {
    fn default() -> Self {
        GroupState { acc: [[0.0; CH_BLOCK]; LANES], t: [1.0; LANES], live: 0 }
    }
}

thread_local! {
    /// Per-thread group states, `TILE_GROUPS` per 32-channel block; grown once to the channel count.
    static STATES: RefCell<Vec<GroupState>> = const { RefCell::new(Vec::new()) };
}

/// A tile renderer: the portable, AVX2 or AVX-512 build. The state slice holds `TILE_GROUPS` entries per
/// 32-channel block.
pub type TileFn<T = f32> = unsafe fn(&Frame<T>, usize, &[u32], &mut [GroupState], &SyncPtr);

/// The best tile renderer this CPU supports.
pub fn select<T: Elem>() -> TileFn<T> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vl") {
            return render_tile_avx512::<T>;
        }
        if std::is_x86_feature_detected!("avx2") {
            return render_tile_avx2_checked::<T>;
        }
    }
    render_tile_portable::<T>
}

/// Every tile renderer this CPU runs, named, portable first (the tests compare them).
#[cfg(test)]
pub fn available<T: Elem>() -> Vec<(&'static str, TileFn<T>)> {
    #[allow(unused_mut)] // only x86-64 adds kernels
    let mut k: Vec<(&'static str, TileFn<T>)> = vec![("portable", render_tile_portable::<T>)];
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            k.push(("avx2", render_tile_avx2_checked::<T>));
        }
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vl") {
            k.push(("avx512", render_tile_avx512::<T>));
        }
    }
    k
}

/// Renders tile `tile` (its Gaussians `list`, front to back) into `out`, a `[channels, height, width]`
/// buffer, with `kernel`, using this thread's group states.
///
/// # Safety
/// `out` must point at `channels * height * width` writable floats (`frame`'s sizes) that nobody else reads
/// or writes during the call except at other tiles' pixels (each call writes only its own tile's pixels),
/// and `kernel` must be one `select` returned on this CPU.
pub unsafe fn render_tile<T: Elem>(kernel: TileFn<T>, frame: &Frame<T>, tile: usize, list: &[u32], out: &SyncPtr) {
    let need = states_per_tile(frame.channels);
    STATES.with(|cell| {
        // Tiles never nest (nothing below calls back into rayon); a fresh buffer covers it regardless.
        let mut fresh = Vec::new();
        let mut guard = cell.try_borrow_mut();
        let states = match guard.as_deref_mut() {
            Ok(states) => states,
            Err(_) => &mut fresh,
        };
        if states.len() < need {
            states.resize(need, GroupState::default());
        }
        // SAFETY: forwarded from this function's contract.
        unsafe { kernel(frame, tile, list, &mut states[..need], out) }
    })
}

/// Group states one tile of `channels` channels needs (`TILE_GROUPS` per 32-channel block).
pub fn states_per_tile(channels: usize) -> usize {
    TILE_GROUPS * channels.div_ceil(CH_BLOCK)
}

/// The portable build (SSE2 on x86-64, NEON on aarch64).
///
/// # Safety
/// As for [`render_tile`]'s `out`.
pub unsafe fn render_tile_portable<T: Elem>(frame: &Frame<T>, tile: usize, list: &[u32], states: &mut [GroupState], out: &SyncPtr) {
    tile_body::<T, false>(frame, tile, list, states, out)
}

/// [`render_tile_avx2`] as a [`TileFn`] (kept for AVX2-only hosts and A/B timing).
///
/// # Safety
/// As for [`render_tile`]'s `out`; the CPU must support AVX2 (`select` checks before handing this out).
#[cfg(target_arch = "x86_64")]
pub unsafe fn render_tile_avx2_checked<T: Elem>(frame: &Frame<T>, tile: usize, list: &[u32], states: &mut [GroupState], out: &SyncPtr) {
    // SAFETY: AVX2 and `out` are our caller's promises.
    unsafe { render_tile_avx2(frame, tile, list, states, out) }
}

/// The same code compiled for AVX2 (8-lane vectors, no FMA, so the rounding is unchanged).
///
/// # Safety
/// The CPU must support AVX2; `out` as for [`render_tile`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub unsafe fn render_tile_avx2<T: Elem>(frame: &Frame<T>, tile: usize, list: &[u32], states: &mut [GroupState], out: &SyncPtr) {
    tile_body::<T, false>(frame, tile, list, states, out)
}

/// The AVX-512 build: the 32-channel blend groups use `raster_x86`'s intrinsics, anything else the same
/// code as the other builds.
///
/// # Safety
/// The CPU must support AVX2, AVX-512F and AVX-512VL; `out` as for [`render_tile`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f,avx512vl")]
pub unsafe fn render_tile_avx512<T: Elem>(frame: &Frame<T>, tile: usize, list: &[u32], states: &mut [GroupState], out: &SyncPtr) {
    tile_body::<T, true>(frame, tile, list, states, out)
}

#[inline(always)]
fn tile_body<T: Elem, const AVX512: bool>(frame: &Frame<T>, tile: usize, list: &[u32], states: &mut [GroupState], out: &SyncPtr) {
    let (tx, ty) = (tile % frame.grid_x, tile / frame.grid_x);
    let (x0, y0) = (tx * BLOCK, ty * BLOCK);
    let (x1, y1) = ((x0 + BLOCK).min(frame.width), (y0 + BLOCK).min(frame.height));
    let blocks = frame.channels.div_ceil(CH_BLOCK);
    let fast32 = AVX512 && frame.channels == CH_BLOCK;
    // Groups inside the image (a group past the right edge has no pixels), their lane counts and the
    // first and last pixel column of each half row.
    let lanes_of = |g: usize| (x1.saturating_sub(x0 + g * LANES)).min(LANES);
    // The first chunk's loads overlap the state set-up.
    prefetch_chunk(frame, list);
    let mut alive = 0u32;
    for row in 0..y1 - y0 {
        for g in 0..GROUPS {
            let lanes = lanes_of(g);
            if lanes > 0 {
                alive |= 1 << (row * GROUPS + g);
                let live = ((1u16 << lanes) - 1) as u8;
                for b in 0..blocks {
                    let s = &mut states[b * TILE_GROUPS + row * GROUPS + g];
                    *s = GroupState { live, ..GroupState::default() };
                }
            }
        }
    }
    let spans: [(f32, f32); GROUPS] = std::array::from_fn(|g| {
        let gx = x0 + g * LANES;
        if lanes_of(g) > 0 {
            (gx as f32, (gx + lanes_of(g) - 1) as f32)
        } else {
            (f32::INFINITY, f32::NEG_INFINITY)
        }
    });
    let last = (y1 - 1) as f32;
    // Bit patterns of the groups of a run of rows: even bits are left halves, odd bits right halves.
    const HALF: [u64; GROUPS] = [0x5555_5555, 0xAAAA_AAAA];

    let mut splats = [Splat2d::default(); CHUNK];
    let mut buckets = [[0u8; CHUNK]; TILE_GROUPS];
    for (start, ids) in (0..).step_by(CHUNK).zip(list.chunks(CHUNK)) {
        if alive == 0 {
            break;
        }
        let mut lens = [0u8; TILE_GROUPS];
        for (k, &id) in ids.iter().enumerate() {
            let p = &frame.projected[id as usize];
            let (s, [rx, ry]) = (p.splat, p.reach);
            splats[k] = s;
            let (lo, hi) = ((s.y - ry).max(y0 as f32).ceil(), (s.y + ry).min(last).floor());
            // The predicate the walk used to skip (`x_hi < span_lo || x_lo > span_hi`), negated, so a
            // NaN box still reaches every group.
            let (bx0, bx1) = (s.x - rx, s.x + rx);
            if lo <= hi {
                let (lo, hi) = (lo as usize - y0, hi as usize - y0);
                let rows = ((1u64 << (2 * (hi - lo + 1))) - 1) << (2 * lo);
                let mut mask = 0u64;
                for (g, half) in HALF.iter().enumerate() {
                    if !(bx1 < spans[g].0 || bx0 > spans[g].1) {
                        mask |= rows & half;
                    }
                }
                let mut mask = mask as u32 & alive;
                while mask != 0 {
                    let b = mask.trailing_zeros() as usize;
                    buckets[b][lens[b] as usize] = k as u8;
                    lens[b] += 1;
                    mask &= mask - 1;
                }
            }
        }
        // The next chunk's records and colours are fetched while this one is walked: both are read by
        // Gaussian index, i.e. at random, and their cache misses were the raster's hottest loads.
        prefetch_chunk(frame, list.get(start + CHUNK..).unwrap_or(&[]));
        let chunk = ChunkSplats { ids, splats: &splats[..ids.len()] };
        let mut walk = alive;
        while walk != 0 {
            let b = walk.trailing_zeros() as usize;
            walk &= walk - 1;
            let bucket = &buckets[b][..lens[b] as usize];
            if bucket.is_empty() {
                continue;
            }
            let (y, gx) = (y0 + b / GROUPS, x0 + (b % GROUPS) * LANES);
            if fast32 {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: only `render_tile_avx512` instantiates `AVX512 = true`, and it requires AVX-512F/VL;
                // 32 channels checked.
                unsafe {
                    super::raster_x86::blend_group32(frame, &chunk, bucket, gx, y, &mut states[b])
                }
            } else {
                for blk in 0..blocks {
                    let ch0 = blk * CH_BLOCK;
                    let cw = CH_BLOCK.min(frame.channels - ch0);
                    let state = &mut states[blk * TILE_GROUPS + b];
                    if cw == CH_BLOCK {
                        blend_group::<CH_BLOCK, T>(frame, &chunk, bucket, gx, y, ch0, cw, state);
                    } else {
                        blend_group::<0, T>(frame, &chunk, bucket, gx, y, ch0, cw, state);
                    }
                }
            }
            if states[b].live == 0 {
                alive &= !(1 << b);
            }
        }
    }

    for row in 0..y1 - y0 {
        for g in 0..GROUPS {
            let (lanes, b) = (lanes_of(g), row * GROUPS + g);
            if lanes == 0 {
                continue;
            }
            let (y, gx) = (y0 + row, x0 + g * LANES);
            if fast32 {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above; the pixels are this tile's, `out` as for our caller.
                unsafe {
                    super::raster_x86::store_group32(frame, &states[b], gx, lanes, y, out)
                }
            } else {
                for blk in 0..blocks {
                    store_group(frame, &states[blk * TILE_GROUPS + b], gx, lanes, y, blk * CH_BLOCK, out);
                }
            }
        }
    }
}

/// Prefetches the `Projected` records and colours of the first `CHUNK` Gaussians of `ids`.
#[inline(always)]
fn prefetch_chunk<T: Elem>(frame: &Frame<T>, ids: &[u32]) {
    for &id in ids.iter().take(CHUNK) {
        let id = id as usize;
        let color = frame.colors.as_ptr().wrapping_add(id * frame.channels);
        prefetch(frame.projected.as_ptr().wrapping_add(id));
        prefetch(color);
        prefetch(color.wrapping_add(frame.channels.saturating_sub(1)));
    }
}

/// A hint to load the cache line at `p`; a no-op where no prefetch instruction is wired up.
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults and never changes memory, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
