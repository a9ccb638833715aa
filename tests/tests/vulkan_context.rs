//! The Vulkan foundation on whatever device this machine has (lavapipe in CI): probe and device
//! choice, the memory budget, the on-disk pipeline cache, and recorded command buffers replayed with
//! per-dispatch timestamps. Each test asserts that the validation layers stayed silent.

mod vulkan_common;
use vulkan_common as common;

use gaga_kernels::testing::seeded;
use gaga_kernels::twin::elementwise as ew;
use gaga_runtime::backend::vulkan::{self, ComputePipeline, ContextOptions, Dispatch, Gpu, MemoryLocation, Recorded};
use gaga_runtime::backend::{Backend, Budget};
use gaga_runtime::Error;
use gaga_tests::test_dir;

#[test]
fn the_chosen_device_is_probed_and_printable() {
    let Some(gpu) = common::open("the_chosen_device_is_probed_and_printable", common::TEST_BUDGET, None) else { return };
    let p = gpu.ctx.probe();
    let text = p.to_string();
    println!("{text}");
    assert!(p.max_storage_buffer_range > 0 && p.max_workgroup_invocations >= 128, "{text}");
    assert!(p.subgroup_size >= 1 && p.max_shared_memory >= 16 * 1024, "{text}");
    for line in ["fp16 arithmetic", "integer dot product", "subgroups", "shared memory", "max storage buffer", "external host memory"] {
        assert!(text.contains(line), "probe display lacks `{line}`:\n{text}");
    }
    assert!(gpu.ctx.validating(), "tests run with the validation layers");
    common::assert_no_validation_messages(&gpu);
}

#[test]
fn a_device_index_out_of_range_is_an_error_listing_the_devices() {
    if !common::device_available("a_device_index_out_of_range_is_an_error_listing_the_devices") {
        return;
    }
    let options = ContextOptions { device: Some(99), ..common::test_options() };
    let err = Gpu::open(&options, common::TEST_BUDGET, None).err().expect("device 99 does not exist");
    let text = err.to_string();
    assert!(text.contains("device 99 requested") && text.contains("[0]"), "{text}");
}

#[test]
fn the_backend_probe_names_the_device() {
    if !common::device_available("the_backend_probe_names_the_device") {
        return;
    }
    let backend = vulkan::VulkanBackend::default();
    let line = backend.probe().expect("a listed device probes");
    assert!(line.starts_with("[0]") || line.starts_with('['), "{line}");
}

#[test]
fn allocations_over_budget_fail_naming_the_largest_holders() {
    let test = "allocations_over_budget_fail_naming_the_largest_holders";
    let Some(gpu) = common::open(test, Budget { bytes: 1 << 20 }, None) else { return };
    let weights = gpu.memory.buffer("refiner weights", 600 << 10, MemoryLocation::GpuOnly).expect("fits");
    let staging = gpu.memory.buffer("staging", 100 << 10, MemoryLocation::CpuToGpu).expect("fits");
    let err = gpu.memory.buffer("splat image", 600 << 10, MemoryLocation::GpuOnly).err().expect("over budget");
    match &err {
        Error::OverBudget { name, needed, budget, largest, .. } => {
            assert_eq!(name, "splat image");
            assert!(*needed >= 600 << 10, "{err}");
            assert_eq!(*budget, 1 << 20);
            assert!(largest.starts_with("refiner weights"), "{err}");
        }
        other => panic!("expected OverBudget, got {other}"),
    }
    let report = gpu.memory.report();
    println!("{report}");
    assert_eq!(report.holders.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["refiner weights", "staging"]);
    drop((weights, staging));
    assert_eq!(gpu.memory.report().used, 0, "dropped buffers leave the budget");
    common::assert_no_validation_messages(&gpu);
}

#[test]
fn a_buffer_beyond_the_storage_range_is_refused_with_the_limit() {
    let test = "a_buffer_beyond_the_storage_range_is_refused_with_the_limit";
    let Some(gpu) = common::open(test, Budget::UNLIMITED, None) else { return };
    let max = gpu.ctx.probe().max_storage_buffer_range as u64;
    let err = gpu.memory.buffer("huge", max + 4, MemoryLocation::GpuOnly).err().expect("beyond range");
    assert!(err.to_string().contains(&max.to_string()) && err.to_string().contains("plan_chunks"), "{err}");
    common::assert_no_validation_messages(&gpu);
}

fn leaky_pipeline(gpu: &Gpu) -> ComputePipeline {
    let op = ew::ElementwiseOp::LeakyRelu { slope: 0.2 };
    ComputePipeline::new(&gpu.ctx, &gpu.cache, "leaky", gaga_kernels::twin::ELEMENTWISE_SPV, &op.spec_constants(), 3, 4)
        .expect("pipeline builds")
}

#[test]
fn the_pipeline_cache_is_saved_then_reused_and_a_foreign_file_is_ignored() {
    let test = "the_pipeline_cache_is_saved_then_reused_and_a_foreign_file_is_ignored";
    let tmp = test_dir("vulkan-pipeline-cache");
    let dir = tmp.path();
    let path = {
        let Some(gpu) = common::open(test, common::TEST_BUDGET, Some(dir)) else { return };
        assert!(!gpu.cache.loaded_from_disk(), "fresh directory");
        let t = std::time::Instant::now();
        let _p = leaky_pipeline(&gpu);
        println!("pipeline build, empty cache: {:.2} ms", t.elapsed().as_secs_f64() * 1e3);
        gpu.cache.save().expect("cache saves");
        common::assert_no_validation_messages(&gpu);
        gpu.cache.path().expect("backed by a file").to_path_buf()
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    assert!(name.starts_with("pipeline-") && name.ends_with(".bin"), "{name}");
    {
        let Some(gpu) = common::open(test, common::TEST_BUDGET, Some(dir)) else { return };
        assert!(gpu.cache.loaded_from_disk(), "{} was not reused", path.display());
        let t = std::time::Instant::now();
        let _p = leaky_pipeline(&gpu);
        println!("pipeline build, cache from disk: {:.2} ms", t.elapsed().as_secs_f64() * 1e3);
        common::assert_no_validation_messages(&gpu);
    }
    // Same file name, another device's UUID: ignored with a warning, never handed to the driver.
    let mut data = std::fs::read(&path).expect("cache file readable");
    data[16] ^= 0xff;
    std::fs::write(&path, &data).expect("cache file writable");
    {
        let Some(gpu) = common::open(test, common::TEST_BUDGET, Some(dir)) else { return };
        assert!(!gpu.cache.loaded_from_disk(), "a foreign cache was used");
        common::assert_no_validation_messages(&gpu);
    }
}

#[test]
fn a_recording_replays_with_new_inputs_and_times_each_dispatch() {
    let test = "a_recording_replays_with_new_inputs_and_times_each_dispatch";
    let Some(gpu) = common::open(test, common::TEST_BUDGET, None) else { return };
    let n = 777;
    let add = ew::ElementwiseOp::Add;
    let add_p = ComputePipeline::new(&gpu.ctx, &gpu.cache, "add", gaga_kernels::twin::ELEMENTWISE_SPV, &add.spec_constants(), 3, 4)
        .expect("pipeline builds");
    let leaky_p = leaky_pipeline(&gpu);
    let mem = &gpu.memory;
    let a = mem.buffer("a", 4 * n as u64, MemoryLocation::CpuToGpu).expect("a");
    let b = mem.buffer("b", 4 * n as u64, MemoryLocation::CpuToGpu).expect("b");
    let sum = mem.buffer("sum", 4 * n as u64, MemoryLocation::GpuOnly).expect("sum");
    let out = mem.buffer("out", 4 * n as u64, MemoryLocation::GpuToCpu).expect("out");
    let push = (n as u32).to_ne_bytes().to_vec(); // ElementwisePush { n }
    let groups = (ew::dispatch(n), 1, 1);
    let dispatches = vec![
        Dispatch { label: "add".into(), pipeline: &add_p, buffers: vec![&a, &b, &sum], push: push.clone(), groups },
        Dispatch { label: "leaky".into(), pipeline: &leaky_p, buffers: vec![&sum, &sum, &out], push, groups },
    ];
    let rec = Recorded::record(&gpu.ctx, &dispatches).expect("records");
    for round in 0..3u64 {
        let (x, y) = (seeded(40 + round, n), seeded(50 + round, n));
        a.write(&x).expect("a writable");
        b.write(&y).expect("b writable");
        rec.run().expect("runs");
        let timings = rec.timings().expect("timestamps read");
        let mut got = vec![0.0; n];
        out.read(&mut got).expect("out readable");
        let want: Vec<f32> = x.iter().zip(&y).map(|(u, v)| u + v).map(|s| if s < 0.0 { s * 0.2 } else { s }).collect();
        assert_eq!(got, want, "replay {round}");
        println!("replay {round}: {timings:?}");
        if gpu.ctx.probe().timestamp_period_ns.is_some() {
            assert_eq!(timings.iter().map(|t| t.0.as_str()).collect::<Vec<_>>(), ["add", "leaky"]);
            assert!(timings.iter().all(|t| t.1 >= 0.0 && t.1.is_finite()), "{timings:?}");
        }
    }
    drop(rec);
    common::assert_no_validation_messages(&gpu);
}

#[test]
fn validation_errors_are_counted_so_the_suites_can_assert_none() {
    let test = "validation_errors_are_counted_so_the_suites_can_assert_none";
    let Some(gpu) = common::open(test, common::TEST_BUDGET, None) else { return };
    if !gpu.ctx.validating() {
        println!("{test}: skipped: validation layers not installed");
        return;
    }
    // elementwise.comp declares three bindings; a layout with two is an error the layer must catch.
    let op = ew::ElementwiseOp::Add;
    let _bad = ComputePipeline::new(&gpu.ctx, &gpu.cache, "two-bindings", gaga_kernels::twin::ELEMENTWISE_SPV, &op.spec_constants(), 2, 4);
    let log = gpu.ctx.validation();
    assert!(log.errors() >= 1, "the validation layer missed a layout that lacks binding 2: {:?}", log.messages());
    println!("caught: {:?}", log.messages().first());
}
