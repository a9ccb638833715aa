//! The whole `small`-configuration frame on the Vulkan backend against the CPU backend, FLAME's shader
//! against its twin and CPU FLAME, the memory budget checked at `prepare`, and weights imported from
//! host memory vs copied. Validation layers on; every test ends with zero messages. Skipped with a
//! printed reason without a device (fails instead with `GAGA_REQUIRE_VULKAN=1`).

mod vulkan_common;
use vulkan_common as common;

use gaga_converter::dev::convert_seeded_small;
use gaga_converter::Precision;
use gaga_kernels::testing::{assert_close, Tolerance};
use gaga_kernels::twin::flame as twin;
use gaga_runtime::backend::cpu::CpuBackend;
use gaga_runtime::backend::vulkan::flame::{FlameHost, GpuFlame};
use gaga_runtime::backend::vulkan::{MemoryLocation, Recorded, VulkanBackend};
use gaga_runtime::backend::{Backend, Budget};
use gaga_runtime::flame::Flame;
use gaga_runtime::model::Model;
use gaga_runtime::render::testing::{driving_frame, seeded_frame_weights, synthetic_avatar};
use gaga_runtime::{Error, Image, ModelConfig, Weights};
use gaga_tests::test_dir;

fn backend(copy_weights: bool) -> VulkanBackend {
    VulkanBackend { options: common::test_options(), cache_dir: None, copy_weights }
}

#[test]
fn a_small_frame_on_vulkan_matches_the_cpu_backend_above_50_db() {
    let test = "a_small_frame_on_vulkan_matches_the_cpu_backend_above_50_db";
    if !common::device_available(test) {
        return;
    }
    let cfg = ModelConfig::small();
    let w = seeded_frame_weights(&cfg, 4);
    let avatar = synthetic_avatar(&cfg, 1);
    let mut gpu = backend(false).open_session(&w, &cfg, common::TEST_BUDGET).expect("vulkan session");
    let mut cpu = CpuBackend::default().prepare(&w, &cfg, Budget::UNLIMITED).expect("cpu session");
    let s = cfg.image_size;
    for i in 0..3 {
        let frame = driving_frame(&cfg, i);
        let (mut a, mut b) = (Image::new(s, s), Image::new(s, s));
        gaga_runtime::backend::Session::render(&mut gpu, &avatar, &frame, &mut a).expect("vulkan render");
        cpu.render(&avatar, &frame, &mut b).expect("cpu render");
        let psnr = gaga_tests::psnr(&a.data, &b.data, 1.0);
        println!("frame {i}: PSNR {psnr:.1} dB vs the CPU backend; stages {:?}", gaga_runtime::backend::Session::stage_times(&gpu));
        assert!(psnr >= 50.0, "frame {i}: PSNR {psnr:.2} dB < 50");
    }
    let names: Vec<&str> = gaga_runtime::backend::Session::stage_times(&gpu).iter().map(|t| t.0).collect();
    assert_eq!(names[0], "flame");
    if gpu.gpu().ctx.probe().timestamp_period_ns.is_some() {
        assert!(gpu.gpu_timings().iter().any(|t| t.0 == "flame" && t.1 > 0.0), "{:?}", gpu.gpu_timings());
    }
    println!("{}", gpu.memory_report());
    assert!(gpu.memory_report().used <= gpu.planned_bytes(), "the session allocated more than it planned");
    common::assert_no_validation_messages(gpu.gpu());
}

#[test]
fn the_flame_shader_matches_its_twin_and_cpu_flame() {
    let test = "the_flame_shader_matches_its_twin_and_cpu_flame";
    let Some(gpu) = common::open(test, common::TEST_BUDGET, None) else { return };
    let cfg = ModelConfig::small();
    let w = seeded_frame_weights(&cfg, 5);
    let avatar = synthetic_avatar(&cfg, 2);
    let v = cfg.flame.vertices;
    let mut host = FlameHost::new(&w, &cfg).expect("host");
    let flame = GpuFlame::new(&gpu, &w, &cfg, true).expect("gpu flame");
    // Two extra rows: FLAME must write rows 0..V only.
    let positions = gpu.memory.buffer("positions", 12 * (v as u64 + 2), MemoryLocation::GpuToCpu).expect("positions");
    positions.write(&vec![7.0f32; 3 * (v + 2)]).expect("fill");
    let rec = Recorded::record(&gpu.ctx, &[flame.dispatch(&positions).expect("dispatch")]).expect("record");
    let mut cpu = Flame::new(&w, &cfg).expect("cpu flame");
    cpu.set_identity(&avatar.shapecode).expect("identity");
    let (sd, pd, lbs) = (w.f32("flame.shapedirs").expect("sd"), w.f32("flame.posedirs").expect("pd"), w.f32("flame.weights").expect("w"));
    for i in 0..3 {
        let frame = driving_frame(&cfg, i);
        flame.set_identity(&mut host, &avatar.shapecode).expect("identity");
        flame.write_frame(&mut host, &frame).expect("frame");
        rec.run().expect("run");
        let mut got = vec![0f32; 3 * (v + 2)];
        positions.read(&mut got).expect("read");
        assert_eq!(&got[3 * v..], &[7.0; 6], "rows past V untouched");
        let mut twin_out = vec![0f32; 3 * v];
        let params = host.frame_params(&frame).expect("params").to_vec();
        twin::flame_lbs(&host.push(), host.identity(), &sd, &pd, &lbs, &params, &mut twin_out);
        // Same operations in the same order, no contraction (`precise`): identical bits expected.
        assert_close(&format!("frame {i}: shader vs twin"), &got[..3 * v], &twin_out, Tolerance::Custom { abs: 1e-30, rel: 0.0 });
        let mut want = vec![0f32; 3 * v];
        cpu.pose(&frame.expcode, &frame.posecode, &frame.eyecode, &frame.key, &mut want).expect("cpu pose");
        // Summation order differs from the CPU's 8-lane dots: f32 rounding only.
        assert_close(&format!("frame {i}: shader vs CPU FLAME"), &got[..3 * v], &want, Tolerance::Custom { abs: 2e-5, rel: 1e-5 });
    }
    println!("imported: {}, timings {:?}", flame.imported(), rec.timings());
    drop(rec);
    common::assert_no_validation_messages(&gpu);
}

#[test]
fn a_budget_too_small_fails_at_prepare_naming_the_bytes_needed() {
    let test = "a_budget_too_small_fails_at_prepare_naming_the_bytes_needed";
    if !common::device_available(test) {
        return;
    }
    let cfg = ModelConfig::small();
    let w = seeded_frame_weights(&cfg, 4);
    let budget = Budget { bytes: 64 << 10 };
    let err = backend(false).prepare(&w, &cfg, budget).err().expect("a 64 KiB budget cannot hold the frame");
    let text = err.to_string();
    println!("{text}");
    match err {
        Error::OverBudget { needed, budget: b, .. } => {
            assert!(needed > b && b == 64 << 10, "{text}");
            assert!(text.contains(&needed.to_string()) && text.contains("flame."), "{text}");
        }
        other => panic!("expected OverBudget, found {other}"),
    }
}

/// A seeded small checkpoint converted at fp32, memory-mapped (tensors 256-byte aligned in a
/// page-aligned map, so the device can import them).
fn converted_fp32(test: &str) -> (Model, tempfile::TempDir) {
    let dir = test_dir("vulkan-frame");
    let model = convert_seeded_small(dir.path(), 7, Precision::Fp32, test).expect("converts");
    (Model::open(&model).expect("opens"), dir)
}

#[test]
fn weights_imported_from_the_mapped_file_render_the_same_frame_as_copied_ones() {
    let test = "weights_imported_from_the_mapped_file_render_the_same_frame_as_copied_ones";
    if !common::device_available(test) {
        return;
    }
    let (model, _dir) = converted_fp32(test);
    let cfg = model.config().clone();
    let avatar = synthetic_avatar(&cfg, 3);
    let frame = driving_frame(&cfg, 1);
    let s = cfg.image_size;
    let mut images = Vec::new();
    for copy in [false, true] {
        let mut session = backend(copy).open_session(&model, &cfg, common::TEST_BUDGET).expect("session");
        let import = !copy && session.gpu().ctx.probe().external_memory_host.is_some();
        assert_eq!(session.weights_imported(), import, "copy_weights {copy}: FLAME weights imported");
        let mut img = Image::new(s, s);
        gaga_runtime::backend::Session::render(&mut session, &avatar, &frame, &mut img).expect("render");
        common::assert_no_validation_messages(session.gpu());
        println!("copy_weights {copy}: imported {}, {} bytes used", session.weights_imported(), session.memory_report().used);
        images.push(img);
    }
    assert_eq!(images[0], images[1], "the weight path must not change a single bit");
    drop(model);
}

#[test]
fn the_session_lifts_on_the_gpu_within_the_planned_budget_and_renders_the_avatar() {
    let test = "the_session_lifts_on_the_gpu_within_the_planned_budget_and_renders_the_avatar";
    if !common::device_available(test) {
        return;
    }
    let (model, _dir) = converted_fp32(test);
    let cfg = model.config().clone();
    let mut session = backend(false).open_session(&model, &cfg, common::TEST_BUDGET).expect("session");
    let s = cfg.image_size;
    let image = Image { width: s, height: s, data: gaga_kernels::testing::seeded(3, 3 * s * s).iter().map(|v| v.abs()).collect() };
    let source =
        gaga_runtime::SourceParams { shapecode: vec![0.1; cfg.flame.shape_params], transform: gaga_runtime::render::testing::FRONTAL };
    let avatar = gaga_runtime::backend::Session::lift(&mut session, &image, &source).expect("gpu lift");
    let after = session.memory_report();
    let want = gaga_runtime::lift::lift(&model, &cfg, &image, &source).expect("cpu lift");
    // The lift suite's GPU-vs-CPU bound (fp32 rounding through DINOv2 and the DPT head).
    assert_close("lifted positions", &avatar.positions, &want.positions, Tolerance::Custom { abs: 1e-5, rel: 1e-5 });
    assert!(gaga_runtime::backend::Session::stage_times(&session).iter().any(|t| t.0.starts_with("lift.")));
    let mut out = Image::new(s, s);
    gaga_runtime::backend::Session::render(&mut session, &avatar, &driving_frame(&cfg, 0), &mut out).expect("render");
    assert!(after.used <= session.planned_bytes(), "after the lift {} bytes are held, {} planned", after.used, session.planned_bytes());
    println!("planned {} bytes; after the lift {} used", session.planned_bytes(), session.memory_report().used);
    common::assert_no_validation_messages(session.gpu());
    drop(session);
    drop(model);
}
