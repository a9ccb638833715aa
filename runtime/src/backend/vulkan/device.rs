//! Device choice (discrete, then integrated, then virtual, then CPU; or an explicit index) and the
//! logical device with one compute queue. `Context` is shared by `Arc` with everything made from it,
//! so the device outlives its buffers and pipelines.

use std::sync::Arc;

use ash::vk;

use super::instance::{validation_from_env, Instance, ValidationLog};
use super::probe::{probe, version_string, DeviceProbe, MIN_API};
use super::vk_err;
use crate::error::{Error, Result};

/// How to open a device.
#[derive(Clone, Debug, Default)]
pub struct ContextOptions {
    /// Use the device at this index of the instance's list (`--device N`) instead of the best one.
    pub device: Option<usize>,
    /// Turn on the validation layers (also on when `GAGA_VULKAN_VALIDATION=1`).
    pub validation: bool,
    /// Capabilities the caller cannot run without; opening fails naming the first one missing.
    pub required: Vec<Requirement>,
}

/// A capability a caller may require of the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requirement {
    Float16,
    Int8,
    StorageBuffer16Bit,
    StorageBuffer8Bit,
    IntegerDotProduct,
    Timestamps,
}

impl Requirement {
    fn met_by(self, p: &DeviceProbe) -> bool {
        match self {
            Requirement::Float16 => p.shader_float16,
            Requirement::Int8 => p.shader_int8,
            Requirement::StorageBuffer16Bit => p.storage_buffer_16bit,
            Requirement::StorageBuffer8Bit => p.storage_buffer_8bit,
            Requirement::IntegerDotProduct => p.integer_dot_product,
            Requirement::Timestamps => p.timestamp_period_ns.is_some(),
        }
    }
}

/// Why a listed device cannot be used, or `None` when it can.
fn unusable(p: &DeviceProbe, compute_family: Option<u32>) -> Option<String> {
    if p.api_version < MIN_API {
        return Some(format!("driver too old: Vulkan {}, gaga needs {}", version_string(p.api_version), version_string(MIN_API)));
    }
    compute_family.is_none().then(|| "no compute queue".to_string())
}

fn compute_family(instance: &ash::Instance, pdev: vk::PhysicalDevice) -> Option<u32> {
    // SAFETY: `pdev` comes from this instance.
    let families = unsafe { instance.get_physical_device_queue_family_properties(pdev) };
    let is_compute = |f: &vk::QueueFamilyProperties| f.queue_flags.contains(vk::QueueFlags::COMPUTE);
    // Prefer a compute-only family (an async-compute queue on desktop GPUs), then any with compute.
    let dedicated = families.iter().position(|f| is_compute(f) && !f.queue_flags.contains(vk::QueueFlags::GRAPHICS));
    dedicated.or_else(|| families.iter().position(is_compute)).map(|i| i as u32)
}

/// Every physical device with its probe, and the reason it is unusable if it is.
pub fn list_devices(instance: &Instance) -> Result<Vec<(DeviceProbe, Option<String>)>> {
    // SAFETY: plain enumeration on a live instance.
    let pdevs = unsafe { instance.raw.enumerate_physical_devices() }.map_err(|e| vk_err("listing devices", e))?;
    Ok(pdevs
        .iter()
        .enumerate()
        .map(|(i, &pd)| {
            let p = probe(&instance.raw, pd, i);
            let why = unusable(&p, compute_family(&instance.raw, pd));
            (p, why)
        })
        .collect())
}

/// An open device with one compute queue.
pub struct Context {
    pub(crate) device: ash::Device,
    pub(crate) physical: vk::PhysicalDevice,
    pub(crate) queue: vk::Queue,
    pub(crate) queue_family: u32,
    /// `VK_EXT_external_memory_host` functions, when the device has the extension (enabled at open).
    pub(crate) host_import: Option<ash::ext::external_memory_host::Device>,
    probe: DeviceProbe,
    // Last field: dropped after the device is destroyed in `Drop`.
    pub(crate) instance: Instance,
}

impl Context {
    /// Creates an instance, chooses a device and opens it. Fails with a sentence (never panics) when
    /// there is no loader or driver, the chosen device is too old, or a required capability is missing.
    pub fn open(options: &ContextOptions) -> Result<Arc<Context>> {
        let instance = Instance::new(options.validation || validation_from_env())?;
        // SAFETY: plain enumeration on a live instance.
        let pdevs = unsafe { instance.raw.enumerate_physical_devices() }.map_err(|e| vk_err("listing devices", e))?;
        if pdevs.is_empty() {
            return Err(Error::Vulkan("the Vulkan loader found no device".into()));
        }
        let listed = list_devices(&instance)?;
        let index = match options.device {
            Some(i) if i >= listed.len() => {
                let names: Vec<String> = listed.iter().map(|(p, _)| p.summary()).collect();
                return Err(Error::Vulkan(format!("device {i} requested, {} found: {}", listed.len(), names.join("; "))));
            }
            Some(i) => i,
            None => choose(&listed)?,
        };
        let (probe, why) = &listed[index];
        if let Some(why) = why {
            return Err(Error::Vulkan(format!("device {}: {why}", probe.summary())));
        }
        check_requirements(probe, &options.required)?;
        let physical = pdevs[index];
        let queue_family = compute_family(&instance.raw, physical)
            .ok_or_else(|| Error::Vulkan(format!("device {}: no compute queue", probe.summary())))?;
        let device = create_device(&instance.raw, physical, queue_family, probe)?;
        // SAFETY: the family was requested with one queue at creation.
        let queue = unsafe { device.get_device_queue(queue_family, 0) };
        let host_import = probe.external_memory_host.map(|_| ash::ext::external_memory_host::Device::new(&instance.raw, &device));
        log::info!("vulkan: using {}", probe.summary());
        Ok(Arc::new(Context { device, physical, queue, queue_family, host_import, probe: probe.clone(), instance }))
    }

    /// What the open device offers.
    pub fn probe(&self) -> &DeviceProbe {
        &self.probe
    }

    /// Validation-layer counters (zeros when validation is off).
    pub fn validation(&self) -> &Arc<ValidationLog> {
        self.instance.validation()
    }

    /// Whether the validation layers are on.
    pub fn validating(&self) -> bool {
        self.instance.validating()
    }

    /// Waits until the queue has finished all submitted work.
    pub fn wait_idle(&self) -> Result<()> {
        // SAFETY: the queue belongs to this device.
        unsafe { self.device.queue_wait_idle(self.queue) }.map_err(|e| vk_err("waiting for the queue", e))
    }
}

/// `Err` naming the device and the first capability in `required` it lacks.
pub fn check_requirements(p: &DeviceProbe, required: &[Requirement]) -> Result<()> {
    match required.iter().find(|r| !r.met_by(p)) {
        Some(missing) => Err(Error::Vulkan(format!("device {} lacks {missing:?}, which this run requires", p.summary()))),
        None => Ok(()),
    }
}

/// Index of the best usable device: lowest `DeviceKind`, then the first listed.
pub fn choose(listed: &[(DeviceProbe, Option<String>)]) -> Result<usize> {
    listed.iter().filter(|(_, why)| why.is_none()).min_by_key(|(p, _)| (p.kind, p.index)).map(|(p, _)| p.index).ok_or_else(|| {
        let reasons: Vec<String> =
            listed.iter().map(|(p, why)| format!("{}: {}", p.summary(), why.as_deref().unwrap_or("usable"))).collect();
        Error::Vulkan(format!("no usable device among {}: {}", listed.len(), reasons.join("; ")))
    })
}

fn create_device(instance: &ash::Instance, pdev: vk::PhysicalDevice, family: u32, p: &DeviceProbe) -> Result<ash::Device> {
    // Enable every optional capability the device has, so later shaders need no new device.
    let mut f11 = vk::PhysicalDeviceVulkan11Features::default().storage_buffer16_bit_access(p.storage_buffer_16bit);
    let mut f12 = vk::PhysicalDeviceVulkan12Features::default()
        .shader_float16(p.shader_float16)
        .shader_int8(p.shader_int8)
        .storage_buffer8_bit_access(p.storage_buffer_8bit);
    let mut f13 = vk::PhysicalDeviceVulkan13Features::default().shader_integer_dot_product(p.integer_dot_product);
    let base = vk::PhysicalDeviceFeatures::default().shader_int64(p.shader_int64);
    let priorities = [1.0f32];
    let queues = [vk::DeviceQueueCreateInfo::default().queue_family_index(family).queue_priorities(&priorities)];
    // Host-pointer import lets weights go from the mapped model file to the device without a copy.
    let extensions = [ash::ext::external_memory_host::NAME.as_ptr()];
    let enabled = if p.external_memory_host.is_some() { &extensions[..] } else { &[] };
    let mut info = vk::DeviceCreateInfo::default()
        .queue_create_infos(&queues)
        .enabled_extension_names(enabled)
        .enabled_features(&base)
        .push_next(&mut f11)
        .push_next(&mut f12);
    if p.api_version >= vk::API_VERSION_1_3 {
        info = info.push_next(&mut f13);
    }
    // SAFETY: every enabled feature was reported by the device; pointers reference locals.
    unsafe { instance.create_device(pdev, &info, None) }.map_err(|e| vk_err(&format!("opening device {}", p.summary()), e))
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: everything made from the device holds an Arc<Context>, so it is gone by now.
        unsafe {
            let _ = self.device.device_wait_idle();
            self.device.destroy_device(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::vulkan::probe::{DeviceKind, DeviceProbe};

    fn listed(kinds: &[(DeviceKind, u32)]) -> Vec<(DeviceProbe, Option<String>)> {
        kinds
            .iter()
            .enumerate()
            .map(|(i, &(kind, api))| {
                let p = DeviceProbe::placeholder(i, kind, api);
                let why = unusable(&p, Some(0));
                (p, why)
            })
            .collect()
    }

    #[test]
    fn discrete_beats_integrated_beats_cpu() {
        let l = listed(&[
            (DeviceKind::Cpu, vk::API_VERSION_1_3),
            (DeviceKind::Integrated, vk::API_VERSION_1_2),
            (DeviceKind::Discrete, vk::API_VERSION_1_3),
        ]);
        assert_eq!(choose(&l).ok(), Some(2));
        assert_eq!(choose(&l[..2]).ok(), Some(1));
    }

    #[test]
    fn a_driver_older_than_vulkan_1_2_is_skipped_with_its_version() {
        let l = listed(&[(DeviceKind::Discrete, vk::API_VERSION_1_1), (DeviceKind::Cpu, vk::API_VERSION_1_3)]);
        assert_eq!(choose(&l).ok(), Some(1));
        assert!(l[0].1.as_deref().is_some_and(|why| why.contains("1.1.0") && why.contains("1.2.0")), "{:?}", l[0].1);
        let err = choose(&l[..1]).expect_err("nothing usable").to_string();
        assert!(err.contains("driver too old"), "{err}");
    }

    #[test]
    fn a_missing_requirement_names_the_device_and_the_capability() {
        let mut p = DeviceProbe::placeholder(0, DeviceKind::Integrated, vk::API_VERSION_1_2);
        p.storage_buffer_16bit = true;
        assert!(check_requirements(&p, &[Requirement::StorageBuffer16Bit]).is_ok());
        let err = check_requirements(&p, &[Requirement::StorageBuffer16Bit, Requirement::Int8]).expect_err("no int8").to_string();
        assert!(err.contains("placeholder") && err.contains("Int8"), "{err}");
    }

    #[test]
    fn a_device_without_compute_is_unusable() {
        let p = DeviceProbe::placeholder(0, DeviceKind::Discrete, vk::API_VERSION_1_3);
        assert_eq!(unusable(&p, None).as_deref(), Some("no compute queue"));
    }
}
