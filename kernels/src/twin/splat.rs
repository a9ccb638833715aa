//! The GPU splatter's interface and its CPU twin, pass by pass (`splat_project.comp`, `splat_scan.comp`,
//! `splat_fill.comp`, `splat_sort.comp`, `splat_raster.comp`): one push-constant struct shared by the five
//! shaders, the buffer layouts (camera, attributes, 12-word records, status words), the dispatch sizes,
//! and [`splat`], which runs the twins of the five passes in order and is tested against
//! `crate::splat::splat`, the CPU splatter.

use super::{splat_bin, splat_project, splat_raster};
use crate::splat::SplatCamera;

/// Shipped SPIR-V of `kernels/shaders/splat_project.comp`.
pub const PROJECT_SPV: &[u8] = include_bytes!("../../shaders/splat_project.spv");
/// Shipped SPIR-V of `kernels/shaders/splat_scan.comp`.
pub const SCAN_SPV: &[u8] = include_bytes!("../../shaders/splat_scan.spv");
/// Shipped SPIR-V of `kernels/shaders/splat_fill.comp`.
pub const FILL_SPV: &[u8] = include_bytes!("../../shaders/splat_fill.spv");
/// Shipped SPIR-V of `kernels/shaders/splat_sort.comp`.
pub const SORT_SPV: &[u8] = include_bytes!("../../shaders/splat_sort.spv");
/// Shipped SPIR-V of `kernels/shaders/splat_raster.comp`.
pub const RASTER_SPV: &[u8] = include_bytes!("../../shaders/splat_raster.spv");
/// Shipped SPIR-V of `kernels/shaders/splat_raster.comp` built with `-DSTORAGE_F16` (fp16 output image).
pub const RASTER_F16_SPV: &[u8] = include_bytes!("../../shaders/splat_raster_f16.spv");

/// Feature channels the raster shader is built for (GAGAvatar's 32).
pub const CHANNELS: usize = 32;
/// Tile edge in pixels; the raster workgroup is one tile.
pub const TILE: usize = 16;
/// Invocations per workgroup of every splat shader (the raster's 16 x 16, the others' 256 x 1).
pub const WORKGROUP: u32 = 256;
/// Most workgroups of a per-Gaussian pass; its grid-stride loop covers more Gaussians.
pub const MAX_GROUPS: u32 = 65535;
/// Tile lists up to this length are sorted in shared memory (2 x 2048 u32 = 16 KiB); longer in place.
pub const SORT_SHARED_CAP: usize = 2048;
/// Words per Gaussian in the records buffer: x, y, conic a, b, c, opacity, depth, radius, rect x0 y0 x1 y1.
pub const REC_WORDS: usize = 12;
/// Floats per Gaussian in the attributes buffer: scale xyz, quaternion wxyz, opacity.
pub const ATTR_WORDS: usize = 8;
/// Floats in the camera buffer: view 16, proj 16, tan_fov 2, focal_px 2, padding 4, background 32.
pub const CAMERA_FLOATS: usize = BACKGROUND_OFFSET + CHANNELS;
/// Where the background starts in the camera buffer.
pub const BACKGROUND_OFFSET: usize = 40;
/// Largest image side: `ndc2pix` needs the size to have at most 12 significant bits.
pub const MAX_SIDE: usize = 4096;
/// Words of the status buffer.
pub const STATUS_WORDS: usize = 4;

/// Indices into the status buffer.
pub struct Status;

impl Status {
    /// Tile-Gaussian pairs of the frame.
    pub const PAIRS: usize = 0;
    /// 1 when the pairs exceeded the capacity (or wrapped u32): the frame was not rendered.
    pub const OVERFLOW: usize = 1;
    /// Counter the projection increments per visible Gaussian (cleared by the scan).
    pub const VISIBLE_COUNTER: usize = 2;
    /// Visible Gaussians of the frame.
    pub const VISIBLE: usize = 3;
}

/// Push constants of all five splat shaders, in the GLSL block's order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SplatPush {
    /// Gaussians.
    pub n: u32,
    pub width: u32,
    pub height: u32,
    /// Tiles across and down.
    pub grid_x: u32,
    pub grid_y: u32,
    /// Tile-Gaussian pairs the list buffers hold.
    pub capacity: u32,
}

impl SplatPush {
    /// Push constants for `n` Gaussians on a `width` x `height` image with `capacity` pairs.
    pub fn new(n: usize, width: usize, height: usize, capacity: usize) -> SplatPush {
        SplatPush {
            n: n as u32,
            width: width as u32,
            height: height as u32,
            grid_x: width.div_ceil(TILE) as u32,
            grid_y: height.div_ceil(TILE) as u32,
            capacity: capacity as u32,
        }
    }

    pub fn tiles(&self) -> usize {
        self.grid_x as usize * self.grid_y as usize
    }

    /// Workgroups of the per-Gaussian passes (projection, fill).
    pub fn gaussian_groups(&self) -> (u32, u32, u32) {
        (super::groups(self.n as usize, WORKGROUP).min(MAX_GROUPS), 1, 1)
    }

    /// Workgroups of the per-tile passes (sort, raster): one per tile.
    pub fn tile_groups(&self) -> (u32, u32, u32) {
        (self.grid_x.max(1), self.grid_y.max(1), 1)
    }
}

/// The camera buffer's contents: matrices row-major as `SplatCamera` holds them, then the background.
pub fn camera_words(cam: &SplatCamera, background: &[f32; CHANNELS]) -> [f32; CAMERA_FLOATS] {
    let mut w = [0f32; CAMERA_FLOATS];
    for i in 0..4 {
        w[4 * i..4 * i + 4].copy_from_slice(&cam.view[i]);
        w[16 + 4 * i..16 + 4 * i + 4].copy_from_slice(&cam.proj[i]);
    }
    w[32..34].copy_from_slice(&cam.tan_fov);
    w[34..36].copy_from_slice(&cam.focal_px);
    w[BACKGROUND_OFFSET..].copy_from_slice(background);
    w
}

/// The attributes buffer (`[N, ATTR_WORDS]`) from structure-of-arrays inputs. A Gaussian with a
/// non-finite colour gets a NaN opacity, so the projection culls it as the CPU splatter does, without
/// reading 32 colours per Gaussian per frame.
pub fn pack_attributes(scales: &[f32], rotations: &[f32], opacities: &[f32], colors: &[f32]) -> Vec<f32> {
    let n = opacities.len();
    let mut out = Vec::with_capacity(n * ATTR_WORDS);
    for i in 0..n {
        out.extend_from_slice(&scales[3 * i..3 * i + 3]);
        out.extend_from_slice(&rotations[4 * i..4 * i + 4]);
        let finite = colors[i * CHANNELS..(i + 1) * CHANNELS].iter().all(|c| c.is_finite());
        out.push(if finite { opacities[i] } else { f32::NAN });
    }
    out
}

/// A frame whose tile-Gaussian pairs exceed the list capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overflow {
    pub pairs: u32,
    pub capacity: u32,
}

/// The five passes' twins in order: `[CHANNELS, H, W]` image, visible Gaussians and pairs, or the overflow.
/// `positions [N*3]`, `attr` from [`pack_attributes`], `colors [N*CHANNELS]`.
pub fn splat(
    p: &SplatPush,
    positions: &[f32],
    attr: &[f32],
    colors: &[f32],
    cam: &SplatCamera,
    background: &[f32; CHANNELS],
) -> Result<(Vec<f32>, u32, u32), Overflow> {
    let (n, tiles) = (p.n as usize, p.tiles());
    let mut rec = vec![0u32; n * REC_WORDS];
    let mut counts = vec![0u32; tiles];
    let mut status = [0u32; STATUS_WORDS];
    for i in 0..n {
        if let Some(r) = splat_project::project(p, i, positions, attr, cam) {
            for ty in r[9]..r[11] {
                for tx in r[8]..r[10] {
                    counts[(ty * p.grid_x + tx) as usize] += 1;
                }
            }
            status[Status::VISIBLE_COUNTER] += 1;
            rec[i * REC_WORDS..(i + 1) * REC_WORDS].copy_from_slice(&r);
        }
    }
    let mut offsets = vec![0u32; tiles + 1];
    splat_bin::scan(p, &mut counts, &mut offsets, &mut status);
    if status[Status::OVERFLOW] != 0 {
        return Err(Overflow { pairs: status[Status::PAIRS], capacity: p.capacity });
    }
    let pairs = status[Status::PAIRS] as usize;
    let (mut list, mut keys) = (vec![0u32; pairs], vec![0u32; pairs]);
    for i in 0..n {
        let r: [u32; REC_WORDS] = std::array::from_fn(|k| rec[i * REC_WORDS + k]);
        splat_bin::fill(p, i, &r, &offsets, &mut counts, &mut list, &mut keys);
    }
    for t in 0..tiles {
        let (a, b) = (offsets[t] as usize, offsets[t + 1] as usize);
        splat_bin::sort_tile(&mut keys[a..b], &mut list[a..b]);
    }
    let cam_words = camera_words(cam, background);
    let (w, h) = (p.width as usize, p.height as usize);
    let mut image = vec![0f32; CHANNELS * w * h];
    for y in 0..h {
        for x in 0..w {
            let t = (y / TILE) * p.grid_x as usize + x / TILE;
            let tile_list = &list[offsets[t] as usize..offsets[t + 1] as usize];
            splat_raster::raster_pixel(p, x, y, tile_list, &rec, colors, &cam_words, &mut image);
        }
    }
    Ok((image, status[Status::VISIBLE], status[Status::PAIRS]))
}

#[cfg(test)]
#[path = "splat_tests.rs"]
mod tests;
