//! Gaussian splatting into a `[C, H, W]` feature image, faithful to the forward pass of the official
//! rasteriser (`xg-chu/diff-gaussian-rasterization`, the Inria 3DGS kernel with 32 channels).
//!
//! Data flow per frame: `project` preprocesses every Gaussian in parallel (near cull, EWA conic, radius,
//! tile rectangle; the 3D covariance comes from `cache` when the Gaussian's scale and rotation are bitwise
//! those of an earlier frame), 16 Gaussians at a time in `project_lanes` (the same float operations
//! vectorised across Gaussians, bit for bit the scalar `project::project_with`) -> `bin` orders the
//! visible ones by depth and lists them per 16x16 tile (count and scatter in parallel chunks) -> `raster`
//! blends each tile front to back, tiles in parallel, taking each tile's list 64 Gaussians at a time and
//! stopping once every pixel of the tile has stopped (`footprint` bounds where a Gaussian can matter, to
//! skip work; `raster_x86` is the AVX-512 blend, `raster_portable` the generic one). `reference` is the
//! plain per-pixel oracle; `synthetic` builds a head-like scene for benches; `profile` times the stages and
//! counts the blend work (for harnesses).
//!
//! Colours may be stored f32 or f16 (`colors`: an int8 session keeps them in f16); the blend is compiled per
//! element type and widens f16 exactly as it loads them, so f16 colours splat bitwise as their f32 values.
//!
//! Rounding: every float operation follows the CUDA source's order in f32 (`ndc2Pix` in f64, as its double
//! literals make it), and `project::exp` stays within CUDA `expf`'s 2 ulp. The GPU may contract some
//! multiply-adds into FMAs and, under GAGAvatar's TF32 matmul setting, may round the 4x4 projection product
//! differently, so agreement with a GPU run is to rounding, not bitwise. The fast path and the reference
//! agree bitwise, for any thread count.
//!
//! Performance (official size, 2 x86-64 cores with AVX-512): see `docs/performance.md` ("CPU splat");
//! `tests_fast::official_size_stage_times_old_vs_new` times the previous and current build of each stage
//! in one process on the synthetic head, `tests/tests/splat_astronaut.rs` profiles a lifted avatar.
//!
//! Deviation from the official kernel, by design: a Gaussian with a non-finite attribute (position, scale,
//! rotation, opacity or any colour channel), or whose projection overflows, is culled, so NaN and Inf inputs
//! leave the image finite instead of smearing NaN over it. Everything else follows the CUDA source,
//! including its quirks (unnormalised quaternions, the 0.3 blur, alpha clamp 0.99, `T < 1e-4` stop).

mod bin;
mod cache;
pub mod camera;
pub mod colors;
mod footprint;
pub mod profile;
pub mod project;
mod project_lanes;
mod raster;
mod raster_portable;
#[cfg(target_arch = "x86_64")]
mod raster_x86;
pub mod reference;
pub mod synthetic;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_cov;
#[cfg(test)]
mod tests_f16;
#[cfg(test)]
mod tests_fast;
#[cfg(test)]
mod tests_lanes;
#[cfg(test)]
mod tests_project;

use rayon::prelude::*;

pub use camera::SplatCamera;
pub use colors::{Colors, Elem};
use project::Projected;

use crate::matmul::SyncPtr;
use crate::scratch::{run_tiled_in, tiled_len};

/// GAGAvatar's feature channels per Gaussian (`NUM_CHANNELS`).
pub const CHANNELS: usize = 32;

/// Gaussians given to the splatter are inconsistent: a field's length does not match the count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GaussianSetError {
    pub field: &'static str,
    pub expected: usize,
    pub found: usize,
}

impl std::fmt::Display for GaussianSetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gaussian set: `{}` has {} values, expected {}", self.field, self.found, self.expected)
    }
}

impl std::error::Error for GaussianSetError {}

/// Borrowed attributes of N Gaussians, structure of arrays. Checked consistent on construction.
#[derive(Clone, Copy, Debug)]
pub struct GaussianSet<'a> {
    means: &'a [f32],
    /// `[M*3]` means that replace the first `M` of `means` ([`GaussianSet::moving`]: the FLAME vertex
    /// Gaussians posed this frame, the rest as lifted); empty otherwise.
    moved: &'a [f32],
    scales: &'a [f32],
    rotations: &'a [f32],
    /// `[N*6]` 3D covariances computed once ([`covariances`]), used instead of `scales` and `rotations`
    /// (then empty); empty otherwise.
    covs: &'a [f32],
    opacities: &'a [f32],
    colors: Colors<'a>,
    channels: usize,
}

/// The first `(field, found, expected)` length that differs, else no channels, as the error naming it.
fn check_lengths(fields: &[(&'static str, usize, usize)], channels: usize) -> Result<(), GaussianSetError> {
    if let Some(&(field, found, expected)) = fields.iter().find(|f| f.1 != f.2) {
        return Err(GaussianSetError { field, expected, found });
    }
    if channels == 0 {
        return Err(GaussianSetError { field: "channels", expected: CHANNELS, found: 0 });
    }
    Ok(())
}

impl<'a> GaussianSet<'a> {
    /// `means [N*3]`, `scales [N*3]` (world units, used as given), `rotations [N*4]` as (w, x, y, z), NOT
    /// normalised by the kernel, `opacities [N]`, `colors [N*channels]`. N is taken from `opacities`.
    pub fn new(
        means: &'a [f32],
        scales: &'a [f32],
        rotations: &'a [f32],
        opacities: &'a [f32],
        colors: &'a [f32],
        channels: usize,
    ) -> Result<Self, GaussianSetError> {
        Self::with_colors(means, scales, rotations, opacities, Colors::F32(colors), channels)
    }

    /// [`GaussianSet::new`] with colours in either storage (f16 ones are widened exactly as they are read).
    pub fn with_colors(
        means: &'a [f32],
        scales: &'a [f32],
        rotations: &'a [f32],
        opacities: &'a [f32],
        colors: Colors<'a>,
        channels: usize,
    ) -> Result<Self, GaussianSetError> {
        let n = opacities.len();
        check_lengths(
            &[
                ("means", means.len(), n * 3),
                ("scales", scales.len(), n * 3),
                ("rotations", rotations.len(), n * 4),
                ("colors", colors.len(), n * channels),
            ],
            channels,
        )?;
        Ok(GaussianSet { means, moved: &[], scales, rotations, covs: &[], opacities, colors, channels })
    }

    /// [`GaussianSet::with_colors`] with each Gaussian's 3D covariance given (`covs [N*6]`, from
    /// [`covariances`]) instead of its scale and rotation: the splat then never computes nor caches
    /// one. Bitwise the same frames (the same `cov3d` values; a non-finite scale or rotation gives a
    /// non-finite covariance, which culls the Gaussian as the non-finite scale or rotation would).
    pub fn with_covariances(
        means: &'a [f32],
        covs: &'a [f32],
        opacities: &'a [f32],
        colors: Colors<'a>,
        channels: usize,
    ) -> Result<Self, GaussianSetError> {
        let n = opacities.len();
        check_lengths(
            &[("means", means.len(), n * 3), ("covariances", covs.len(), n * 6), ("colors", colors.len(), n * channels)],
            channels,
        )?;
        Ok(GaussianSet { means, moved: &[], scales: &[], rotations: &[], covs, opacities, colors, channels })
    }

    /// The set with the first `moved.len() / 3` means replaced by `moved` (`[M*3]`, `M <= N`), so a caller
    /// that moves only some Gaussians each frame keeps no copy of the others' means.
    pub fn moving(self, moved: &'a [f32]) -> Result<Self, GaussianSetError> {
        if !moved.len().is_multiple_of(3) || moved.len() > self.means.len() {
            return Err(GaussianSetError { field: "moved means", expected: self.means.len(), found: moved.len() });
        }
        Ok(GaussianSet { moved, ..self })
    }

    /// Whether the Gaussians carry precomputed covariances ([`GaussianSet::with_covariances`]).
    pub fn has_covariances(&self) -> bool {
        !self.covs.is_empty()
    }

    /// Gaussian `i`'s precomputed 3D covariance (None when the set gives scales and rotations).
    #[inline(always)]
    pub fn covariance(&self, i: usize) -> Option<[f32; 6]> {
        self.covs.get(6 * i..6 * i + 6).map(|c| [c[0], c[1], c[2], c[3], c[4], c[5]])
    }

    /// Whether Gaussian `i`'s shape inputs are finite: its covariance when given, else its scale and
    /// rotation (no short-circuit, so it vectorises).
    #[inline(always)]
    pub(super) fn shape_finite(&self, i: usize) -> bool {
        match self.covariance(i) {
            Some(c) => project::all_finite(&c),
            None => project::all_finite(&self.scale(i)) & project::all_finite(&self.rotation(i)),
        }
    }

    pub fn len(&self) -> usize {
        self.opacities.len()
    }

    pub fn is_empty(&self) -> bool {
        self.opacities.is_empty()
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    #[inline(always)]
    pub fn mean(&self, i: usize) -> [f32; 3] {
        let m = if 3 * i < self.moved.len() { self.moved } else { self.means };
        [m[3 * i], m[3 * i + 1], m[3 * i + 2]]
    }

    pub fn scale(&self, i: usize) -> [f32; 3] {
        [self.scales[3 * i], self.scales[3 * i + 1], self.scales[3 * i + 2]]
    }

    pub fn rotation(&self, i: usize) -> [f32; 4] {
        let r = &self.rotations[4 * i..4 * i + 4];
        [r[0], r[1], r[2], r[3]]
    }

    pub fn opacity(&self, i: usize) -> f32 {
        self.opacities[i]
    }

    /// All `[N, channels]` colours as stored.
    pub fn colors(&self) -> Colors<'a> {
        self.colors
    }

    /// Whether every colour channel of Gaussian `i` is finite (checked in the stored type: no widening).
    #[inline(always)]
    pub fn color_finite(&self, i: usize) -> bool {
        let range = i * self.channels..(i + 1) * self.channels;
        match self.colors {
            Colors::F32(v) => f32::all_finite(&v[range]),
            Colors::F16(v) => half::f16::all_finite(&v[range]),
        }
    }
}

/// Counts from the last binning, for benches and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SplatStats {
    /// Gaussians that survived preprocessing (touch at least one tile).
    pub visible: usize,
    /// Tile-Gaussian pairs, the length of all tile lists together.
    pub pairs: usize,
}

/// Buffers reused across frames: after the first frame of a given size, `splat` allocates nothing
/// (buffers only grow).
#[derive(Default, Debug)]
pub struct SplatScratch {
    projected: Vec<Projected>,
    bins: bin::Bins,
    /// Per-Gaussian 3D covariances from earlier frames (`cache`), used unless `no_cov_cache`.
    covs: Vec<cache::CovEntry>,
    no_cov_cache: bool,
    /// Blend states, one tile's worth per worker (`scratch::run_tiled_in`).
    states: Vec<raster::GroupState>,
}

impl SplatScratch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes currently held.
    pub fn capacity_bytes(&self) -> usize {
        self.buffer_bytes().iter().map(|(_, b)| b).sum()
    }

    /// Bytes held by each buffer (capacities), by name, for memory reports: the per-Gaussian projected
    /// records and covariance cache, then the binning buffers (sized by visible Gaussians, tile pairs, tiles).
    pub fn buffer_bytes(&self) -> Vec<(&'static str, usize)> {
        let mut v = vec![
            ("projected", self.projected.capacity() * std::mem::size_of::<Projected>()),
            ("covariance cache", self.covs.capacity() * std::mem::size_of::<cache::CovEntry>()),
        ];
        v.extend(self.bins.buffer_bytes());
        v.push(("tile blend states", self.states.capacity() * std::mem::size_of::<raster::GroupState>()));
        v
    }

    /// Keep (the default) or stop keeping 3D covariances across frames; only speed changes, never the
    /// output. Off, every frame recomputes all of them (the A/B baseline for benches).
    pub fn set_covariance_cache(&mut self, on: bool) {
        self.no_cov_cache = !on;
        if !on {
            self.covs = Vec::new();
        }
    }
}

/// Every Gaussian's 3D covariance `[N*6]` from `scales [N*3]` and `rotations [N*4]` (`cov3d`, the
/// projection's own function, so [`GaussianSet::with_covariances`] splats bitwise as the scales and
/// rotations would). For a set whose shapes never change (a lifted avatar: FLAME moves positions only),
/// computed once instead of per frame or in a per-frame cache (52 B per Gaussian). Lengths are the
/// caller's (`rotations` must hold 4 values per 3 of `scales`).
pub fn covariances(scales: &[f32], rotations: &[f32]) -> Vec<f32> {
    let n = (scales.len() / 3).min(rotations.len() / 4);
    let mut out = vec![0f32; 6 * n];
    out.par_chunks_mut(6 * 1024).enumerate().for_each(|(t, part)| {
        for (j, c) in part.chunks_mut(6).enumerate() {
            let i = t * 1024 + j;
            let s = [scales[3 * i], scales[3 * i + 1], scales[3 * i + 2]];
            let r = [rotations[4 * i], rotations[4 * i + 1], rotations[4 * i + 2], rotations[4 * i + 3]];
            c.copy_from_slice(&project::cov3d(s, r));
        }
    });
    out
}

/// Preprocess and bin (everything but the blending); returns the counts.
fn prepare(gaussians: &GaussianSet, camera: &SplatCamera, scratch: &mut SplatScratch) -> SplatStats {
    project_all(gaussians, camera, scratch);
    scratch.bins.build(&scratch.projected, camera.tile_grid());
    SplatStats { visible: scratch.bins.visible(), pairs: scratch.bins.pairs() }
}

/// Gaussians per parallel task of the projection (a whole number of `project_lanes` blocks).
const PROJECT_TASK: usize = 64 * project_lanes::LANES;

/// Preprocesses every Gaussian into `scratch.projected` (culled ones get an empty tile rectangle), 16 at a
/// time (`project_lanes`, bit for bit `project::project_with`).
fn project_all(gaussians: &GaussianSet, camera: &SplatCamera, scratch: &mut SplatScratch) {
    use project_lanes::{project_block, LANES};
    let (gx, gy) = camera.tile_grid();
    assert!(
        gx <= project::MAX_TILES && gy <= project::MAX_TILES,
        "splat: a {}x{} image has more than {} tiles on a side",
        camera.width,
        camera.height,
        project::MAX_TILES
    );
    let n = gaussians.len();
    scratch.projected.resize(n, Projected::default());
    if scratch.no_cov_cache || gaussians.has_covariances() {
        scratch.projected.par_chunks_mut(PROJECT_TASK).enumerate().for_each(|(t, part)| {
            for (b, out) in part.chunks_mut(LANES).enumerate() {
                project_block(gaussians, t * PROJECT_TASK + b * LANES, camera, &mut [], out);
            }
        });
    } else {
        scratch.covs.resize(n, cache::CovEntry::default());
        let tasks = scratch.projected.par_chunks_mut(PROJECT_TASK).zip(scratch.covs.par_chunks_mut(PROJECT_TASK));
        tasks.enumerate().for_each(|(t, (part, covs))| {
            for (b, (out, covs)) in part.chunks_mut(LANES).zip(covs.chunks_mut(LANES)).enumerate() {
                project_block(gaussians, t * PROJECT_TASK + b * LANES, camera, covs, out);
            }
        });
    }
}

/// Splat `gaussians` seen through `camera` over `background` (`[C]`) into `out` (`[C, H, W]`), using
/// rayon's current pool (the result does not depend on the thread count).
///
/// Panics if `background` or `out` do not match the set's channel count and the camera's size (the
/// caller's buffers, not input data), or if the image is wider or taller than `project::MAX_TILES` tiles
/// (1,048,560 pixels).
pub fn splat(gaussians: &GaussianSet, camera: &SplatCamera, background: &[f32], out: &mut [f32], scratch: &mut SplatScratch) -> SplatStats {
    let c = gaussians.channels();
    assert_eq!(background.len(), c, "splat: background has {} channels, Gaussians have {c}", background.len());
    let want = c * camera.height * camera.width;
    assert_eq!(out.len(), want, "splat: output holds {} floats, [C, H, W] needs {want}", out.len());
    let stats = prepare(gaussians, camera, scratch);

    // One dispatch on the storage per frame; each blend below is compiled for its element type.
    match gaussians.colors {
        Colors::F32(colors) => blend_all(colors, c, camera, background, out, scratch),
        Colors::F16(colors) => blend_all(colors, c, camera, background, out, scratch),
    }
    stats
}

/// Blends every tile of the prepared frame in `scratch` into `out` (sizes asserted by the caller). Each
/// worker blends with its own tile's worth of states from `scratch`, sized here before the tiles start, so
/// no later frame allocates whichever threads the tiles land on (thread-local states grew on a thread's
/// first tile, which under load could come in any frame).
fn blend_all<T: Elem>(colors: &[T], c: usize, camera: &SplatCamera, background: &[f32], out: &mut [f32], scratch: &mut SplatScratch) {
    let (grid_x, grid_y) = camera.tile_grid();
    let (tiles, need) = (grid_x * grid_y, raster::states_per_tile(c));
    let len = tiled_len(tiles, need);
    if scratch.states.len() < len {
        scratch.states.resize(len, raster::GroupState::default());
    }
    let frame = raster::Frame::new(&scratch.projected, colors, c, camera, background);
    let render = raster::select::<T>();
    let bins = &scratch.bins;
    let ptr = SyncPtr(out.as_mut_ptr());
    run_tiled_in(&mut scratch.states, tiles, need, |t, states, _| {
        // SAFETY: `ptr` is `out`, which holds `[c, height, width]` floats (asserted by `splat`) and is
        // borrowed mutably for this whole loop; each tile index is rendered once and writes only its own
        // pixels; `render` came from `select`; `states` is this task's own.
        unsafe { render(&frame, t, bins.tile(t), states, &ptr) }
    });
}

/// The counts `splat` would report (visible Gaussians, tile-Gaussian pairs), without blending.
pub fn splat_stats(gaussians: &GaussianSet, camera: &SplatCamera, scratch: &mut SplatScratch) -> SplatStats {
    prepare(gaussians, camera, scratch)
}
