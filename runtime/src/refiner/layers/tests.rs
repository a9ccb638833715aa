//! Tests of `layers.rs`: fused paths against the plain passes (bit for bit), stored linears.

use super::*;
use crate::weights::{Stored, WeightMap};
use gaga_kernels::qgemm::quantise_rows;
use gaga_kernels::testing::{assert_close, seeded, Tolerance};

/// `fc.weight` stored as `dtype` (int8: one scale per row); `f32()` gives the dequantised values.
struct One {
    plain: WeightMap,
    stored: Stored<'static>,
}

impl Weights for One {
    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        self.plain.shape(name)
    }
    fn f32(&self, name: &str) -> Result<Cow<'_, [f32]>> {
        self.plain.f32(name)
    }
    fn stored(&self, name: &str) -> Result<Stored<'_>> {
        if name == "fc.weight" {
            return Ok(self.stored.clone());
        }
        self.plain.stored(name)
    }
}

fn one(dtype: DType, out_f: usize, in_f: usize) -> One {
    let mut v = seeded(11, out_f * in_f);
    let (bytes, scales, axis) = match dtype {
        DType::F16 => {
            let h: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
            v = h.iter().map(|x| x.to_f32()).collect();
            (h.iter().flat_map(|x| x.to_le_bytes()).collect(), None, None)
        }
        _ => {
            let (q, s) = quantise_rows(&v, out_f, in_f).expect("quantise");
            v = q.iter().enumerate().map(|(i, &x)| x as f32 * s[i / in_f]).collect();
            (q.iter().map(|&x| x as u8).collect(), Some(Cow::Owned(s)), Some(0))
        }
    };
    let mut plain = WeightMap::default();
    plain.insert("fc.weight", vec![out_f, in_f], v);
    plain.insert("fc.bias", vec![out_f], seeded(12, out_f));
    let stored = Stored { dtype, layout: Layout::RowMajor, shape: vec![out_f, in_f], bytes: Cow::Owned(bytes), scales, quant_axis: axis };
    One { plain, stored }
}

/// The block's output for `x`, observed (recording each conv input: the separate passes) or not (the
/// zero-sized observer: the fused skip pass).
fn resblock_bits(b: &ResBlock, x: &[f32], h: usize, observe: bool) -> (Vec<u32>, Vec<String>) {
    let (ci, co, h2) = (b.conv1.spec.c_in, b.conv2.spec.c_out, b.out_side(h));
    let big = ci.max(co) * h.max(h2) * h.max(h2);
    let (mut t1, mut t2, mut out) = (vec![0f32; big], vec![0f32; big], vec![0f32; co * h2 * h2]);
    let mut seen = Vec::new();
    let mut s = Scratch::new();
    let run = if observe {
        b.run(&mut s, x, h, &mut t1, &mut t2, &mut out, &mut |n: &str, _: &[f32]| seen.push(n.to_string()), true)
    } else {
        b.run(&mut s, x, h, &mut t1, &mut t2, &mut out, &mut |_: &str, _: &[f32]| {}, false)
    };
    run.expect("block runs");
    (out.iter().map(|v| v.to_bits()).collect(), seen)
}

#[test]
fn a_resblock_gives_the_same_bits_with_its_skip_pass_fused_or_separate() {
    // Exact equality: the fused skip pass claims the separate passes' arithmetic. 12 -> 9 channels
    // leaves a partial 8-row panel; sides 10 <-> 20 and 40 -> 20 leave partial 16-lane pixel blocks.
    let (ci, co) = (12, 9);
    let mut w = WeightMap::default();
    for (name, shape) in [
        ("b.conv1.weight", vec![ci, ci, 3, 3]),
        ("b.conv1.bias", vec![ci]),
        ("b.conv2.weight", vec![co, ci, 3, 3]),
        ("b.conv2.bias", vec![co]),
        ("b.skip.weight", vec![co, ci, 1, 1]),
    ] {
        let n = shape.iter().product();
        w.insert(name, shape, seeded(name.len() as u64 + n as u64, n));
    }
    for (up, h) in [(true, 10), (false, 20), (false, 40)] {
        let b = ResBlock::load(&w, "b", ci, co, up).expect("loads");
        assert!(matches!(b.skip.kernel, ConvKernel::F32(_)), "an fp32 1x1 skip (the fused pass's case)");
        let x = seeded(60 + h as u64, ci * h * h);
        let (fused, none) = resblock_bits(&b, &x, h, false);
        let (plain, seen) = resblock_bits(&b, &x, h, true);
        assert!(none.is_empty());
        assert_eq!(seen, ["b.conv1.weight", "b.conv2.weight", "b.skip.weight"], "every conv input observed");
        assert!(fused == plain, "up {up}, side {h}: the fused skip pass changed a bit");
    }
}

#[test]
fn a_condition_branch_combined_in_the_output_transform_gives_the_bits_of_the_plain_passes() {
    // Exact equality: the epilogues claim the separate passes' arithmetic. 20x20 runs Winograd (the
    // fused path), 8x8 the direct convolution (the fallback); 5 -> 10 channels leave partial panels.
    let c = 5;
    let mut w = WeightMap::default();
    for (name, shape) in
        [("c.0.weight", vec![c, c, 3, 3]), ("c.0.bias", vec![c]), ("c.2.weight", vec![2 * c, c, 3, 3]), ("c.2.bias", vec![2 * c])]
    {
        let n = shape.iter().product();
        w.insert(name, shape, seeded(name.len() as u64 + n as u64, n));
    }
    let b = Condition::load(&w, "c", c).expect("loads");
    let mut s = Scratch::new();
    for h in [20, 8] {
        let x = seeded(80 + h as u64, c * h * h);
        let e0 = seeded(90 + h as u64, 2 * c * h * h);
        let (mut t, mut branch) = (vec![0f32; c * h * h], vec![0f32; 2 * c * h * h]);
        b.conv0.run(&mut s, &x, h, h, &mut t, &mut |_: &str, _: &[f32]| {}).expect("runs");
        leaky_relu(&mut t, SLOPE);
        b.conv2.run(&mut s, &t, h, h, &mut branch, &mut |_: &str, _: &[f32]| {}).expect("runs");
        let plain: [(Epilogue, Vec<f32>); 3] = [
            (Epilogue::Store, branch.clone()),
            (Epilogue::MulInto, e0.iter().zip(&branch).map(|(e, v)| e * v).collect()),
            (Epilogue::AddInto, e0.iter().zip(&branch).map(|(e, v)| e + v).collect()),
        ];
        for (epi, want) in plain {
            let (mut tmp, mut cx, mut e) = (vec![0f32; c * h * h], vec![0f32; 2 * c * h * h], e0.clone());
            let mut seen = Vec::new();
            b.apply(&mut s, &x, h, &mut tmp, &mut cx, &mut e, epi, &mut |n: &str, _: &[f32]| seen.push(n.to_string())).expect("runs");
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert!(bits(&e) == bits(&want), "side {h}, {epi:?}: a bit changed");
            assert_eq!(seen, ["c.0.weight", "c.2.weight"], "both conv inputs observed");
        }
    }
}

#[test]
fn an_fp32_refiner_gives_the_same_frame_observed_and_not() {
    // `run` takes the fused ResBlock skip passes, `run_observed` the separate ones: bit-identical.
    let cfg = crate::config::ModelConfig::small();
    let mut w = WeightMap::default();
    crate::refiner::testing::insert_seeded_refiner(&mut w, &cfg, 5);
    let mut r = crate::refiner::Refiner::new(&w, &cfg, crate::refiner::NoiseMode::Stored).expect("loads");
    let s = r.size();
    let x = seeded(8, cfg.refiner.in_channels * s * s);
    let (mut plain, mut observed) = (vec![0f32; 3 * s * s], vec![0f32; 3 * s * s]);
    r.run(&x, &mut plain).expect("runs");
    let mut n = 0;
    r.run_observed(&x, &mut observed, &mut |_, _| n += 1).expect("runs");
    assert!(n > 0 && plain == observed, "observing changed the frame");
}

#[test]
fn stored_fp16_and_int8_linears_match_the_f32_kernel_on_the_dequantised_weights() {
    // 37 inputs: four blocks of 8 and a tail of 5, so both paths of `dot` run.
    let (out_f, in_f) = (9, 37);
    let x = seeded(13, in_f);
    for dtype in [DType::F16, DType::I8] {
        let w = one(dtype, out_f, in_f);
        let mut want = vec![0f32; out_f];
        linear(&x, 1, in_f, &w.plain.f32("fc.weight").expect("w"), Some(&w.plain.f32("fc.bias").expect("b")), out_f, &mut want);
        let mut got = vec![0f32; out_f];
        Linear::load(&w, "fc", out_f, in_f).expect("loads").run(&x, &mut got);
        // Same weight values, only the summation order differs: a few f32 ulps of sums of 37 terms
        // of magnitude <= 1.
        assert_close(&format!("{dtype:?} linear"), &got, &want, Tolerance::Custom { abs: 1e-5, rel: 1e-5 });
    }
}

#[test]
fn a_linear_with_the_wrong_shape_or_scales_is_an_error_naming_the_tensor() {
    let w = one(DType::I8, 4, 8);
    let e = Linear::load(&w, "fc", 8, 4).err().expect("transposed shape");
    assert!(e.to_string().contains("fc.weight"), "{e}");
    let mut bad = one(DType::I8, 4, 8);
    bad.stored.scales = Some(Cow::Owned(vec![1.0; 3]));
    let e = Linear::load(&bad, "fc", 4, 8).err().expect("three scales for four rows");
    assert!(e.to_string().contains("fc.weight") && e.to_string().contains("4 scales"), "{e}");
}
