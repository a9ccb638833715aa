//! Packed convolutions and linear layers against the plain references, and against each other.
//!
//! - int8, every kernel: f32 outputs bitwise equal (exact integers, shared epilogue).
//! - int8 vs the f32 convolution with **dequantised weights** on the **unquantised** input: the only error
//!   left is activation rounding, `|x - q s| <= s / 2` per tap, so output `o` may differ by at most
//!   `s / 2 * sum |w_deq[o, ..]|`, plus 1e-5 relative for f32 summation (the bound used below).
//! - fp16 storage: bitwise equal to the fp32 kernels on f16-rounded weights (same micro-kernels, same
//!   order); fp32 within `Tolerance::Fp32` of `reference::conv2d`.

use half::f16;

use super::tests::seeded_i8;
use super::*;
use crate::conv::Conv2d;
use crate::reference;
use crate::scratch::Scratch;
use crate::sgemm::Isa;
use crate::testing::{assert_close, seeded, Tolerance};

/// (c_in, c_out, k, h, w): channel and row tails, 1x1 maps, several inner blocks (64 * 9 > 256).
const SHAPES: &[(usize, usize, usize, usize, usize)] =
    &[(3, 5, 3, 7, 9), (16, 8, 3, 8, 8), (13, 17, 1, 5, 11), (33, 9, 3, 1, 1), (64, 24, 3, 12, 40), (4, 3, 1, 1, 37)];

struct Case {
    c_in: usize,
    c_out: usize,
    k: usize,
    h: usize,
    w: usize,
    x: Vec<f32>,
    wt: Vec<f32>,
    bias: Vec<f32>,
}

fn case(&(c_in, c_out, k, h, w): &(usize, usize, usize, usize, usize)) -> Case {
    let x = seeded(11, c_in * h * w).iter().map(|v| v * 3.0).collect();
    Case { c_in, c_out, k, h, w, x, wt: seeded(12, c_out * c_in * k * k), bias: seeded(13, c_out) }
}

fn run(p: &PackedConv, kernel: Kernel, c: &Case, s: Option<ActQuant>) -> Vec<f32> {
    let mut out = vec![f32::NAN; c.c_out * c.h * c.w];
    p.run_on(kernel, &mut Scratch::new(), &c.x, c.h, c.w, s, Some(&c.bias), &mut out).expect("run");
    out
}

fn reference_conv(c: &Case, wt: &[f32]) -> Vec<f32> {
    let spec = Conv2d { c_in: c.c_in, c_out: c.c_out, kernel: c.k, stride: 1, pad: c.k / 2 };
    let mut out = vec![0f32; c.c_out * c.h * c.w];
    reference::conv2d(&spec, &c.x, c.h, c.w, wt, Some(&c.bias), &mut out);
    out
}

#[test]
fn int8_convolutions_are_bitwise_equal_on_every_kernel() {
    for sh in SHAPES {
        let c = case(sh);
        let p = PackedConv::from_f32_as_i8(&c.wt, c.c_out, c.c_in, c.k).expect("pack");
        for s in QUANTISERS {
            let want = run(&p, Kernel::I8(QIsa::Portable), &c, s);
            for isa in QIsa::available() {
                let got = run(&p, Kernel::I8(isa), &c, s);
                assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{isa:?} {sh:?} scale {s:?}");
            }
        }
    }
}

/// The fixed quantisers the int8 tests run besides the dynamic one (`None`): symmetric at scale 0.02, which
/// saturates many inputs at +-127, and the same scale shifted by a zero point of 60 (the padding must then
/// be the byte 60, not 0).
const QUANTISERS: [Option<ActQuant>; 3] = [None, Some(ActQuant { scale: 0.02, zero: 0 }), Some(ActQuant { scale: 0.02, zero: 60 })];

/// The int8 convolution written out: each input tap quantised to `q - zero` (0 outside the map, where
/// `x = 0`), exact i32 sums, then the shared epilogue `(acc as f32) * (scale[o] * s) + bias[o]`.
fn naive_int8_conv(c: &Case, q: &[i8], scales: &[f32], a: ActQuant) -> Vec<f32> {
    let (k, p) = (c.k, c.k / 2);
    let mut out = vec![0f32; c.c_out * c.h * c.w];
    for o in 0..c.c_out {
        for y in 0..c.h {
            for x in 0..c.w {
                let mut acc = 0i32;
                for ci in 0..c.c_in {
                    for ky in 0..k {
                        for kx in 0..k {
                            let (sy, sx) = ((y + ky).wrapping_sub(p), (x + kx).wrapping_sub(p));
                            if sy < c.h && sx < c.w {
                                let v = quantise_activation(c.x[(ci * c.h + sy) * c.w + sx], a) as i32 - a.zero;
                                acc += v * q[((o * c.c_in + ci) * k + ky) * k + kx] as i32;
                            }
                        }
                    }
                }
                out[(o * c.h + y) * c.w + x] = (acc as f32) * (scales[o] * a.scale) + c.bias[o];
            }
        }
    }
    out
}

#[test]
fn int8_convolutions_equal_the_written_out_integer_convolution_bit_for_bit() {
    // Exact integers and one epilogue: no tolerance. Each shape also runs on a LeakyReLU-like input
    // (negatives x 0.2), whose dynamic zero point is far from 0.
    for sh in SHAPES.iter().chain(&[(7, 9, 3, 3, 70), (8, 8, 3, 2, 1)]) {
        for leaky in [false, true] {
            let mut c = case(sh);
            if leaky {
                c.x.iter_mut().filter(|v| **v < 0.0).for_each(|v| *v *= 0.2);
                assert!(act_quant_for(&c.x).zero < -50, "{sh:?}: {:?}", act_quant_for(&c.x));
            }
            let p = PackedConv::from_f32_as_i8(&c.wt, c.c_out, c.c_in, c.k).expect("pack");
            let RowMajor::I8 { q, scales } = p.unpack_to_row_major() else { panic!("not int8") };
            for s in QUANTISERS {
                let want = naive_int8_conv(&c, &q, &scales, s.unwrap_or_else(|| act_quant_for(&c.x)));
                for isa in QIsa::available() {
                    let got = run(&p, Kernel::I8(isa), &c, s);
                    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                        assert_eq!(a.to_bits(), b.to_bits(), "{isa:?} {sh:?} leaky {leaky} {s:?} element {i}: {a} vs {b}");
                    }
                }
            }
        }
    }
}

/// The case's weight packed as int8 and its dequantised values `[c_out, c_in * k * k]`.
fn dequantised(c: &Case) -> (PackedConv<'static>, Vec<f32>) {
    let p = PackedConv::from_f32_as_i8(&c.wt, c.c_out, c.c_in, c.k).expect("pack");
    let RowMajor::I8 { q, scales } = p.unpack_to_row_major() else { panic!("not int8") };
    let row = c.c_in * c.k * c.k;
    (p, q.iter().enumerate().map(|(i, &v)| v as f32 * scales[i / row]).collect())
}

/// Checks every output of `got` against the f32 conv with the dequantised weights `deq`: activation
/// rounding of at most `per_tap` per input value bounds output `o` by `per_tap * sum |deq[o, ..]|`, plus
/// 1e-5 relative for f32 summation. Returns the largest error.
fn within_rounding_bound(c: &Case, got: &[f32], deq: &[f32], per_tap: f32, what: &str) -> f32 {
    let (row, plane) = (c.c_in * c.k * c.k, c.h * c.w);
    let mut worst = 0f32;
    for (i, (g, r)) in got.iter().zip(&reference_conv(c, deq)).enumerate() {
        let o = i / plane;
        let l1: f32 = deq[o * row..(o + 1) * row].iter().map(|v| v.abs()).sum();
        let bound = per_tap * l1 + 1e-5 * r.abs().max(1.0);
        assert!((g - r).abs() <= bound, "{what} element {i}: {g} vs f32 {r}, bound {bound}");
        worst = worst.max((g - r).abs());
    }
    worst
}

#[test]
fn int8_convolutions_stay_within_the_activation_rounding_bound_of_the_dequantised_f32_conv() {
    for sh in SHAPES {
        let c = case(sh);
        let (p, deq) = dequantised(&c);
        let got = run(&p, Kernel::I8(QIsa::detect()), &c, None);
        within_rounding_bound(&c, &got, &deq, act_quant_for(&c.x).scale / 2.0, &format!("{sh:?} int8"));
    }
}

/// `run_fine`: every int8 kernel gives the same bits, each output lies within the two-pass rounding
/// bound (`s / 508` per tap instead of `s / 2`) of the f32 conv with dequantised weights, the largest
/// error is at least 20x below one pass's, and a warmed-up call grows no scratch.
#[test]
fn fine_int8_convolutions_cut_activation_rounding_127x_on_every_kernel() {
    for sh in SHAPES {
        let c = case(sh);
        let (p, deq) = dequantised(&c);
        let s = act_quant_for(&c.x).scale;
        let mut scratch = Scratch::new();
        let fine = |kernel: Kernel, scratch: &mut Scratch| {
            let mut out = vec![f32::NAN; c.c_out * c.h * c.w];
            p.run_fine_on(kernel, scratch, &c.x, c.h, c.w, None, Some(&c.bias), &mut out).expect("fine");
            out
        };
        let got = fine(Kernel::I8(QIsa::Portable), &mut scratch);
        for isa in QIsa::available() {
            let other = fine(Kernel::I8(isa), &mut scratch);
            assert!(other.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits()), "{isa:?} {sh:?}");
        }
        let grown = scratch.capacity();
        fine(Kernel::I8(QIsa::detect()), &mut scratch);
        assert_eq!(scratch.capacity(), grown, "{sh:?}: a warmed-up call grew the scratch");
        let worst_fine = within_rounding_bound(&c, &got, &deq, s / 508.0, &format!("{sh:?} fine"));
        let one = run(&p, Kernel::I8(QIsa::detect()), &c, None);
        let worst_one = within_rounding_bound(&c, &one, &deq, s / 2.0, &format!("{sh:?} one pass"));
        assert!(worst_fine * 20.0 <= worst_one, "{sh:?}: fine {worst_fine} vs one pass {worst_one}");
    }
}

#[test]
fn fp16_storage_equals_fp32_on_rounded_weights_and_fp32_matches_the_reference() {
    for sh in SHAPES {
        let c = case(sh);
        let h: Vec<f16> = c.wt.iter().map(|&v| f16::from_f32(v)).collect();
        let rounded: Vec<f32> = h.iter().map(|v| v.to_f32()).collect();
        let p16 = PackedConv::from_f16(&h, c.c_out, c.c_in, c.k).expect("f16");
        let p32 = PackedConv::from_f32(&rounded, c.c_out, c.c_in, c.k).expect("f32");
        let want = reference_conv(&c, &rounded);
        for isa in Isa::available() {
            let (a, b) = (run(&p16, Kernel::Float(isa), &c, None), run(&p32, Kernel::Float(isa), &c, None));
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "{isa:?} {sh:?}: f16 vs f32 bits");
            assert_close(&format!("{isa:?} {sh:?}"), &b, &want, Tolerance::Fp32);
        }
    }
}

/// The task splits of `plan.rs` (output panels split across tasks when a map has few columns) and
/// the padded plane stride of large maps change no bit: 1, 2 and 3 threads, every kernel, against the
/// written-out integer convolution.
#[test]
fn panel_split_tasks_and_padded_planes_equal_the_written_out_conv_at_1_2_and_3_threads() {
    use super::conv::plane_stride;
    use super::plan::Plan;
    // (c_in, c_out, k, h, w): one strip and 9 panels; a 1x1 with 25 panels and 2 strips (AVX2: 8 +
    // tail); a 68 x 72 plane (4,896 words) that is padded, with 66 x 70 outputs in many blocks.
    let shapes = [(64, 72, 3, 3, 2), (16, 200, 1, 4, 4), (8, 20, 3, 66, 70)];
    assert!(Plan::new(3 * 4, 32, 9, 2).chunks > 1 && Plan::new(3 * 4, 8, 9, 3).chunks > 1, "the first shape splits panels");
    assert!(plane_stride(68 * 72) > 68 * 72, "the last shape pads its planes");
    let pools: Vec<rayon::ThreadPool> = (1..=3).map(|n| rayon::ThreadPoolBuilder::new().num_threads(n).build().expect("pool")).collect();
    for sh in shapes {
        let c = case(&sh);
        let p = PackedConv::from_f32_as_i8(&c.wt, c.c_out, c.c_in, c.k).expect("pack");
        let RowMajor::I8 { q, scales } = p.unpack_to_row_major() else { panic!("not int8") };
        let want = naive_int8_conv(&c, &q, &scales, act_quant_for(&c.x));
        for isa in QIsa::available() {
            for (t, pool) in pools.iter().enumerate() {
                let got = pool.install(|| run(&p, Kernel::I8(isa), &c, None));
                for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(a.to_bits(), b.to_bits(), "{isa:?} {sh:?} {} threads, element {i}: {a} vs {b}", t + 1);
                }
            }
        }
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let c = case(&(24, 16, 3, 20, 30));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool");
    let pool1 = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
    let p8 = PackedConv::from_f32_as_i8(&c.wt, c.c_out, c.c_in, c.k).expect("i8");
    let p16 = PackedConv::from_f16(&c.wt.iter().map(|&v| f16::from_f32(v)).collect::<Vec<_>>(), c.c_out, c.c_in, c.k).expect("f16");
    for (p, kernel) in [(&p8, Kernel::I8(QIsa::detect())), (&p16, Kernel::Float(Isa::detect()))] {
        let one = pool1.install(|| run(p, kernel, &c, None));
        let two = pool.install(|| run(p, kernel, &c, None));
        assert!(one.iter().zip(&two).all(|(a, b)| a.to_bits() == b.to_bits()), "{kernel:?}");
    }
}

#[test]
fn linear_layers_match_the_reference_in_every_format() {
    for &(rows, c_in, c_out) in &[(1, 512, 64), (3, 37, 19)] {
        let x = seeded(21, rows * c_in);
        let (wt, bias) = (seeded(22, c_out * c_in), seeded(23, c_out));
        let mut want = vec![0f32; rows * c_out];
        reference::linear(&x, rows, c_in, &wt, Some(&bias), c_out, &mut want);
        let mut got = vec![0f32; rows * c_out];
        let mut scratch = Scratch::new();
        let p32 = PackedConv::from_f32(&wt, c_out, c_in, 1).expect("f32");
        p32.linear(&mut scratch, &x, rows, None, Some(&bias), &mut got).expect("f32 linear");
        assert_close("f32 linear", &got, &want, Tolerance::Fp32);
        // int8: the bound of the conv test, with the largest row's l1 norm of the weight.
        let p8 = PackedConv::from_f32_as_i8(&wt, c_out, c_in, 1).expect("i8");
        p8.linear(&mut scratch, &x, rows, None, Some(&bias), &mut got).expect("i8 linear");
        let l1 = wt.chunks(c_in).map(|r| r.iter().map(|v| v.abs()).sum::<f32>()).fold(0f32, f32::max);
        let (s, wmax) = (act_quant_for(&x).scale, wt.iter().fold(0f32, |m, v| m.max(v.abs())));
        let xmax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        // Weight rounding (<= wmax / 254 per weight) times max|x|, plus activation rounding.
        let bound = (wmax / 254.0) * c_in as f32 * xmax + s / 2.0 * l1 * 1.01;
        assert_close("i8 linear", &got, &want, Tolerance::Custom { abs: bound, rel: 0.0 });
    }
}

#[test]
fn bad_calls_return_errors_naming_the_argument() {
    let c = case(&(4, 3, 3, 5, 5));
    let p = PackedConv::from_f32_as_i8(&c.wt, c.c_out, c.c_in, c.k).expect("pack");
    let mut s = Scratch::new();
    let mut out = vec![0f32; 3 * 25];
    let e = |r: QResult<()>| r.err().map(|e| e.0).unwrap_or_default();
    assert!(e(p.run(&mut s, &c.x[1..], 5, 5, None, None, &mut out)).contains("input"));
    assert!(e(p.run(&mut s, &c.x, 5, 5, None, Some(&[0.0; 2]), &mut out)).contains("bias"));
    assert!(e(p.run(&mut s, &c.x, 5, 5, Some(ActQuant::symmetric(0.0)), None, &mut out)).contains("activation scale"));
    assert!(e(p.run(&mut s, &c.x, 5, 5, Some(ActQuant { scale: 1.0, zero: 128 }), None, &mut out)).contains("zero point: 128"));
    assert!(e(p.run(&mut s, &c.x, 5, 5, None, None, &mut out[1..])).contains("output"));
    assert!(e(p.run_on(Kernel::Float(Isa::Portable), &mut s, &c.x, 5, 5, None, None, &mut out)).contains("cannot run"));
    assert!(e(p.linear(&mut s, &c.x, 1, None, None, &mut out)).contains("kernel size 3"));
}

#[test]
fn warmed_up_calls_do_not_grow_the_scratch() {
    let c = case(&(16, 8, 3, 16, 16));
    let mut s = Scratch::new();
    let mut out = vec![0f32; c.c_out * c.h * c.w];
    for p in [PackedConv::from_f32_as_i8(&c.wt, 8, 16, 3).expect("i8"), PackedConv::from_f32(&c.wt, 8, 16, 3).expect("f32")] {
        p.run(&mut s, &c.x, c.h, c.w, None, Some(&c.bias), &mut out).expect("first");
        let cap = s.capacity();
        p.run(&mut s, &c.x, c.h, c.w, None, Some(&c.bias), &mut out).expect("second");
        assert_eq!(s.capacity(), cap, "{:?}", p.format());
    }
}

#[test]
fn int8_weights_roundtrip_quantisation_within_half_a_step() {
    let w = seeded(31, 6 * 20);
    let (q, scales) = quantise_rows(&w, 6, 20).expect("quantise");
    for (i, (&v, &qi)) in w.iter().zip(&q).enumerate() {
        let s = scales[i / 20];
        assert!((v - qi as f32 * s).abs() <= s / 2.0 * 1.0001, "weight {i}: {v} vs {qi} * {s}");
    }
    let _ = seeded_i8(1, 1);
}

#[test]
fn float_1x1_rows_read_in_place_give_the_whole_maps_bits_on_every_kernel() {
    // 32 -> 16 like the refiner's first conv; bands of 16 and 2 rows (whole strips on every kernel),
    // and bands whose pixels do not fill a strip (refused, nothing written): 2 rows of 36 are 72 pixels,
    // whole strips of 8 but not of 32.
    let (c_in, c_out, h, w) = (32, 16, 24, 36);
    let (mut ran_any, mut refused_any) = (false, false);
    let c = case(&(c_in, c_out, 1, h, w));
    let halves: Vec<f16> = c.wt.iter().map(|&v| f16::from_f32(v)).collect();
    for p in [PackedConv::from_f16(&halves, c_out, c_in, 1).expect("f16"), PackedConv::from_f32(&c.wt, c_out, c_in, 1).expect("f32")] {
        for isa in Isa::available() {
            let whole = run(&p, Kernel::Float(isa), &c, None);
            let mut s = Scratch::new();
            for rows in [16usize, 2] {
                for y0 in (0..h).step_by(rows) {
                    let n = rows.min(h - y0);
                    let mut out = vec![f32::NAN; c_out * n * w];
                    let ran = fconv::run_float_rows(isa, &p, &mut s, &c.x, (h, w), (y0, n), Some(&c.bias), &mut out).expect("rows");
                    assert_eq!(ran, (n * w) % isa.nr() == 0, "{isa:?} rows {y0}+{n}: in place iff whole strips");
                    (ran_any, refused_any) = (ran_any || ran, refused_any || !ran);
                    if !ran {
                        assert!(out.iter().all(|v| v.is_nan()), "{isa:?}: a refused band wrote its output");
                        continue;
                    }
                    for o in 0..c_out {
                        let want = &whole[o * h * w + y0 * w..][..n * w];
                        let got = &out[o * n * w..][..n * w];
                        assert!(
                            want.iter().zip(got).all(|(a, b)| a.to_bits() == b.to_bits()),
                            "{isa:?} {:?} rows {y0}+{n} channel {o}: not the whole map's bits",
                            p.format()
                        );
                    }
                }
            }
        }
    }
    assert!(ran_any, "no band ran in place");
    assert!(refused_any || !Isa::available().iter().any(|i| i.nr() > 8), "no band was refused");
    // A 3x3 weight or an int8 one is refused through the public entry (the caller copies the band).
    let p3 = PackedConv::from_f32(&seeded(14, 4 * 4 * 9), 4, 4, 3).expect("3x3");
    let x = seeded(15, 4 * 8 * 16);
    let mut out = vec![0f32; 4 * 2 * 16];
    assert!(!p3.run_float_rows(&mut Scratch::new(), &x, (8, 16), (0, 2), None, &mut out).expect("3x3"));
    let p8 = PackedConv::from_f32_as_i8(&c.wt, c_out, c_in, 1).expect("i8");
    let mut out = vec![0f32; c_out * 16 * w];
    assert!(!p8.run_float_rows(&mut Scratch::new(), &c.x, (h, w), (0, 16), None, &mut out).expect("i8"));
    // Rows past the map are an error naming them.
    let e = p3.run_float_rows(&mut Scratch::new(), &x, (8, 16), (7, 2), None, &mut out).expect_err("rows past the map");
    assert!(e.0.contains("rows 7..9"), "{}", e.0);
}
