//! What a physical device offers, read once, as plain data with a `Display` for `gaga inspect --device`.

use std::ffi::CStr;
use std::fmt;

use ash::vk;

/// Oldest device API version gaga runs on (the Raspberry Pi 5's V3D driver is 1.2).
pub const MIN_API: u32 = vk::API_VERSION_1_2;

/// Kind of device, in the order `choose` prefers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeviceKind {
    Discrete,
    Integrated,
    Virtual,
    Cpu,
    Other,
}

impl DeviceKind {
    fn from_vk(t: vk::PhysicalDeviceType) -> Self {
        match t {
            vk::PhysicalDeviceType::DISCRETE_GPU => DeviceKind::Discrete,
            vk::PhysicalDeviceType::INTEGRATED_GPU => DeviceKind::Integrated,
            vk::PhysicalDeviceType::VIRTUAL_GPU => DeviceKind::Virtual,
            vk::PhysicalDeviceType::CPU => DeviceKind::Cpu,
            _ => DeviceKind::Other,
        }
    }
}

/// Capabilities of one physical device that gaga's kernels care about.
#[derive(Clone, Debug)]
pub struct DeviceProbe {
    /// Position in the instance's device list (what `--device N` selects).
    pub index: usize,
    pub name: String,
    pub kind: DeviceKind,
    pub vendor_id: u32,
    pub device_id: u32,
    pub api_version: u32,
    /// Driver version as the driver encodes it (vendor-specific).
    pub driver_version: u32,
    pub driver: String,
    pub pipeline_cache_uuid: [u8; 16],
    pub shader_float16: bool,
    pub shader_int8: bool,
    pub shader_int64: bool,
    pub storage_buffer_16bit: bool,
    pub storage_buffer_8bit: bool,
    pub storage_input_output_16: bool,
    /// `shaderIntegerDotProduct` (Vulkan 1.3 core), and whether 8-bit signed dot products are accelerated.
    pub integer_dot_product: bool,
    pub int8_dot_accelerated: bool,
    pub subgroup_size: u32,
    /// Min and max subgroup size (Vulkan 1.3; both `subgroup_size` before).
    pub subgroup_size_range: (u32, u32),
    pub subgroup_ops: vk::SubgroupFeatureFlags,
    pub subgroup_in_compute: bool,
    pub max_shared_memory: u32,
    pub max_storage_buffer_range: u32,
    pub min_storage_buffer_offset_alignment: u64,
    pub max_workgroup_invocations: u32,
    pub max_workgroup_size: [u32; 3],
    pub max_workgroup_count: [u32; 3],
    pub max_push_constants: u32,
    /// Nanoseconds per timestamp tick; `None` when compute queues cannot write timestamps.
    pub timestamp_period_ns: Option<f32>,
    /// `VK_EXT_external_memory_host` and its pointer alignment.
    pub external_memory_host: Option<u64>,
    pub memory_budget_ext: bool,
    /// Memory heaps: size in bytes and whether device-local.
    pub heaps: Vec<(u64, bool)>,
}

fn c_string(bytes: Result<&CStr, std::ffi::FromBytesUntilNulError>) -> String {
    bytes.map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|_| "<unterminated>".into())
}

/// Reads everything in `DeviceProbe` from `pdev`. Devices older than `MIN_API` get only the basic
/// properties (their extended fields read as absent) so they can still be listed with a reason.
pub fn probe(instance: &ash::Instance, pdev: vk::PhysicalDevice, index: usize) -> DeviceProbe {
    // SAFETY: `pdev` was enumerated from `instance`; the queries only write into the structs passed.
    let (props, features, extensions, memory, families) = unsafe {
        (
            instance.get_physical_device_properties(pdev),
            instance.get_physical_device_features(pdev),
            instance.enumerate_device_extension_properties(pdev).unwrap_or_default(),
            instance.get_physical_device_memory_properties(pdev),
            instance.get_physical_device_queue_family_properties(pdev),
        )
    };
    let has_ext = |name: &CStr| extensions.iter().any(|e| e.extension_name_as_c_str() == Ok(name));
    let limits = props.limits;
    let mut p = DeviceProbe {
        index,
        name: c_string(props.device_name_as_c_str()),
        kind: DeviceKind::from_vk(props.device_type),
        vendor_id: props.vendor_id,
        device_id: props.device_id,
        api_version: props.api_version,
        driver_version: props.driver_version,
        pipeline_cache_uuid: props.pipeline_cache_uuid,
        shader_int64: features.shader_int64 == vk::TRUE,
        max_shared_memory: limits.max_compute_shared_memory_size,
        max_storage_buffer_range: limits.max_storage_buffer_range,
        min_storage_buffer_offset_alignment: limits.min_storage_buffer_offset_alignment,
        max_workgroup_invocations: limits.max_compute_work_group_invocations,
        max_workgroup_size: limits.max_compute_work_group_size,
        max_workgroup_count: limits.max_compute_work_group_count,
        max_push_constants: limits.max_push_constants_size,
        memory_budget_ext: has_ext(ash::ext::memory_budget::NAME),
        heaps: memory.memory_heaps_as_slice().iter().map(|h| (h.size, h.flags.contains(vk::MemoryHeapFlags::DEVICE_LOCAL))).collect(),
        ..DeviceProbe::placeholder(index, DeviceKind::from_vk(props.device_type), props.api_version)
    };
    let compute_ts = families.iter().any(|f| f.queue_flags.contains(vk::QueueFlags::COMPUTE) && f.timestamp_valid_bits > 0);
    if compute_ts && limits.timestamp_period > 0.0 {
        p.timestamp_period_ns = Some(limits.timestamp_period);
    }
    if props.api_version < MIN_API {
        return p;
    }
    let v13 = props.api_version >= vk::API_VERSION_1_3;
    let host_ext = has_ext(ash::ext::external_memory_host::NAME);
    let mut f11 = vk::PhysicalDeviceVulkan11Features::default();
    let mut f12 = vk::PhysicalDeviceVulkan12Features::default();
    let mut f13 = vk::PhysicalDeviceVulkan13Features::default();
    let mut features2 = vk::PhysicalDeviceFeatures2::default().push_next(&mut f11).push_next(&mut f12);
    if v13 {
        features2 = features2.push_next(&mut f13);
    }
    let mut p11 = vk::PhysicalDeviceVulkan11Properties::default();
    let mut p12 = vk::PhysicalDeviceVulkan12Properties::default();
    let mut p13 = vk::PhysicalDeviceVulkan13Properties::default();
    let mut host = vk::PhysicalDeviceExternalMemoryHostPropertiesEXT::default();
    let mut props2 = vk::PhysicalDeviceProperties2::default().push_next(&mut p11).push_next(&mut p12);
    if v13 {
        props2 = props2.push_next(&mut p13);
    }
    if host_ext {
        props2 = props2.push_next(&mut host);
    }
    // SAFETY: the chains only hold structs valid for this device's version and extensions.
    unsafe {
        instance.get_physical_device_features2(pdev, &mut features2);
        instance.get_physical_device_properties2(pdev, &mut props2);
    }
    p.shader_float16 = f12.shader_float16 == vk::TRUE;
    p.shader_int8 = f12.shader_int8 == vk::TRUE;
    p.storage_buffer_16bit = f11.storage_buffer16_bit_access == vk::TRUE;
    p.storage_buffer_8bit = f12.storage_buffer8_bit_access == vk::TRUE;
    p.storage_input_output_16 = f11.storage_input_output16 == vk::TRUE;
    p.driver = format!("{} {}", c_string(p12.driver_name_as_c_str()), c_string(p12.driver_info_as_c_str()));
    p.subgroup_size = p11.subgroup_size;
    p.subgroup_size_range = (p11.subgroup_size, p11.subgroup_size);
    p.subgroup_ops = p11.subgroup_supported_operations;
    p.subgroup_in_compute = p11.subgroup_supported_stages.contains(vk::ShaderStageFlags::COMPUTE);
    if v13 {
        p.integer_dot_product = f13.shader_integer_dot_product == vk::TRUE;
        p.int8_dot_accelerated = p13.integer_dot_product8_bit_signed_accelerated == vk::TRUE
            || p13.integer_dot_product4x8_bit_packed_signed_accelerated == vk::TRUE;
        if f13.subgroup_size_control == vk::TRUE {
            p.subgroup_size_range = (p13.min_subgroup_size, p13.max_subgroup_size);
        }
    }
    if host_ext {
        p.external_memory_host = Some(host.min_imported_host_pointer_alignment);
    }
    p
}

/// `major.minor.patch` of a Vulkan version number.
pub fn version_string(v: u32) -> String {
    format!("{}.{}.{}", vk::api_version_major(v), vk::api_version_minor(v), vk::api_version_patch(v))
}

fn subgroup_op_names(ops: vk::SubgroupFeatureFlags) -> String {
    let names = [
        (vk::SubgroupFeatureFlags::BASIC, "basic"),
        (vk::SubgroupFeatureFlags::VOTE, "vote"),
        (vk::SubgroupFeatureFlags::ARITHMETIC, "arithmetic"),
        (vk::SubgroupFeatureFlags::BALLOT, "ballot"),
        (vk::SubgroupFeatureFlags::SHUFFLE, "shuffle"),
        (vk::SubgroupFeatureFlags::SHUFFLE_RELATIVE, "shuffle-relative"),
        (vk::SubgroupFeatureFlags::CLUSTERED, "clustered"),
        (vk::SubgroupFeatureFlags::QUAD, "quad"),
    ];
    let list: Vec<&str> = names.iter().filter(|(f, _)| ops.contains(*f)).map(|(_, n)| *n).collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(" ")
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

impl DeviceProbe {
    /// A device with nothing optional, for tests of device choice that need no Vulkan.
    pub fn placeholder(index: usize, kind: DeviceKind, api_version: u32) -> DeviceProbe {
        DeviceProbe {
            index,
            name: "placeholder".into(),
            kind,
            vendor_id: 0,
            device_id: 0,
            api_version,
            driver_version: 0,
            driver: String::new(),
            pipeline_cache_uuid: [0; 16],
            shader_float16: false,
            shader_int8: false,
            shader_int64: false,
            storage_buffer_16bit: false,
            storage_buffer_8bit: false,
            storage_input_output_16: false,
            integer_dot_product: false,
            int8_dot_accelerated: false,
            subgroup_size: 1,
            subgroup_size_range: (1, 1),
            subgroup_ops: vk::SubgroupFeatureFlags::empty(),
            subgroup_in_compute: false,
            max_shared_memory: 16 << 10,
            max_storage_buffer_range: 128 << 20,
            min_storage_buffer_offset_alignment: 64,
            max_workgroup_invocations: 256,
            max_workgroup_size: [256, 256, 64],
            max_workgroup_count: [65535; 3],
            max_push_constants: 128,
            timestamp_period_ns: None,
            external_memory_host: None,
            memory_budget_ext: false,
            heaps: Vec::new(),
        }
    }

    /// One line: index, name, kind, API version.
    pub fn summary(&self) -> String {
        format!("[{}] {} ({:?}, Vulkan {}, {})", self.index, self.name, self.kind, version_string(self.api_version), self.driver)
    }
}

impl fmt::Display for DeviceProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "device {}", self.summary())?;
        writeln!(
            f,
            "  vendor / device id      {:#06x} / {:#06x}, driver version {:#x}",
            self.vendor_id, self.device_id, self.driver_version
        )?;
        writeln!(f, "  fp16 arithmetic         {}", yes(self.shader_float16))?;
        writeln!(f, "  int8 arithmetic         {}", yes(self.shader_int8))?;
        writeln!(f, "  int64                   {}", yes(self.shader_int64))?;
        writeln!(f, "  16-bit / 8-bit storage  {} / {}", yes(self.storage_buffer_16bit), yes(self.storage_buffer_8bit))?;
        writeln!(f, "  16-bit shader in/out    {}", yes(self.storage_input_output_16))?;
        writeln!(f, "  integer dot product     {} (int8 accelerated: {})", yes(self.integer_dot_product), yes(self.int8_dot_accelerated))?;
        writeln!(
            f,
            "  subgroups               size {} (range {}-{}), in compute: {}, ops: {}",
            self.subgroup_size,
            self.subgroup_size_range.0,
            self.subgroup_size_range.1,
            yes(self.subgroup_in_compute),
            subgroup_op_names(self.subgroup_ops)
        )?;
        writeln!(f, "  shared memory           {} KiB", self.max_shared_memory / 1024)?;
        writeln!(f, "  max storage buffer      {}", mib(self.max_storage_buffer_range as u64))?;
        let (s, c) = (self.max_workgroup_size, self.max_workgroup_count);
        writeln!(
            f,
            "  workgroup               {} invocations, size {}x{}x{}, count {}x{}x{}",
            self.max_workgroup_invocations, s[0], s[1], s[2], c[0], c[1], c[2]
        )?;
        writeln!(f, "  push constants          {} bytes", self.max_push_constants)?;
        match self.timestamp_period_ns {
            Some(ns) => writeln!(f, "  timestamps              {ns} ns per tick")?,
            None => writeln!(f, "  timestamps              no")?,
        }
        match self.external_memory_host {
            Some(a) => writeln!(f, "  external host memory    yes (alignment {a})")?,
            None => writeln!(f, "  external host memory    no")?,
        }
        writeln!(f, "  memory budget extension {}", yes(self.memory_budget_ext))?;
        let heaps: Vec<String> =
            self.heaps.iter().map(|(size, local)| format!("{}{}", mib(*size), if *local { " device-local" } else { "" })).collect();
        write!(f, "  heaps                   {}", heaps.join(", "))
    }
}
