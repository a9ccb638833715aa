//! The first shaders against their CPU twins (same rounding points: identical bits expected) and
//! against the `gaga_kernels` reference (fp32 tolerance), at small odd sizes because lavapipe is slow.
//! CI runs this suite a second time with `LP_NATIVE_VECTOR_WIDTH=128` (subgroup size 4 instead of 8):
//! no shader may depend on the subgroup size.

mod vulkan_common;
use vulkan_common as common;

use gaga_kernels::conv::Conv2d;
use gaga_kernels::testing::{assert_close, seeded, Tolerance};
use gaga_kernels::twin::{bilinear as bl, conv2d as cv, elementwise as ew};
use gaga_runtime::backend::vulkan::ops;

/// Shader vs twin: the twin performs the same IEEE operations in the same order and the shaders forbid
/// contraction (`precise`), so results agree to the bit; the 1e-30 allowance only absorbs a driver
/// flushing a denormal to zero.
const TWIN: Tolerance = Tolerance::Custom { abs: 1e-30, rel: 0.0 };

#[test]
fn conv2d_shader_matches_its_twin_and_the_reference() {
    let Some(gpu) = common::open("conv2d_shader_matches_its_twin_and_the_reference", common::TEST_BUDGET, None) else { return };
    let cases = [
        (Conv2d { c_in: 3, c_out: 5, kernel: 3, stride: 1, pad: 1 }, 7, 9, true, None),
        (Conv2d { c_in: 5, c_out: 3, kernel: 3, stride: 2, pad: 1 }, 9, 7, true, Some(0.2)),
        (Conv2d { c_in: 4, c_out: 7, kernel: 1, stride: 1, pad: 0 }, 5, 11, false, Some(0.2)),
        (Conv2d { c_in: 3, c_out: 2, kernel: 3, stride: 1, pad: 0 }, 6, 5, false, None),
        (Conv2d { c_in: 2, c_out: 3, kernel: 1, stride: 2, pad: 0 }, 9, 9, true, None),
    ];
    for (spec, h, w, has_bias, leaky) in cases {
        let what = format!("{spec:?} on {h}x{w}, bias {has_bias}, leaky {leaky:?}");
        let x = seeded(11, spec.c_in * h * w);
        let wt = seeded(12, spec.c_out * spec.c_in * spec.kernel * spec.kernel);
        let b = seeded(13, spec.c_out);
        let bias = has_bias.then_some(&b[..]);
        let run = ops::conv2d(&gpu, &spec, leaky, &x, h, w, &wt, bias).unwrap_or_else(|e| panic!("{what}: {e}"));

        let p = cv::Conv2dPush::new(&spec, h, w);
        let v = cv::Conv2dVariant { kernel: spec.kernel as u32, stride: spec.stride as u32, has_bias, leaky };
        let mut twin = vec![0.0; run.out.len()];
        cv::conv2d(&v, &p, &x, &wt, &b, &mut twin);
        assert_close(&format!("{what}: shader vs twin"), &run.out, &twin, TWIN);

        let (oh, ow) = spec.out_size(h, w);
        let mut reference = vec![0.0; spec.c_out * oh * ow];
        gaga_kernels::reference::conv2d(&spec, &x, h, w, &wt, bias, &mut reference);
        if let Some(s) = leaky {
            gaga_kernels::act::leaky_relu(&mut reference, s);
        }
        assert_close(&format!("{what}: shader vs reference"), &run.out, &reference, Tolerance::Fp32);
        println!("{what}: gpu {:?} ms", run.gpu_ms);
    }
    common::assert_no_validation_messages(&gpu);
}

#[test]
fn bilinear_shader_matches_its_twin_and_the_reference_for_both_corner_rules() {
    let test = "bilinear_shader_matches_its_twin_and_the_reference_for_both_corner_rules";
    let Some(gpu) = common::open(test, common::TEST_BUDGET, None) else { return };
    for (c, h, w, oh, ow) in [(3, 7, 9, 13, 5), (2, 8, 8, 4, 4), (3, 5, 3, 10, 6), (1, 9, 11, 1, 1), (2, 4, 6, 8, 12)] {
        for align in [false, true] {
            let what = format!("{c}x{h}x{w} -> {oh}x{ow}, align_corners {align}");
            let x = seeded(21, c * h * w);
            let run = ops::bilinear(&gpu, &x, c, h, w, oh, ow, align).unwrap_or_else(|e| panic!("{what}: {e}"));
            let p = bl::BilinearPush::new(c, h, w, oh, ow, align);
            let mut twin = vec![0.0; run.out.len()];
            bl::bilinear(&p, align, &x, &mut twin);
            assert_close(&format!("{what}: shader vs twin"), &run.out, &twin, TWIN);
            let mut reference = vec![0.0; run.out.len()];
            gaga_kernels::resize::bilinear(&x, c, h, w, oh, ow, align, &mut reference);
            // The host-side scale rounds differently from the reference's per-pixel division (see the twin's test).
            assert_close(&format!("{what}: shader vs reference"), &run.out, &reference, Tolerance::Fp32);
        }
    }
    common::assert_no_validation_messages(&gpu);
}

#[test]
fn elementwise_shader_matches_its_twin_and_the_activation_kernel() {
    let test = "elementwise_shader_matches_its_twin_and_the_activation_kernel";
    let Some(gpu) = common::open(test, common::TEST_BUDGET, None) else { return };
    // 1001: odd; MAX_GROUPS * WORKGROUP + 3: more elements than one capped dispatch covers, so the
    // grid-stride loop must take a second step.
    for n in [1001, (ew::MAX_GROUPS * ew::WORKGROUP) as usize + 3] {
        let a = seeded(31, n);
        let b = seeded(32, n);
        for op in [ew::ElementwiseOp::LeakyRelu { slope: 0.2 }, ew::ElementwiseOp::Add] {
            let what = format!("{op:?} on {n}");
            let run = ops::elementwise(&gpu, op, &a, &b).unwrap_or_else(|e| panic!("{what}: {e}"));
            let mut twin = vec![0.0; n];
            ew::elementwise(op, &a, &b, &mut twin);
            assert_close(&format!("{what}: shader vs twin"), &run.out, &twin, TWIN);
            if let ew::ElementwiseOp::LeakyRelu { slope } = op {
                let mut reference = a.clone();
                gaga_kernels::act::leaky_relu(&mut reference, slope);
                assert_close(&format!("{what}: shader vs reference"), &run.out, &reference, Tolerance::Custom { abs: 0.0, rel: 0.0 });
            }
            println!("{what}: gpu {:?} ms", run.gpu_ms);
        }
    }
    common::assert_no_validation_messages(&gpu);
}

#[test]
fn conv2d_fp16_storage_shader_matches_its_twin_and_the_reference() {
    use gaga_kernels::twin::f16;
    let test = "conv2d_fp16_storage_shader_matches_its_twin_and_the_reference";
    let Some(gpu) = common::open(test, common::TEST_BUDGET, None) else { return };
    if !gpu.ctx.probe().storage_buffer_16bit {
        println!("{test}: skipped: device lacks 16-bit storage buffers");
        return;
    }
    let half = |v: Vec<f32>| v.into_iter().map(f16::from_f32).collect::<Vec<_>>();
    let wide = |v: &[f16]| v.iter().map(|s| s.to_f32()).collect::<Vec<_>>();
    for (spec, h, w, leaky) in [
        (Conv2d { c_in: 5, c_out: 3, kernel: 3, stride: 1, pad: 1 }, 7, 9, Some(0.2)),
        (Conv2d { c_in: 3, c_out: 4, kernel: 3, stride: 2, pad: 1 }, 9, 5, None),
        (Conv2d { c_in: 6, c_out: 5, kernel: 1, stride: 1, pad: 0 }, 3, 7, Some(0.2)),
    ] {
        let what = format!("{spec:?} on {h}x{w} fp16, leaky {leaky:?}");
        let x = half(seeded(61, spec.c_in * h * w));
        let wt = half(seeded(62, spec.c_out * spec.c_in * spec.kernel * spec.kernel));
        let b = half(seeded(63, spec.c_out));
        let run = ops::conv2d_f16(&gpu, &spec, leaky, &x, h, w, &wt, Some(&b)).unwrap_or_else(|e| panic!("{what}: {e}"));
        let got = wide(&run.out);
        let p = cv::Conv2dPush::new(&spec, h, w);
        let v = cv::Conv2dVariant { kernel: spec.kernel as u32, stride: spec.stride as u32, has_bias: true, leaky };
        let mut twin = vec![f16::ZERO; run.out.len()];
        cv::conv2d_f16(&v, &p, &x, &wt, &b, &mut twin);
        // One fp16 step (2^-10 relative) covers a driver that rounds the final store toward zero.
        assert_close(&format!("{what}: shader vs twin"), &got, &wide(&twin), Tolerance::Custom { abs: 1e-7, rel: 1.0 / 1024.0 });
        let exact = run.out == twin;
        // Reference in fp32 on the same fp16-rounded inputs: only the output rounding differs.
        let (oh, ow) = spec.out_size(h, w);
        let mut reference = vec![0.0; spec.c_out * oh * ow];
        gaga_kernels::reference::conv2d(&spec, &wide(&x), h, w, &wide(&wt), Some(&wide(&b)), &mut reference);
        if let Some(s) = leaky {
            gaga_kernels::act::leaky_relu(&mut reference, s);
        }
        assert_close(&format!("{what}: shader vs reference"), &got, &reference, Tolerance::Fp16Storage);
        println!("{what}: bit-identical to the twin: {exact}; gpu {:?} ms", run.gpu_ms);
    }
    common::assert_no_validation_messages(&gpu);
}
