//! The StyleUNet refiner on Vulkan (`GpuRefiner`) against the CPU `Refiner::run` on the same input and
//! the same weights, at `ModelConfig::small()`: seeded fp32 weights in memory, and a seeded checkpoint
//! converted to fp16 and to int8 (the GPU reads the stored words, the CPU their dequantised values).
//! Skipped with a message without a Vulkan device; zero validation messages required.

mod vulkan_common;
use vulkan_common as common;

use std::path::PathBuf;

use gaga_converter::dev::convert_seeded_small;
use gaga_converter::Precision;
use gaga_kernels::testing::{assert_close, seeded, Tolerance};
use gaga_runtime::backend::vulkan::refiner::GpuRefiner;
use gaga_runtime::backend::vulkan::{Gpu, MemoryLocation, Recorded};
use gaga_runtime::backend::Budget;
use gaga_runtime::model::Model;
use gaga_runtime::refiner::testing::insert_seeded_refiner;
use gaga_runtime::refiner::{NoiseMode, Refiner};
use gaga_runtime::{ModelConfig, WeightMap, Weights};
use gaga_tests::test_dir;

/// GPU vs CPU refiner: both sum in fp32 but in different orders (direct convolution vs the CPU's
/// GEMM, int8 scales and modulation applied to partial sums) and the GPU's `exp`, `sqrt` and division
/// are not correctly rounded; through ~45 layers this stays near 1e-6 of the [0, 1] output, so 1e-5
/// absolute has 10x margin while any real error (a wrong tap, offset or epilogue) is >= 1e-3.
const GPU_VS_CPU: Tolerance = Tolerance::Custom { abs: 1e-5, rel: 0.0 };

fn psnr(a: &[f32], b: &[f32]) -> f64 {
    let mse = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>() / a.len() as f64;
    10.0 * (1.0 / mse.max(1e-20)).log10()
}

/// A splat-like input: seeded features, zero (background) in one corner as a real splat has.
fn splat(cfg: &ModelConfig, seed: u64) -> Vec<f32> {
    let s = cfg.refiner.size;
    let mut x = seeded(seed, cfg.refiner.in_channels * s * s);
    for (i, v) in x.iter_mut().enumerate() {
        let (y, xx) = ((i / s) % s, i % s);
        if y < s / 4 && xx < s / 4 {
            *v = 0.0;
        }
    }
    x
}

/// The CPU refiner's RGB clamped to [0, 1], as `FrameRenderer` does.
fn cpu_rgb(w: &dyn Weights, cfg: &ModelConfig, input: &[f32]) -> Vec<f32> {
    cpu_rgb_frames(w, cfg, NoiseMode::Stored, &[input]).remove(0)
}

/// The CPU refiner run once per input, in order, on one refiner (so random noise advances per call).
fn cpu_rgb_frames(w: &dyn Weights, cfg: &ModelConfig, noise: NoiseMode, inputs: &[&[f32]]) -> Vec<Vec<f32>> {
    let s = cfg.refiner.size;
    let mut r = Refiner::new(w, cfg, noise).expect("CPU refiner loads");
    inputs
        .iter()
        .map(|x| {
            let mut out = vec![0.0; cfg.refiner.out_channels * s * s];
            r.run(x, &mut out).expect("CPU refiner runs");
            out.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
            out
        })
        .collect()
}

/// Runs the GPU refiner on each input (one recording, replayed per input) and returns the outputs.
fn gpu_rgb(gpu: &Gpu, w: &dyn Weights, cfg: &ModelConfig, inputs: &[&[f32]]) -> Vec<Vec<f32>> {
    gpu_rgb_with(gpu, w, cfg, NoiseMode::Stored, inputs)
}

fn gpu_rgb_with(gpu: &Gpu, w: &dyn Weights, cfg: &ModelConfig, noise: NoiseMode, inputs: &[&[f32]]) -> Vec<Vec<f32>> {
    let r = GpuRefiner::new(gpu, w, cfg, noise).expect("GPU refiner loads");
    let input = gpu.memory.buffer("splat image", r.input_bytes(), MemoryLocation::CpuToGpu).expect("input buffer");
    let output = gpu.memory.buffer("refiner RGB", r.output_bytes(), MemoryLocation::GpuToCpu).expect("output buffer");
    let dispatches = r.dispatches(&input, &output);
    let rec = Recorded::record(&gpu.ctx, &dispatches).expect("records");
    let mut outs = Vec::new();
    for x in inputs {
        input.write(x).expect("upload");
        r.before_frame().expect("per-frame writes");
        let t = std::time::Instant::now();
        rec.run().expect("replays");
        let mut out = vec![0.0f32; (r.output_bytes() / 4) as usize];
        output.read(&mut out).expect("read back");
        let (n, p) = r.counts();
        println!("GPU refiner: {n} dispatches, {p} pipelines, {:.1} ms wall on this device", t.elapsed().as_secs_f64() * 1e3);
        outs.push(out);
    }
    outs
}

/// The GPU refiner on `w` (weights as stored) against the CPU refiner on `cpu_w`.
fn compare(test: &str, gpu: &Gpu, w: &dyn Weights, cpu_w: &dyn Weights, cfg: &ModelConfig) {
    let (a, b) = (splat(cfg, 5), splat(cfg, 6));
    let outs = gpu_rgb(gpu, w, cfg, &[&a, &b, &a]);
    for (i, x) in [&a, &b].iter().enumerate() {
        let want = cpu_rgb(cpu_w, cfg, x);
        let p = psnr(&outs[i], &want);
        let (worst, _) = gaga_kernels::testing::max_abs_diff(&outs[i], &want);
        println!("{test}: input {i}: PSNR {p:.1} dB, max |GPU - CPU| {worst:.2e}");
        assert_close(&format!("{test}: input {i}: GPU vs CPU refiner"), &outs[i], &want, GPU_VS_CPU);
        assert!(p >= 80.0, "{test}: input {i}: PSNR {p:.1} dB, expected >= 80");
    }
    assert_eq!(outs[0], outs[2], "{test}: replaying the recording on the same input must give the same bits");
    assert!(outs[0] != outs[1], "{test}: different inputs gave the same RGB");
    common::assert_no_validation_messages(gpu);
}

/// Budget for one small refiner with its buffers (about 3 MiB at `small`).
const BUDGET: Budget = Budget { bytes: 64 << 20 };

#[test]
fn gpu_refiner_matches_the_cpu_refiner_with_fp32_weights() {
    let test = "gpu_refiner_matches_the_cpu_refiner_with_fp32_weights";
    let Some(gpu) = common::open(test, BUDGET, None) else { return };
    let cfg = ModelConfig::small();
    let mut w = WeightMap::default();
    insert_seeded_refiner(&mut w, &cfg, 3);
    compare(test, &gpu, &w, &w, &cfg);
}

/// A model's tensors offered as f32 only (dequantised; `stored` lends those f32 values), so the CPU
/// refiner runs fp32 arithmetic on exactly the values the GPU decodes from the stored words, instead
/// of its int8 x int8 kernels with quantised activations.
struct Dequantised<'a>(&'a Model);

impl Weights for Dequantised<'_> {
    fn shape(&self, name: &str) -> gaga_runtime::Result<Vec<usize>> {
        self.0.shape(name)
    }
    fn f32(&self, name: &str) -> gaga_runtime::Result<std::borrow::Cow<'_, [f32]>> {
        self.0.f32(name)
    }
}

/// A seeded small checkpoint converted at `precision` (fp16 / int8 storage, the default policy).
fn converted(precision: Precision) -> (Model, tempfile::TempDir, PathBuf) {
    let dir = test_dir(&format!("vulkan-refiner-{}", precision.name()));
    let path = convert_seeded_small(dir.path(), 7, precision, "vulkan_refiner").expect("converts");
    (Model::open(&path).expect("opens"), dir, path)
}

fn stored_case(test: &str, precision: Precision, dtype: gaga_runtime::format::DType) {
    let Some(gpu) = common::open(test, BUDGET, None) else { return };
    let (model, _dir, _) = converted(precision);
    let cfg = ModelConfig::small();
    // The policy stores the refiner's large weights at the requested precision.
    let probe = "upsampler.stylegan_decoder.style_convs.3.modulated_conv.weight";
    assert_eq!(model.stored(probe).expect("stored").dtype, dtype, "{test}: {probe}");
    compare(test, &gpu, &model, &Dequantised(&model), &cfg);
    drop(model);
}

#[test]
fn gpu_refiner_reads_fp16_weights_as_stored_and_matches_the_cpu_on_their_values() {
    let test = "gpu_refiner_reads_fp16_weights_as_stored_and_matches_the_cpu_on_their_values";
    stored_case(test, Precision::Fp16, gaga_runtime::format::DType::F16);
}

#[test]
fn gpu_refiner_reads_int8_weights_as_stored_and_matches_the_cpu_on_their_values() {
    let test = "gpu_refiner_reads_int8_weights_as_stored_and_matches_the_cpu_on_their_values";
    stored_case(test, Precision::Int8, gaga_runtime::format::DType::I8);
}

#[test]
fn gpu_refiner_unpacks_cpu_panel_weights_and_matches_the_cpu() {
    let test = "gpu_refiner_unpacks_cpu_panel_weights_and_matches_the_cpu";
    let Some(gpu) = common::open(test, BUDGET, None) else { return };
    let (model, dir, plain) = converted(Precision::Fp32);
    let packed = dir.path().join("packed.gaga");
    gaga_converter::pack::pack_refiner(&plain, &packed).expect("packs");
    let model = {
        drop(model);
        Model::open(&packed).expect("opens")
    };
    let probe = "upsampler.final_conv.weight";
    assert_ne!(model.stored(probe).expect("stored").layout, gaga_runtime::format::Layout::RowMajor, "{test}: {probe} packed");
    compare(test, &gpu, &model, &model, &ModelConfig::small());
    drop(model);
}

#[test]
fn the_plan_names_every_buffer_the_refiner_allocates() {
    let test = "the_plan_names_every_buffer_the_refiner_allocates";
    let cfg = ModelConfig::small();
    let mut w = WeightMap::default();
    insert_seeded_refiner(&mut w, &cfg, 3);
    let plan = GpuRefiner::plan(&w, &cfg).expect("plans");
    let total: u64 = plan.iter().map(|b| b.1).sum();
    println!("{test}: {} buffers, {total} bytes at small", plan.len());
    let Some(gpu) = common::open(test, BUDGET, None) else { return };
    let r = GpuRefiner::new(&gpu, &w, &cfg, NoiseMode::Stored).expect("loads");
    let report = gpu.memory.report();
    let mut held: Vec<&str> = report.holders.iter().map(|h| h.0.as_str()).collect();
    let mut planned: Vec<&str> = plan.iter().map(|b| b.0.as_str()).collect();
    held.sort_unstable();
    planned.sort_unstable();
    assert_eq!(held, planned, "{test}: allocated names vs plan");
    // Charged sizes round each request up to the device's alignment only.
    assert!(
        report.used >= total && report.used <= total + 256 * plan.len() as u64,
        "{test}: charged {} for a plan of {total}",
        report.used
    );
    drop(r);
    common::assert_no_validation_messages(&gpu);
}

#[test]
fn random_noise_draws_the_cpu_refiners_maps_every_frame() {
    let test = "random_noise_draws_the_cpu_refiners_maps_every_frame";
    let Some(gpu) = common::open(test, BUDGET, None) else { return };
    let cfg = ModelConfig::small();
    let mut w = WeightMap::default();
    insert_seeded_refiner(&mut w, &cfg, 3);
    let a = splat(&cfg, 5);
    let noise = NoiseMode::Random { seed: 9 };
    // The same input three times: only the noise changes between frames.
    let gpu_out = gpu_rgb_with(&gpu, &w, &cfg, noise, &[&a, &a, &a]);
    let cpu_out = cpu_rgb_frames(&w, &cfg, noise, &[&a, &a, &a]);
    for (i, (g, c)) in gpu_out.iter().zip(&cpu_out).enumerate() {
        let p = psnr(g, c);
        println!("{test}: frame {i}: PSNR {p:.1} dB against the CPU with the same seed");
        assert_close(&format!("{test}: frame {i}"), g, c, GPU_VS_CPU);
    }
    assert!(gpu_out[0] != gpu_out[1] && gpu_out[1] != gpu_out[2], "{test}: the noise must change every frame");
    common::assert_no_validation_messages(&gpu);
}

#[test]
fn a_wrong_tensor_is_an_error_not_a_panic() {
    let cfg = ModelConfig::small();
    let mut w = WeightMap::default();
    insert_seeded_refiner(&mut w, &cfg, 3);
    let name = "upsampler.stylegan_decoder.style_convs.2.modulated_conv.weight";
    let mut bad = w.clone();
    bad.tensors.get_mut(name).expect("present").0[2] += 1;
    let err = GpuRefiner::plan(&bad, &cfg).expect_err("wrong shape");
    assert!(err.to_string().contains(name), "{err}");
    bad.tensors.remove("upsampler.final_linear.bias");
    assert!(GpuRefiner::plan(&bad, &cfg).expect_err("missing").to_string().contains("final_linear"));
}

/// One dispatch of a shipped shader on uploaded words (`inputs` bound in order), the buffer at
/// `out_binding` read back afterwards (it may be one of the inputs, for read-write shaders).
#[allow(clippy::too_many_arguments)]
fn run_shader(
    gpu: &Gpu,
    name: &str,
    spirv: &[u8],
    spec: &[gaga_kernels::twin::SpecValue],
    push: &[u8],
    groups: (u32, u32, u32),
    inputs: &[&[u32]],
    out_binding: usize,
) -> Vec<f32> {
    use gaga_runtime::backend::vulkan::{ComputePipeline, Dispatch};
    let bufs: Vec<_> = inputs
        .iter()
        .enumerate()
        .map(|(i, data)| {
            let b = gpu.memory.buffer(&format!("{name} binding {i}"), 4 * data.len() as u64, MemoryLocation::CpuToGpu).expect("buffer");
            b.write(data).expect("upload");
            b
        })
        .collect();
    let pipeline = ComputePipeline::new(&gpu.ctx, &gpu.cache, name, spirv, spec, inputs.len() as u32, push.len() as u32).expect("pipeline");
    let d = Dispatch { label: name.into(), pipeline: &pipeline, buffers: bufs.iter().collect(), push: push.to_vec(), groups };
    Recorded::record(&gpu.ctx, &[d]).expect("records").run().expect("runs");
    let mut out = vec![0f32; inputs[out_binding].len()];
    bufs[out_binding].read(&mut out).expect("read back");
    out
}

#[test]
fn refiner_shaders_match_their_cpu_twins_on_the_device() {
    use gaga_kernels::twin::demod::{demod, DemodPush};
    use gaga_kernels::twin::matvec::{matvec, MatvecPush, MatvecVariant};
    use gaga_kernels::twin::refiner_conv::{refiner_conv, ConvInputs, Epilogue, RefinerConvPush, RefinerConvVariant};
    use gaga_kernels::twin::stored::{words_from_f16, words_from_f32, words_from_i8, WeightType};
    use gaga_kernels::twin::{f16, DEMOD_SPV, MATVEC_SPV, REFINER_CONV_SPV};
    let test = "refiner_shaders_match_their_cpu_twins_on_the_device";
    let Some(gpu) = common::open(test, common::TEST_BUDGET, None) else { return };
    // Identical operations in identical order with `precise`: bit-identical (1e-30 absorbs a flushed
    // denormal). sqrt, division and exp are not correctly rounded on the GPU: 1e-6 relative for those.
    let twin = Tolerance::Custom { abs: 1e-30, rel: 0.0 };
    let approx = Tolerance::Custom { abs: 1e-7, rel: 1e-6 };
    let words = |wt: WeightType, v: &[f32]| match wt {
        WeightType::F32 => words_from_f32(v),
        WeightType::F16 => words_from_f16(&v.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>()),
        WeightType::I8 => words_from_i8(&v.iter().map(|x| (x * 127.0).round() as i8).collect::<Vec<_>>()),
    };
    let f = |v: &[f32]| words_from_f32(v);
    for wt in [WeightType::F32, WeightType::F16, WeightType::I8] {
        // Convolutions: every layer kind at an odd size (9x9 crosses the 8x8 workgroup edge).
        let plain = RefinerConvVariant {
            kernel: 3,
            wtype: wt,
            has_bias: true,
            modulated: false,
            demod: false,
            noise: false,
            leaky: Some(0.2),
            epilogue: Epilogue::Plain,
        };
        let style = RefinerConvVariant { modulated: true, demod: true, noise: true, ..plain };
        let kinds = [
            plain,
            RefinerConvVariant { kernel: 1, has_bias: false, leaky: None, epilogue: Epilogue::Residual, ..plain },
            RefinerConvVariant { epilogue: Epilogue::Sft, ..style },
            RefinerConvVariant { kernel: 1, modulated: true, leaky: None, epilogue: Epilogue::ResidualSigmoid, ..plain },
        ];
        for v in kinds {
            let (ci, co, h) = (5, 4, 9);
            let k = v.kernel as usize;
            let x = seeded(1, ci * h * h);
            let wq = words(wt, &seeded(2, co * ci * k * k));
            let vecs: Vec<f32> = seeded(3, 4 + 3 * co + ci).iter().map(|v| 0.5 + 0.3 * v).collect();
            let noise = seeded(4, 3 + h * h);
            let aux = seeded(5, 2 + 2 * co * h * h);
            let p = RefinerConvPush {
                c_in: 5,
                h: 9,
                w: 9,
                c_out: 4,
                bias_off: 1,
                wscale_off: 5,
                s_off: 9,
                f_off: 14,
                noise_off: 3,
                strength: 0.1,
                aux_off: 2,
                y_off: 3,
            };
            let mut want = vec![0.0; 3 + co * h * h];
            refiner_conv(&v, &p, &ConvInputs { x: &x, wq: &wq, vecs: &vecs, noise: &noise, aux: &aux }, &mut want);
            let zeros = vec![0u32; want.len()];
            let got = run_shader(
                &gpu,
                "refiner_conv",
                REFINER_CONV_SPV,
                &v.spec_constants(),
                p.as_bytes(),
                v.dispatch(&p),
                &[&f(&x), &wq, &f(&vecs), &f(&noise), &f(&aux), &zeros],
                5,
            );
            let tol = if v.epilogue == Epilogue::ResidualSigmoid { approx } else { twin };
            assert_close(&format!("{test}: {v:?}"), &got, &want, tol);
        }
        // Linear layers, with and without NormStyleCode.
        for prenorm in [false, true] {
            let v = MatvecVariant { wtype: wt, prenorm, leaky: prenorm.then_some(0.2) };
            let (ni, no) = (37, 70);
            let x = seeded(6, 2 + ni);
            let wq = words(wt, &seeded(7, no * ni));
            let vecs: Vec<f32> = seeded(8, 2 * no).iter().map(|v| 0.01 + 0.01 * v.abs()).collect();
            let p = MatvecPush { n_in: ni as u32, n_out: no as u32, x_off: 2, bias_off: 0, wscale_off: no as u32, y_off: 1 };
            let mut want = vec![0.0; 1 + no];
            matvec(&v, &p, &x, &wq, &vecs, &mut want);
            let zeros = vec![0u32; want.len()];
            let got = run_shader(
                &gpu,
                "matvec",
                MATVEC_SPV,
                &v.spec_constants(),
                p.as_bytes(),
                p.dispatch(),
                &[&f(&x), &wq, &f(&vecs), &zeros],
                3,
            );
            assert_close(&format!("{test}: {v:?}"), &got, &want, if prenorm { approx } else { twin });
        }
    }
    // Demodulation factors (read-write vectors buffer).
    let (ci, co) = (33, 70);
    let q: Vec<f32> = seeded(9, co * ci).iter().map(|v| v.abs()).collect();
    let mut vecs: Vec<f32> = seeded(10, 3 + ci + co).iter().map(|v| 1.0 + 0.2 * v).collect();
    let p = DemodPush { c_in: ci as u32, c_out: co as u32, s_off: 3, f_off: (3 + ci) as u32, gain: std::f32::consts::SQRT_2 };
    let got = run_shader(&gpu, "demod", DEMOD_SPV, &DemodPush::spec_constants(), p.as_bytes(), p.dispatch(), &[&f(&q), &f(&vecs)], 1);
    demod(&p, &q, &mut vecs);
    assert_close(&format!("{test}: demod"), &got, &vecs, approx);
    common::assert_no_validation_messages(&gpu);
}

/// Bytes per buffer group at official size with fp32 weights (for docs/vulkan.md); no device needed.
/// Seeds 48 M parameters, so it is left out of CI:
/// `cargo test --release -p gaga-tests --test vulkan_refiner -- --ignored --nocapture official`
#[test]
#[ignore]
fn official_size_plan_by_group() {
    let cfg = ModelConfig::official();
    let mut w = WeightMap::default();
    insert_seeded_refiner(&mut w, &cfg, 1);
    let plan = GpuRefiner::plan(&w, &cfg).expect("plans");
    let group = |name: &str| {
        if name.starts_with("refiner activations") {
            "activations"
        } else if name.ends_with("vectors") {
            "vectors (biases, int8 scales, s, f)"
        } else if name.ends_with("square sums") {
            "demodulation square sums"
        } else if name.contains("noise") {
            "noise maps"
        } else {
            "weights as stored"
        }
    };
    let mut totals: Vec<(&str, u64, usize)> = Vec::new();
    for (name, bytes) in &plan {
        let g = group(name);
        match totals.iter_mut().find(|t| t.0 == g) {
            Some(t) => {
                t.1 += bytes;
                t.2 += 1;
            }
            None => totals.push((g, *bytes, 1)),
        }
    }
    for (g, bytes, n) in &totals {
        println!("{g}: {n} buffers, {:.1} MiB", *bytes as f64 / (1 << 20) as f64);
    }
    let mut acts: Vec<&(String, u64)> = plan.iter().filter(|b| b.0.starts_with("refiner activations")).collect();
    acts.sort_by_key(|b| std::cmp::Reverse(b.1));
    for (name, bytes) in acts {
        println!("  {name}: {:.1} MiB", *bytes as f64 / (1 << 20) as f64);
    }
    println!("total {:.1} MiB in {} buffers", plan.iter().map(|b| b.1).sum::<u64>() as f64 / (1 << 20) as f64, plan.len());
}
