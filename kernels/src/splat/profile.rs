//! Where a splat's time goes, for harnesses on real avatars (`tests/tests/splat_astronaut.rs`): wall time
//! per stage, per-thread raster load, and work counts of the blend walk. Not on the frame path: the counts
//! come from a separate scalar walk over the same buckets the fast path walks, which follows the official
//! per-pixel rules, so they describe the work without instrumenting the hot loop.

use std::time::Instant;

use rayon::prelude::*;

use super::project::{exp, BLOCK};
use super::raster::{self, MAX_ALPHA, MIN_ALPHA, MIN_T};
use super::{Colors, Elem, GaussianSet, SplatCamera, SplatScratch};
use crate::matmul::SyncPtr;

/// Pixels per blend group (`raster`'s 8 lanes).
const LANES: usize = 8;

/// One splat's stage times and work counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SplatProfile {
    /// Projection of every Gaussian (with the covariance cache as configured), ms.
    pub project_ms: f64,
    /// Depth sort and tile lists, ms.
    pub bin_ms: f64,
    /// All tiles blended, ms (wall).
    pub raster_ms: f64,
    /// Raster time spent by each rayon thread (sum of its tiles), ms; index = thread.
    pub thread_raster_ms: Vec<f64>,
    /// The slowest single tile, ms.
    pub slowest_tile_ms: f64,
    /// Visible Gaussians, tile-Gaussian pairs and the longest tile list.
    pub visible: usize,
    pub pairs: usize,
    pub longest_list: usize,
    /// (8-pixel group, Gaussian) pairs whose footprint box reaches the group, over whole tile lists: what
    /// bucketing every list in full would cost (the raster stops taking chunks once a tile's pixels stop).
    pub bucket_entries: u64,
    /// Bucket entries visited before their group's pixels all stopped.
    pub walked: u64,
    /// Visited entries with alpha >= 1/255 at some live pixel of the group (the ones that do work).
    pub strong: u64,
    /// Pixel blends (`C += f alpha T` for one pixel and all channels).
    pub blends: u64,
    /// Pixels rendered, and those whose walk ended by transmittance (`T < 1e-4`).
    pub pixels: u64,
    pub terminated: u64,
    /// Per tile, the length of the list prefix before every pixel of the tile has stopped, summed: the
    /// pairs any work is needed for.
    pub needed_pairs: u64,
    /// Bytes held by the scratch after this frame.
    pub scratch_bytes: usize,
}

/// Splats like [`super::splat`] (same output, same scratch), timing each stage and each tile; with `counts`,
/// then counts the blend walk's work with a scalar pass (slow, allocates: a profiling call, not a frame).
///
/// Panics as [`super::splat`] does on mismatched `background` or `out`.
pub fn profile(
    gaussians: &GaussianSet,
    camera: &SplatCamera,
    background: &[f32],
    out: &mut [f32],
    scratch: &mut SplatScratch,
    counts: bool,
) -> SplatProfile {
    let c = gaussians.channels();
    assert_eq!(background.len(), c, "splat profile: background has {} channels, Gaussians have {c}", background.len());
    assert_eq!(out.len(), c * camera.height * camera.width, "splat profile: output size");
    let t0 = Instant::now();
    super::project_all(gaussians, camera, scratch);
    let t1 = Instant::now();
    scratch.bins.build(&scratch.projected, camera.tile_grid());
    let t2 = Instant::now();

    let (grid_x, grid_y) = camera.tile_grid();
    let tile_times = match gaussians.colors() {
        Colors::F32(colors) => time_tiles(colors, c, camera, background, out, scratch),
        Colors::F16(colors) => time_tiles(colors, c, camera, background, out, scratch),
    };
    let bins = &scratch.bins;
    let t3 = Instant::now();

    let mut p = SplatProfile {
        project_ms: (t1 - t0).as_secs_f64() * 1e3,
        bin_ms: (t2 - t1).as_secs_f64() * 1e3,
        raster_ms: (t3 - t2).as_secs_f64() * 1e3,
        thread_raster_ms: vec![0.0; rayon::current_num_threads().max(1)],
        visible: bins.visible(),
        pairs: bins.pairs(),
        ..SplatProfile::default()
    };
    for &(thread, ms) in &tile_times {
        if let Some(slot) = p.thread_raster_ms.get_mut(thread) {
            *slot += ms;
        }
        p.slowest_tile_ms = p.slowest_tile_ms.max(ms);
    }
    // The counting walk reads no colour.
    let frame = raster::Frame::<f32>::new(&scratch.projected, &[], c, camera, background);
    for t in 0..grid_x * grid_y {
        let list = bins.tile(t);
        p.longest_list = p.longest_list.max(list.len());
        if counts {
            count_tile(&mut p, &frame, t, list);
        }
    }
    p.scratch_bytes = scratch.capacity_bytes();
    p
}

/// Adds tile `t`'s walk counts to `p`: per 8-pixel group, its bucket (the Gaussians whose footprint box
/// reaches the group, front to back) walked with the official rules until every pixel has stopped.
fn count_tile(p: &mut SplatProfile, frame: &raster::Frame, t: usize, list: &[u32]) {
    let (x0, y0) = ((t % frame.grid_x) * BLOCK, (t / frame.grid_x) * BLOCK);
    let (x1, y1) = ((x0 + BLOCK).min(frame.width), (y0 + BLOCK).min(frame.height));
    let mut needed = 0;
    for y in y0..y1 {
        for gx in (x0..x1).step_by(LANES) {
            let lanes = LANES.min(x1 - gx);
            let (lo, hi) = (gx as f32, (gx + lanes - 1) as f32);
            let mut tr = [1f32; LANES];
            let mut live = [false; LANES];
            live[..lanes].iter_mut().for_each(|l| *l = true);
            p.pixels += lanes as u64;
            let bucket = list.iter().enumerate().map(|(k, &g)| (k, &frame.projected[g as usize])).filter(|(_, q)| {
                let (s, [rx, ry]) = (q.splat, q.reach);
                !(s.x + rx < lo || s.x - rx > hi || s.y + ry < y as f32 || s.y - ry > y as f32)
            });
            let mut stopped = false;
            // A group whose pixels never all stop needs the whole list.
            let mut group_needed = list.len();
            for (k, q) in bucket {
                p.bucket_entries += 1;
                if stopped {
                    continue;
                }
                p.walked += 1;
                let s = &q.splat;
                let mut any_strong = false;
                for l in 0..lanes {
                    let (dx, dy) = (s.x - (gx + l) as f32, s.y - y as f32);
                    let power = -0.5 * (s.conic[0] * dx * dx + s.conic[2] * dy * dy) - s.conic[1] * dx * dy;
                    let alpha = if power > 0.0 { 0.0 } else { (s.opacity * exp(power)).min(MAX_ALPHA) };
                    if !live[l] || alpha < MIN_ALPHA {
                        continue;
                    }
                    any_strong = true;
                    let test_t = tr[l] * (1.0 - alpha);
                    if test_t < MIN_T {
                        live[l] = false;
                        p.terminated += 1;
                    } else {
                        tr[l] = test_t;
                        p.blends += 1;
                    }
                }
                p.strong += u64::from(any_strong);
                stopped = !live.iter().any(|&l| l);
                if stopped {
                    group_needed = k + 1;
                }
            }
            needed = needed.max(group_needed);
        }
    }
    p.needed_pairs += needed as u64;
}

/// Blends every tile as `splat` does (sizes asserted by the caller), timing each: (rayon thread, ms) per tile.
fn time_tiles<T: Elem>(
    colors: &[T],
    c: usize,
    camera: &SplatCamera,
    background: &[f32],
    out: &mut [f32],
    scratch: &SplatScratch,
) -> Vec<(usize, f64)> {
    let (grid_x, grid_y) = camera.tile_grid();
    let frame = raster::Frame::new(&scratch.projected, colors, c, camera, background);
    let render = raster::select::<T>();
    let bins = &scratch.bins;
    let ptr = SyncPtr(out.as_mut_ptr());
    (0..grid_x * grid_y)
        .into_par_iter()
        .map(|t| {
            let start = Instant::now();
            // SAFETY: as in `splat`: `out` is the asserted `[c, height, width]` buffer, each tile is rendered
            // once and writes only its own pixels, `render` came from `select`.
            unsafe { raster::render_tile(render, &frame, t, bins.tile(t), &ptr) };
            (rayon::current_thread_index().unwrap_or(0), start.elapsed().as_secs_f64() * 1e3)
        })
        .collect()
}
