//! The 32-channel Gaussian splat on the GPU: five dispatches recorded once and replayed per frame,
//! giving the CPU splatter's feature image (`gaga_kernels::splat`). Shaders and their CPU twins are in
//! `gaga_kernels::twin::splat*`; the design (sort, capacities, shared memory) is in docs/vulkan.md,
//! "Splat on the GPU".
//!
//! 1. `splat.project` per Gaussian: record (pixel centre, conic, opacity, depth, tile rectangle), and +1 on
//!    each touched tile's counter.
//! 2. `splat.scan`, one workgroup: counters -> list offsets; the frame's pairs and an overflow flag.
//! 3. `splat.fill` per Gaussian: (index, depth bits) appended to each touched tile's list with atomics.
//! 4. `splat.sort` per tile: bitonic sort by (depth bits, index), the official order, with 32-bit keys.
//! 5. `splat.raster` per tile: front-to-back blending of 32 channels, one invocation per pixel.
//!
//! Counts vary per frame but the grids do not: the per-Gaussian passes loop grid-stride over all
//! Gaussians and the per-tile passes cover all tiles, so no indirect dispatch is needed. The pair lists
//! have a fixed capacity; a frame beyond it is detected on the GPU (the later passes do nothing) and
//! reported by `check_overflow` as an `Err` with the frame's pair count and the capacity.

use gaga_kernels::splat::{SplatCamera, SplatStats};
use gaga_kernels::twin::splat::{self as tw, SplatPush, Status};

use super::command::Dispatch;
use super::memory::{Buffer, MemoryLocation};
use super::pipeline::ComputePipeline;
use super::Gpu;
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::types::Avatar;

/// Tile-Gaussian pairs planned per Gaussian. The synthetic official-size head makes about 2.6 pairs per
/// Gaussian (its Gaussians span 1-4 tiles); 8 leaves room for larger splats at 8 bytes per pair.
pub const PAIRS_PER_GAUSSIAN: usize = 8;

/// Buffers of the splat, in allocation order: name, bytes, memory location.
fn layout(cfg: &ModelConfig, capacity: usize) -> Vec<(&'static str, u64, MemoryLocation)> {
    let n = cfg.gaussians() as u64;
    let s = cfg.image_size;
    let tiles = (s.div_ceil(tw::TILE) * s.div_ceil(tw::TILE)) as u64;
    let f = 4u64;
    vec![
        // Host-written: the avatar once, the camera per frame (the FLAME stage rewrites position rows).
        ("splat positions", n * 3 * f, MemoryLocation::CpuToGpu),
        ("splat attributes", n * tw::ATTR_WORDS as u64 * f, MemoryLocation::CpuToGpu),
        ("splat colors", n * tw::CHANNELS as u64 * f, MemoryLocation::CpuToGpu),
        ("splat camera", tw::CAMERA_FLOATS as u64 * f, MemoryLocation::CpuToGpu),
        // Zeroed by the host once; the sort pass re-zeroes it every frame.
        ("splat tile counts", tiles * f, MemoryLocation::CpuToGpu),
        ("splat status", tw::STATUS_WORDS as u64 * f, MemoryLocation::GpuToCpu),
        ("splat records", n * tw::REC_WORDS as u64 * f, MemoryLocation::GpuOnly),
        ("splat tile offsets", (tiles + 1) * f, MemoryLocation::GpuOnly),
        ("splat pair list", capacity as u64 * f, MemoryLocation::GpuOnly),
        ("splat pair keys", capacity as u64 * f, MemoryLocation::GpuOnly),
    ]
}

/// The GPU splat of one model configuration: pipelines and every buffer, allocated once.
pub struct GpuSplat {
    push: SplatPush,
    project: ComputePipeline,
    scan: ComputePipeline,
    fill: ComputePipeline,
    sort: ComputePipeline,
    raster: ComputePipeline,
    /// The fp16-output raster, on devices with 16-bit storage buffers.
    raster_f16: Option<ComputePipeline>,
    positions: Buffer,
    attributes: Buffer,
    colors: Buffer,
    camera: Buffer,
    counts: Buffer,
    status: Buffer,
    records: Buffer,
    offsets: Buffer,
    list: Buffer,
    keys: Buffer,
}

impl GpuSplat {
    /// Tile-Gaussian pairs the lists hold for `cfg`: [`PAIRS_PER_GAUSSIAN`] per Gaussian.
    pub fn pair_capacity(cfg: &ModelConfig) -> usize {
        cfg.gaussians() * PAIRS_PER_GAUSSIAN
    }

    /// Every buffer `new` allocates, with its bytes (the output image is the caller's).
    pub fn plan(cfg: &ModelConfig) -> Vec<(String, u64)> {
        Self::plan_with_capacity(cfg, Self::pair_capacity(cfg))
    }

    /// As [`GpuSplat::plan`] with lists of `capacity` pairs.
    pub fn plan_with_capacity(cfg: &ModelConfig, capacity: usize) -> Vec<(String, u64)> {
        layout(cfg, capacity).into_iter().map(|(name, bytes, _)| (name.to_string(), bytes)).collect()
    }

    /// Pipelines and buffers for `cfg`'s Gaussians and image size, lists of [`GpuSplat::pair_capacity`].
    pub fn new(gpu: &Gpu, cfg: &ModelConfig) -> Result<GpuSplat> {
        Self::with_capacity(gpu, cfg, Self::pair_capacity(cfg))
    }

    /// As [`GpuSplat::new`] with lists of `capacity` pairs (tests use small ones to provoke an overflow).
    pub fn with_capacity(gpu: &Gpu, cfg: &ModelConfig, capacity: usize) -> Result<GpuSplat> {
        let s = cfg.image_size;
        if cfg.gaussian_channels != tw::CHANNELS {
            return Err(Error::Config(format!(
                "the GPU splat is built for {} channels per Gaussian, the configuration has {}",
                tw::CHANNELS,
                cfg.gaussian_channels
            )));
        }
        if s == 0 || s > tw::MAX_SIDE {
            return Err(Error::Config(format!("the GPU splat renders 1 to {} pixels a side, the configuration asks {s}", tw::MAX_SIDE)));
        }
        let n = cfg.gaussians();
        if n > u32::MAX as usize / tw::REC_WORDS || capacity > u32::MAX as usize || capacity == 0 {
            return Err(Error::Config(format!("the GPU splat holds {n} Gaussians and {capacity} pairs: out of range")));
        }
        let push = SplatPush::new(n, s, s, capacity);
        let pipe = |name: &str, spv: &[u8], bindings: u32| {
            ComputePipeline::new(&gpu.ctx, &gpu.cache, name, spv, &[], bindings, std::mem::size_of::<SplatPush>() as u32)
        };
        let project = pipe("splat_project", tw::PROJECT_SPV, 6)?;
        let scan = pipe("splat_scan", tw::SCAN_SPV, 3)?;
        let fill = pipe("splat_fill", tw::FILL_SPV, 6)?;
        let sort = pipe("splat_sort", tw::SORT_SPV, 5)?;
        let raster = pipe("splat_raster", tw::RASTER_SPV, 7)?;
        let raster_f16 = if gpu.ctx.probe().storage_buffer_16bit { Some(pipe("splat_raster_f16", tw::RASTER_F16_SPV, 7)?) } else { None };
        let mut bufs = Vec::new();
        for (name, bytes, location) in layout(cfg, capacity) {
            bufs.push(gpu.memory.buffer(name, bytes, location)?);
        }
        let mut it = bufs.into_iter();
        let mut next = || it.next().ok_or_else(|| Error::Other("GPU splat: buffer layout shorter than expected".into()));
        let g = GpuSplat {
            push,
            project,
            scan,
            fill,
            sort,
            raster,
            raster_f16,
            positions: next()?,
            attributes: next()?,
            colors: next()?,
            camera: next()?,
            counts: next()?,
            status: next()?,
            records: next()?,
            offsets: next()?,
            list: next()?,
            keys: next()?,
        };
        g.counts.write(&vec![0u32; push.tiles()])?;
        g.status.write(&[0u32; tw::STATUS_WORDS])?;
        g.camera.write(&[0f32; tw::CAMERA_FLOATS])?;
        Ok(g)
    }

    /// Copies the avatar's Gaussians (positions and static attributes) to the GPU. A Gaussian with a
    /// non-finite colour is stored with a NaN opacity, which the projection culls (as the CPU splatter does).
    pub fn upload_avatar(&self, avatar: &Avatar) -> Result<()> {
        let n = self.push.n as usize;
        let bad = |what: String| Err(Error::Other(format!("avatar for the GPU splat: {what}")));
        if avatar.count != n || avatar.channels != tw::CHANNELS {
            return bad(format!(
                "{} Gaussians of {} channels, the splat was planned for {n} of {}",
                avatar.count,
                avatar.channels,
                tw::CHANNELS
            ));
        }
        for (field, len, want) in [
            ("positions", avatar.positions.len(), 3 * n),
            ("colors", avatar.colors.len(), tw::CHANNELS * n),
            ("opacities", avatar.opacities.len(), n),
            ("scales", avatar.scales.len(), 3 * n),
            ("rotations", avatar.rotations.len(), 4 * n),
        ] {
            if len != want {
                return bad(format!("`{field}` holds {len} values, expected {want}"));
            }
        }
        self.positions.write(&avatar.positions)?;
        // The shaders read f32 colours: f16 ones are widened (exactly) for the upload.
        let colors = avatar.colors.to_f32();
        self.colors.write(&colors)?;
        self.attributes.write(&tw::pack_attributes(&avatar.scales, &avatar.rotations, &avatar.opacities, &colors))
    }

    /// `[N, 3]` f32 world positions, read by the projection every frame.
    pub fn positions(&self) -> &Buffer {
        &self.positions
    }

    /// The frame's camera, written into the host-visible camera buffer (the background is kept).
    pub fn set_camera(&self, camera: &SplatCamera) -> Result<()> {
        let (w, h) = (self.push.width as usize, self.push.height as usize);
        if camera.width != w || camera.height != h {
            return Err(Error::Other(format!(
                "GPU splat camera: {}x{} pixels, the splat was planned for {w}x{h}",
                camera.width, camera.height
            )));
        }
        let words = tw::camera_words(camera, &[0.0; tw::CHANNELS]);
        self.camera.write(&words[..tw::BACKGROUND_OFFSET])
    }

    /// The background added behind the Gaussians (zeros unless set; GAGAvatar uses zeros).
    pub fn set_background(&self, background: &[f32]) -> Result<()> {
        if background.len() != tw::CHANNELS {
            return Err(Error::Other(format!("GPU splat background: {} values, expected {}", background.len(), tw::CHANNELS)));
        }
        let mut words = [0f32; tw::CAMERA_FLOATS];
        self.camera.read(&mut words)?;
        words[tw::BACKGROUND_OFFSET..].copy_from_slice(background);
        self.camera.write(&words)
    }

    /// Bytes the output image needs: `[32, S, S]` f32.
    pub fn output_bytes(&self) -> u64 {
        (tw::CHANNELS * self.push.width as usize * self.push.height as usize * 4) as u64
    }

    /// Bytes the fp16 output image of [`GpuSplat::dispatches_f16`] needs: `[32, S, S]` f16.
    pub fn output_bytes_f16(&self) -> u64 {
        self.output_bytes() / 2
    }

    /// Tile-Gaussian pairs the lists hold.
    pub fn capacity(&self) -> usize {
        self.push.capacity as usize
    }

    /// The frame's five dispatches, writing the `[32, S, S]` f32 feature image into `output`. Panics if
    /// `output` is smaller than [`GpuSplat::output_bytes`] (a caller's bug, like a wrong binding count).
    pub fn dispatches<'a>(&'a self, output: &'a Buffer) -> Vec<Dispatch<'a>> {
        self.frame(output, &self.raster, self.output_bytes())
    }

    /// As [`GpuSplat::dispatches`] with the image stored as fp16 (fp32 accumulation, one rounding at the
    /// store) into `output` of [`GpuSplat::output_bytes_f16`]; `Err` on a device without 16-bit storage.
    pub fn dispatches_f16<'a>(&'a self, output: &'a Buffer) -> Result<Vec<Dispatch<'a>>> {
        match &self.raster_f16 {
            Some(raster) => Ok(self.frame(output, raster, self.output_bytes_f16())),
            None => Err(Error::Vulkan("GPU splat: this device lacks 16-bit storage buffers, needed for the fp16 image".into())),
        }
    }

    fn frame<'a>(&'a self, output: &'a Buffer, raster: &'a ComputePipeline, bytes: u64) -> Vec<Dispatch<'a>> {
        assert!(output.size() >= bytes, "splat output `{}`: {} bytes, needs {bytes}", output.name(), output.size());
        let push = bytemuck::bytes_of(&self.push).to_vec();
        let d = |label: &str, pipeline: &'a ComputePipeline, buffers: Vec<&'a Buffer>, groups| Dispatch {
            label: label.to_string(),
            pipeline,
            buffers,
            push: push.clone(),
            groups,
        };
        let (per_gaussian, per_tile) = (self.push.gaussian_groups(), self.push.tile_groups());
        vec![
            d(
                "splat.project",
                &self.project,
                vec![&self.positions, &self.attributes, &self.camera, &self.records, &self.counts, &self.status],
                per_gaussian,
            ),
            d("splat.scan", &self.scan, vec![&self.counts, &self.offsets, &self.status], (1, 1, 1)),
            d(
                "splat.fill",
                &self.fill,
                vec![&self.records, &self.offsets, &self.counts, &self.list, &self.keys, &self.status],
                per_gaussian,
            ),
            d("splat.sort", &self.sort, vec![&self.offsets, &self.list, &self.keys, &self.counts, &self.status], per_tile),
            d(
                "splat.raster",
                raster,
                vec![&self.offsets, &self.list, &self.records, &self.colors, &self.camera, &self.status, output],
                per_tile,
            ),
        ]
    }

    fn status_words(&self) -> Result<[u32; tw::STATUS_WORDS]> {
        let mut s = [0u32; tw::STATUS_WORDS];
        self.status.read(&mut s)?;
        Ok(s)
    }

    /// After a replay: `Err` naming the frame's pair count and the capacity when the lists overflowed
    /// (the image was then not rendered and must not be used).
    pub fn check_overflow(&self) -> Result<()> {
        let s = self.status_words()?;
        if s[Status::OVERFLOW] != 0 {
            let pairs = if s[Status::PAIRS] > self.push.capacity { s[Status::PAIRS].to_string() } else { "over 2^32".to_string() };
            return Err(Error::Vulkan(format!(
                "GPU splat: the frame has {pairs} tile-Gaussian pairs but the lists hold {} (capacity planned as {PAIRS_PER_GAUSSIAN} per Gaussian); the image was not rendered",
                self.push.capacity
            )));
        }
        Ok(())
    }

    /// Visible Gaussians and tile-Gaussian pairs of the last replay.
    pub fn last_stats(&self) -> Result<SplatStats> {
        let s = self.status_words()?;
        Ok(SplatStats { visible: s[Status::VISIBLE] as usize, pairs: s[Status::PAIRS] as usize })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_lists_every_buffer_with_its_bytes_at_official_size() {
        let cfg = ModelConfig::official();
        let plan = GpuSplat::plan(&cfg);
        let n = 180_255u64;
        let get = |name: &str| plan.iter().find(|(k, _)| k == name).map(|(_, b)| *b);
        assert_eq!(get("splat colors"), Some(n * 32 * 4));
        assert_eq!(get("splat records"), Some(n * 48));
        assert_eq!(get("splat tile offsets"), Some(1025 * 4));
        assert_eq!(get("splat pair list"), Some(n * PAIRS_PER_GAUSSIAN as u64 * 4));
        assert_eq!(plan.len(), layout(&cfg, 1).len());
        let total: u64 = plan.iter().map(|(_, b)| b).sum();
        assert!(total < 64 << 20, "the splat's buffers take {total} bytes");
    }
}
