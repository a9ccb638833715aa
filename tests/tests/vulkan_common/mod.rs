//! Shared by the `vulkan_*` suites (`mod vulkan_common;`): opens the device with validation on, or says
//! why the suite is skipped when this machine has no Vulkan device.

#![allow(dead_code)]

use gaga_runtime::backend::vulkan::{self, ContextOptions, Gpu};
use gaga_runtime::backend::Budget;

/// Budget for test sessions: the suites' largest buffers are about 17 MiB.
pub const TEST_BUDGET: Budget = Budget { bytes: 96 << 20 };

/// Whether this machine has a usable Vulkan device; prints the skip reason when it does not.
/// With `GAGA_REQUIRE_VULKAN=1` (CI, where lavapipe is installed) a missing device fails instead.
pub fn device_available(test: &str) -> bool {
    let available = check_device(test);
    if !available && std::env::var("GAGA_REQUIRE_VULKAN").is_ok_and(|v| v == "1") {
        panic!("{test}: GAGA_REQUIRE_VULKAN=1 but no Vulkan device is usable");
    }
    available
}

fn check_device(test: &str) -> bool {
    match vulkan::list_devices() {
        Ok(list) if list.iter().any(|(_, why)| why.is_none()) => true,
        Ok(list) => {
            let reasons: Vec<String> = list.iter().map(|(p, why)| format!("{}: {}", p.summary(), why.as_deref().unwrap_or("?"))).collect();
            println!("{test}: skipped: no Vulkan device ({})", if reasons.is_empty() { "none listed".into() } else { reasons.join("; ") });
            false
        }
        Err(e) => {
            println!("{test}: skipped: no Vulkan device ({e})");
            false
        }
    }
}

/// Options for tests: validation on when the layer is installed (CI installs it).
pub fn test_options() -> ContextOptions {
    let validation = vulkan::instance::Instance::new(true).is_ok();
    if !validation {
        println!("note: VK_LAYER_KHRONOS_validation not installed; running without validation");
    }
    ContextOptions { validation, ..Default::default() }
}

/// A session on the best device with validation on, or `None` (printed) when there is no device.
/// A device that is listed but fails to open is a test failure, not a skip.
pub fn open(test: &str, budget: Budget, cache_dir: Option<&std::path::Path>) -> Option<Gpu> {
    if !device_available(test) {
        return None;
    }
    match Gpu::open(&test_options(), budget, cache_dir) {
        Ok(gpu) => Some(gpu),
        Err(e) => panic!("{test}: a Vulkan device is listed but did not open: {e}"),
    }
}

/// Panics when the validation layers reported any error or warning so far.
pub fn assert_no_validation_messages(gpu: &Gpu) {
    let log = gpu.ctx.validation();
    assert!(
        log.errors() == 0 && log.warnings() == 0,
        "validation reported {} errors and {} warnings: {:#?}",
        log.errors(),
        log.warnings(),
        log.messages()
    );
}
