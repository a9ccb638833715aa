//! The Vulkan loader and instance, with optional validation layers whose messages are counted so
//! tests can assert that a run produced none.

use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use ash::vk;

use super::vk_err;
use crate::error::{Error, Result};

const VALIDATION_LAYER: &CStr = c"VK_LAYER_KHRONOS_validation";
/// Validation messages kept verbatim for error reports; the counters keep counting past this.
const KEPT_MESSAGES: usize = 32;

/// Errors and warnings reported by the validation layers since the instance was created.
#[derive(Default, Debug)]
pub struct ValidationLog {
    errors: AtomicU32,
    warnings: AtomicU32,
    messages: Mutex<Vec<String>>,
}

impl ValidationLog {
    pub fn errors(&self) -> u32 {
        self.errors.load(Ordering::Relaxed)
    }
    pub fn warnings(&self) -> u32 {
        self.warnings.load(Ordering::Relaxed)
    }
    /// The first messages (errors and warnings), for a failing test to print.
    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

unsafe extern "system" fn on_message(
    severity: vk::DebugUtilsMessageSeverityFlagsEXT,
    _types: vk::DebugUtilsMessageTypeFlagsEXT,
    data: *const vk::DebugUtilsMessengerCallbackDataEXT<'_>,
    user: *mut c_void,
) -> vk::Bool32 {
    // SAFETY: `user` is the `ValidationLog` kept alive by `Instance` until the messenger is destroyed;
    // `data` and its message are valid for the duration of the callback.
    let (log, text) = unsafe {
        let log = &*(user as *const ValidationLog);
        let text = data.as_ref().and_then(|d| d.message_as_c_str()).map(|m| m.to_string_lossy().into_owned());
        (log, text.unwrap_or_default())
    };
    let counter = if severity.contains(vk::DebugUtilsMessageSeverityFlagsEXT::ERROR) {
        log::error!("vulkan validation: {text}");
        &log.errors
    } else if severity.contains(vk::DebugUtilsMessageSeverityFlagsEXT::WARNING) {
        log::warn!("vulkan validation: {text}");
        &log.warnings
    } else {
        log::debug!("vulkan: {text}");
        return vk::FALSE;
    };
    counter.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut kept) = log.messages.lock() {
        if kept.len() < KEPT_MESSAGES {
            kept.push(text);
        }
    }
    vk::FALSE
}

/// Whether validation was asked for by the environment (`GAGA_VULKAN_VALIDATION=1`).
pub fn validation_from_env() -> bool {
    std::env::var("GAGA_VULKAN_VALIDATION").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// A loaded Vulkan library and instance. Destroyed last (the device holds an `Arc` to it).
pub struct Instance {
    // Keeps libvulkan loaded while the instance lives.
    _entry: ash::Entry,
    pub(crate) raw: ash::Instance,
    messenger: Option<(ash::ext::debug_utils::Instance, vk::DebugUtilsMessengerEXT)>,
    log: Arc<ValidationLog>,
}

impl Instance {
    /// Loads libvulkan and creates an instance (Vulkan 1.3 requested, or what the loader offers).
    /// With `validation`, the Khronos layer must be installed; its messages go to the log and are counted.
    pub fn new(validation: bool) -> Result<Instance> {
        // SAFETY: loading the system's Vulkan loader runs its initialisers; that is the documented way in.
        let entry = unsafe { ash::Entry::load() }.map_err(|e| {
            Error::Vulkan(format!("no Vulkan loader ({e}); install libvulkan1 and a driver (mesa-vulkan-drivers gives the CPU device)"))
        })?;
        // SAFETY: plain queries on a loaded entry.
        let loader_version = unsafe { entry.try_enumerate_instance_version() }
            .map_err(|e| vk_err("querying the loader version", e))?
            .unwrap_or(vk::API_VERSION_1_0);
        let api = loader_version.min(vk::API_VERSION_1_3);
        if api < vk::API_VERSION_1_1 {
            return Err(Error::Vulkan(format!(
                "the Vulkan loader offers version {}.{}, gaga needs 1.1 or newer",
                vk::api_version_major(loader_version),
                vk::api_version_minor(loader_version)
            )));
        }
        // SAFETY: as above.
        let extensions =
            unsafe { entry.enumerate_instance_extension_properties(None) }.map_err(|e| vk_err("listing instance extensions", e))?;
        let has_ext = |name: &CStr| extensions.iter().any(|p| p.extension_name_as_c_str() == Ok(name));
        let mut ext_names = Vec::new();
        let mut layer_names = Vec::new();
        let mut flags = vk::InstanceCreateFlags::empty();
        if has_ext(ash::khr::portability_enumeration::NAME) {
            ext_names.push(ash::khr::portability_enumeration::NAME.as_ptr());
            flags |= vk::InstanceCreateFlags::ENUMERATE_PORTABILITY_KHR;
        }
        if validation {
            // SAFETY: as above.
            let layers = unsafe { entry.enumerate_instance_layer_properties() }.map_err(|e| vk_err("listing instance layers", e))?;
            if !layers.iter().any(|l| l.layer_name_as_c_str() == Ok(VALIDATION_LAYER)) {
                return Err(Error::Vulkan(
                    "validation requested but VK_LAYER_KHRONOS_validation is not installed (apt-get install vulkan-validationlayers)"
                        .into(),
                ));
            }
            if !has_ext(ash::ext::debug_utils::NAME) {
                return Err(Error::Vulkan("validation requested but the loader lacks VK_EXT_debug_utils".into()));
            }
            layer_names.push(VALIDATION_LAYER.as_ptr());
            ext_names.push(ash::ext::debug_utils::NAME.as_ptr());
        }
        let log = Arc::new(ValidationLog::default());
        let mut messenger_info = vk::DebugUtilsMessengerCreateInfoEXT::default()
            .message_severity(
                vk::DebugUtilsMessageSeverityFlagsEXT::ERROR
                    | vk::DebugUtilsMessageSeverityFlagsEXT::WARNING
                    | vk::DebugUtilsMessageSeverityFlagsEXT::INFO,
            )
            .message_type(
                vk::DebugUtilsMessageTypeFlagsEXT::GENERAL
                    | vk::DebugUtilsMessageTypeFlagsEXT::VALIDATION
                    | vk::DebugUtilsMessageTypeFlagsEXT::PERFORMANCE,
            )
            .pfn_user_callback(Some(on_message))
            .user_data(Arc::as_ptr(&log) as *mut c_void);
        let app = vk::ApplicationInfo::default().application_name(c"gaga").engine_name(c"gaga").engine_version(1).api_version(api);
        let mut info = vk::InstanceCreateInfo::default()
            .application_info(&app)
            .enabled_layer_names(&layer_names)
            .enabled_extension_names(&ext_names)
            .flags(flags);
        if validation {
            // Also catches messages from instance creation and destruction themselves.
            info = info.push_next(&mut messenger_info);
        }
        // SAFETY: every pointer in `info` points at locals that outlive the call.
        let raw = unsafe { entry.create_instance(&info, None) }.map_err(|e| match e {
            vk::Result::ERROR_INCOMPATIBLE_DRIVER => Error::Vulkan(
                "no Vulkan driver found (ERROR_INCOMPATIBLE_DRIVER); install a driver (mesa-vulkan-drivers gives the CPU device)".into(),
            ),
            other => vk_err("creating the instance", other),
        })?;
        let messenger = if validation {
            let utils = ash::ext::debug_utils::Instance::new(&entry, &raw);
            // SAFETY: `messenger_info` points at the callback and at `log`, which this struct keeps alive.
            match unsafe { utils.create_debug_utils_messenger(&messenger_info, None) } {
                Ok(m) => Some((utils, m)),
                Err(e) => {
                    // SAFETY: nothing was created from this instance yet.
                    unsafe { raw.destroy_instance(None) };
                    return Err(vk_err("creating the debug messenger", e));
                }
            }
        } else {
            None
        };
        Ok(Instance { _entry: entry, raw, messenger, log })
    }

    /// The validation counters (all zero, forever, when validation is off).
    pub fn validation(&self) -> &Arc<ValidationLog> {
        &self.log
    }

    /// Whether the validation layers are on.
    pub fn validating(&self) -> bool {
        self.messenger.is_some()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: the device and everything made from it are gone (they hold an Arc to this instance).
        unsafe {
            if let Some((utils, m)) = self.messenger.take() {
                utils.destroy_debug_utils_messenger(m, None);
            }
            self.raw.destroy_instance(None);
        }
    }
}
