//! The pipeline cache persisted on disk, one file per device and driver, so shader compilation
//! (10-350 ms per pipeline on real drivers) happens once per install instead of once per start.
//! A file is used only when its header matches the device (vendor, device id, pipelineCacheUUID).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ash::vk;

use super::device::Context;
use super::probe::DeviceProbe;
use super::vk_err;
use crate::error::{Error, Result};

/// Length of `VkPipelineCacheHeaderVersionOne`.
const HEADER_LEN: usize = 32;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `$XDG_CACHE_HOME/gaga` or `$HOME/.cache/gaga`; `None` when neither is set.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("gaga"))
}

/// The cache file name for a device: vendor, device, driver version and cache UUID.
pub fn cache_file_name(p: &DeviceProbe) -> String {
    format!("pipeline-{:04x}-{:04x}-{:x}-{}.bin", p.vendor_id, p.device_id, p.driver_version, hex(&p.pipeline_cache_uuid))
}

/// Why `data` cannot seed a cache for this device, or `None` when its header matches.
pub fn header_mismatch(data: &[u8], p: &DeviceProbe) -> Option<String> {
    if data.len() < HEADER_LEN {
        return Some(format!("{} bytes, shorter than the {HEADER_LEN}-byte header", data.len()));
    }
    let word = |i: usize| u32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
    let (len, version, vendor, device) = (word(0), word(4), word(8), word(12));
    if (len as usize) < HEADER_LEN || version != vk::PipelineCacheHeaderVersion::ONE.as_raw() as u32 {
        return Some(format!("header length {len} version {version}, expected >= {HEADER_LEN} and version 1"));
    }
    if vendor != p.vendor_id || device != p.device_id {
        return Some(format!("made for vendor {vendor:#x} device {device:#x}, this is {:#x} {:#x}", p.vendor_id, p.device_id));
    }
    if data[16..32] != p.pipeline_cache_uuid {
        return Some(format!("cache UUID {}, device expects {}", hex(&data[16..32]), hex(&p.pipeline_cache_uuid)));
    }
    None
}

/// A `VkPipelineCache` loaded from, and saved back to, a file (or kept in memory only).
pub struct PipelineCache {
    pub(crate) raw: vk::PipelineCache,
    path: Option<PathBuf>,
    /// Whether a valid file seeded the cache.
    loaded: bool,
    ctx: Arc<Context>,
}

impl PipelineCache {
    /// A cache backed by `dir/<cache_file_name>` (`dir = None`: in memory only). A missing, short or
    /// foreign file is logged and ignored; the cache starts empty.
    pub fn open(ctx: &Arc<Context>, dir: Option<&Path>) -> Result<PipelineCache> {
        let path = dir.map(|d| d.join(cache_file_name(ctx.probe())));
        let mut seed = Vec::new();
        if let Some(path) = &path {
            match std::fs::read(path) {
                Ok(data) => match header_mismatch(&data, ctx.probe()) {
                    None => seed = data,
                    Some(why) => log::warn!("{}: ignoring pipeline cache: {why}", path.display()),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("{}: ignoring pipeline cache: {e}", path.display()),
            }
        }
        let info = vk::PipelineCacheCreateInfo::default().initial_data(&seed);
        // SAFETY: `seed` is empty or starts with a header that matches this device.
        let raw = unsafe { ctx.device.create_pipeline_cache(&info, None) }.map_err(|e| vk_err("creating the pipeline cache", e))?;
        Ok(PipelineCache { raw, path, loaded: !seed.is_empty(), ctx: ctx.clone() })
    }

    /// Whether a file from an earlier run seeded this cache.
    pub fn loaded_from_disk(&self) -> bool {
        self.loaded
    }

    /// The backing file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Writes the cache to its file (through a temporary file and a rename, so readers never see half).
    pub fn save(&self) -> Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        // SAFETY: the cache belongs to this device.
        let data = unsafe { self.ctx.device.get_pipeline_cache_data(self.raw) }.map_err(|e| vk_err("reading the pipeline cache", e))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::Io { path: dir.to_path_buf(), source: e })?;
        }
        crate::write_aside::write_bytes_aside(path, &data)
    }
}

impl Drop for PipelineCache {
    fn drop(&mut self) {
        // SAFETY: pipelines created through this cache do not need it to stay alive.
        unsafe { self.ctx.device.destroy_pipeline_cache(self.raw, None) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::vulkan::probe::DeviceKind;

    fn device() -> DeviceProbe {
        let mut p = DeviceProbe::placeholder(0, DeviceKind::Cpu, vk::API_VERSION_1_3);
        (p.vendor_id, p.device_id, p.driver_version, p.pipeline_cache_uuid) = (0x10005, 7, 1, [0xab; 16]);
        p
    }

    fn header(len: u32, version: u32, vendor: u32, dev: u32, uuid: [u8; 16]) -> Vec<u8> {
        let mut h: Vec<u8> = [len, version, vendor, dev].iter().flat_map(|w| w.to_le_bytes()).collect();
        h.extend_from_slice(&uuid);
        h.extend_from_slice(b"driver payload");
        h
    }

    #[test]
    fn a_matching_header_is_accepted() {
        assert_eq!(header_mismatch(&header(32, 1, 0x10005, 7, [0xab; 16]), &device()), None);
    }

    #[test]
    fn each_header_field_is_checked_with_expected_and_found() {
        let d = device();
        let short = header_mismatch(&[0; 10], &d).unwrap_or_default();
        assert!(short.contains("10 bytes"), "{short}");
        let version = header_mismatch(&header(32, 2, 0x10005, 7, [0xab; 16]), &d).unwrap_or_default();
        assert!(version.contains("version 2"), "{version}");
        let length = header_mismatch(&header(16, 1, 0x10005, 7, [0xab; 16]), &d).unwrap_or_default();
        assert!(length.contains("length 16"), "{length}");
        let vendor = header_mismatch(&header(32, 1, 0x10de, 7, [0xab; 16]), &d).unwrap_or_default();
        assert!(vendor.contains("0x10de") && vendor.contains("0x10005"), "{vendor}");
        let uuid = header_mismatch(&header(32, 1, 0x10005, 7, [0xcd; 16]), &d).unwrap_or_default();
        assert!(uuid.contains("cdcd") && uuid.contains("abab"), "{uuid}");
    }

    #[test]
    fn the_file_name_carries_vendor_device_driver_and_uuid() {
        assert_eq!(cache_file_name(&device()), format!("pipeline-10005-0007-1-{}.bin", "ab".repeat(16)));
    }
}
