//! The int8 GEMM core against a naive integer product on every path this CPU runs, the rounding rule,
//! and the packed layouts (round trips, borrowing from bytes, rejected inputs).
//!
//! Integer results must be exactly equal: the products are exact and i32 sums are associative, so
//! there is no tolerance anywhere in this file.

use half::f16;

use super::*;
use crate::testing::seeded;

/// Seeded int8 values in [-127, 127].
pub(super) fn seeded_i8(seed: u64, len: usize) -> Vec<i8> {
    seeded(seed, len).iter().map(|v| (v * 127.0).round() as i8).collect()
}

fn naive(m: usize, n: usize, k: usize, a: &[i8], b: &[i8]) -> Vec<i32> {
    let mut c = vec![0i32; m * n];
    for r in 0..m {
        for j in 0..n {
            let s: i64 = (0..k).map(|q| a[r * k + q] as i64 * b[q * n + j] as i64).sum();
            c[r * n + j] = s as i32;
        }
    }
    c
}

fn product(isa: QIsa, m: usize, n: usize, k: usize, a: &[i8], b: &[i8]) -> Vec<i32> {
    let packed = PackedConv::from_i8(a, &vec![1.0; m], m, k, 1).expect("pack");
    let mut c = vec![i32::MIN; m * n];
    gemm_i32(isa, &packed, b, n, &mut c).expect("gemm_i32");
    c
}

#[test]
fn every_int8_path_equals_the_naive_integer_product_on_awkward_sizes() {
    let shapes = [(1, 1, 1), (5, 13, 3), (8, 32, 4), (13, 33, 257), (17, 1, 600), (9, 70, 1153), (24, 8, 7)];
    for isa in QIsa::available() {
        for &(m, n, k) in &shapes {
            let (a, b) = (seeded_i8(1, m * k), seeded_i8(2, k * n));
            assert_eq!(product(isa, m, n, k, &a, &b), naive(m, n, k, &a, &b), "{isa:?} {m}x{n}x{k}");
        }
    }
}

#[test]
fn extreme_values_neither_saturate_nor_overflow() {
    // +-127 everywhere: the AVX2 pair sums reach 32258, the VNNI offset sums 255 * 127 * k.
    let (m, n, k) = (9, 40, 4608);
    for (sa, sb) in [(127i8, 127i8), (127, -127), (-127, -127)] {
        let (a, b) = (vec![sa; m * k], vec![sb; k * n]);
        let want = naive(m, n, k, &a, &b);
        for isa in QIsa::available() {
            assert_eq!(product(isa, m, n, k, &a, &b), want, "{isa:?} a={sa} b={sb}");
        }
    }
}

#[test]
fn activations_round_half_to_even_and_clamp_symmetrically() {
    let cases = [(0.5, 0), (1.5, 2), (2.5, 2), (-2.5, -2), (-0.5, 0), (126.5, 126), (200.0, 127), (-200.0, -127)];
    for (x, q) in cases {
        assert_eq!(quantise(x, 1.0), q, "quantise({x})");
        assert_eq!(quantise_activation(x, ActQuant::symmetric(1.0)), q, "quantise_activation({x})");
        assert_eq!(quantise_activation(x * 0.25, ActQuant::symmetric(0.25)), q, "quantise_activation({x} / 4, 1 / 4)");
    }
    // Activations multiply by 1 / s: 1.55 / 0.1 is 15.499999 in f32 (rounds to 15), 1.55 * fl(1 / 0.1)
    // is exactly 15.5 (ties to even: 16).
    assert_eq!((quantise(1.55, 0.1), quantise_activation(1.55, ActQuant::symmetric(0.1))), (15, 16));
    assert_eq!(quantise(f32::NAN, 1.0), 0);
    assert_eq!(quantise(f32::NEG_INFINITY, 0.5), -127);
}

#[test]
fn the_zero_point_is_added_before_rounding_and_clamping() {
    let a = ActQuant { scale: 0.5, zero: -100 };
    // x / s + z, then ties to even: 1.25 / 0.5 - 100 = -97.5 -> -98; the clamp applies after the shift.
    let cases = [(0.0, -100), (1.25, -98), (-20.0, -127), (-13.5, -127), (-13.0, -126), (113.5, 127), (200.0, 127), (f32::NAN, 0)];
    for (x, q) in cases {
        assert_eq!(quantise_activation(x, a), q, "quantise_activation({x}, {a:?})");
    }
}

#[test]
fn the_dynamic_quantiser_spans_the_range_and_takes_in_zero() {
    // Empty, all-zero, all-non-finite, or too small for `1 / scale`: scale 1, no shift.
    for x in [&[][..], &[0.0, -0.0], &[f32::NAN, f32::INFINITY], &[1e-39, 0.0]] {
        assert_eq!(act_quant_for(x), ActQuant::symmetric(1.0), "{x:?}");
    }
    // A symmetric range is the symmetric scale max / 127 exactly, zero point 0.
    assert_eq!(act_quant_for(&[1.0, -254.0, 254.0, f32::NAN]), ActQuant::symmetric(2.0));
    // LeakyReLU-like: [-0.2, 1] -> scale 1.2 / 254; -0.2 maps to -127, 1 to 127.
    let a = act_quant_for(&[1.0, -0.2, 0.5]);
    assert_eq!(a.scale, 1.0 / 254.0 + 0.2 / 254.0);
    assert_eq!(a.zero, ((0.2 / a.scale).round() - 127.0) as i32);
    assert_eq!((quantise_activation(-0.2, a), quantise_activation(1.0, a)), (-127, 127));
    // All positive: the range still takes in 0, which is the lowest level.
    let a = act_quant_for(&[3.0, 5.0]);
    assert_eq!((a.scale, a.zero), (5.0 / 254.0, -127));
    assert_eq!(quantise_activation(0.0, a), -127);
    // All negative: 0 is the highest level.
    let a = act_quant_for(&[-3.0, -5.0]);
    assert_eq!((a.scale, a.zero, quantise_activation(0.0, a)), (5.0 / 254.0, 127, 127));
    // The widest finite range keeps a finite scale.
    let a = act_quant_for(&[f32::MAX, f32::MIN]);
    assert!(a.scale.is_finite() && a.zero == 0, "{a:?}");
}

#[test]
fn packed_weights_unpack_to_the_original_row_major_values() {
    let (c_out, c_in, k) = (11, 6, 3);
    let w = seeded(3, c_out * c_in * k * k);
    let f32p = PackedConv::from_f32(&w, c_out, c_in, k).expect("f32");
    assert_eq!(f32p.unpack_to_row_major(), RowMajor::F32(w.clone()));
    let h: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
    let f16p = PackedConv::from_f16(&h, c_out, c_in, k).expect("f16");
    assert_eq!(f16p.unpack_to_row_major(), RowMajor::F16(h));
    let q = seeded_i8(4, c_out * c_in * k * k);
    let scales = seeded(5, c_out).iter().map(|v| v.abs() + 0.01).collect::<Vec<_>>();
    let i8p = PackedConv::from_i8(&q, &scales, c_out, c_in, k).expect("i8");
    assert_eq!(i8p.unpack_to_row_major(), RowMajor::I8 { q, scales });
}

#[test]
fn packed_bytes_are_borrowed_back_as_the_same_weight() {
    let (c_out, c_in, k) = (9, 5, 3);
    let w = seeded(6, c_out * c_in * k * k);
    let owned = [
        PackedConv::from_f32(&w, c_out, c_in, k).expect("f32"),
        PackedConv::from_f16(&w.iter().map(|&v| f16::from_f32(v)).collect::<Vec<_>>(), c_out, c_in, k).expect("f16"),
        PackedConv::from_f32_as_i8(&w, c_out, c_in, k).expect("i8"),
    ];
    for p in &owned {
        // Copy into f32 storage so the bytes are 4-byte aligned, as in the model file.
        let mut store = vec![0f32; p.packed_bytes().len().div_ceil(4)];
        bytemuck::cast_slice_mut::<f32, u8>(&mut store)[..p.packed_bytes().len()].copy_from_slice(p.packed_bytes());
        let bytes = &bytemuck::cast_slice::<f32, u8>(&store)[..p.packed_bytes().len()];
        let back = PackedConv::from_packed_bytes(p.format(), c_out, c_in, k, bytes, p.scales()).expect("borrow");
        assert_eq!(back.unpack_to_row_major(), p.unpack_to_row_major(), "{:?}", p.format());
        assert_eq!(back.packed_bytes().as_ptr(), bytes.as_ptr(), "{:?} is borrowed, not copied", p.format());
    }
}

#[test]
fn malformed_packed_weights_are_rejected_with_the_reason() {
    let (c_out, c_in, k) = (3, 2, 1);
    let store = vec![0f32; 16];
    let bytes: &[u8] = bytemuck::cast_slice(&store);
    let err = |r: QResult<PackedConv>| r.err().map(|e| e.0).unwrap_or_default();
    assert!(err(PackedConv::from_packed_bytes(PackedFormat::F32, c_out, c_in, k, &bytes[..60], None)).contains("expected 64"));
    assert!(err(PackedConv::from_packed_bytes(PackedFormat::F16, c_out, c_in, k, &bytes[1..33], None)).contains("aligned"));
    let i8_len = 8 * 4; // one panel of 8 rows x one group of 4
    assert!(err(PackedConv::from_packed_bytes(PackedFormat::I8, c_out, c_in, k, &bytes[..i8_len], None)).contains("scales missing"));
    let bad = [1.0, f32::NAN, 1.0];
    assert!(err(PackedConv::from_packed_bytes(PackedFormat::I8, c_out, c_in, k, &bytes[..i8_len], Some(&bad))).contains("scale 1"));
    let mut neg = vec![0u8; i8_len];
    neg[5] = 0x80;
    let ok = [1.0; 3];
    assert!(err(PackedConv::from_packed_bytes(PackedFormat::I8, c_out, c_in, k, &neg, Some(&ok))).contains("-128 at byte offset 5"));
    assert!(err(PackedConv::from_i8(&[0, 1, -128, 0, 0, 0], &ok, c_out, c_in, k)).contains("-128"));
    assert!(err(PackedConv::from_f32(&[0.0; 5], c_out, c_in, k)).contains("needs 6"));
    assert!(err(PackedConv::from_f32(&[0.0; 12], c_out, c_in, 2)).contains("odd"));
}

#[test]
fn the_detected_kernels_are_the_ones_the_environment_expects() {
    // scripts/test-aarch64.sh names the kernels each emulated CPU model must detect.
    if let Ok(want) = std::env::var("GAGA_EXPECT_QISA") {
        assert_eq!(format!("{:?}", QIsa::available()), want);
    }
}

#[test]
fn the_vectorised_range_equals_a_plain_fold_ignoring_non_finite_values() {
    // Lengths around the 64-lane blocks, the four-stream split (16,400 = 4 x 4,096 + 16) and the parallel
    // split; NaN / inf / -inf / -0 at block edges.
    for len in [0usize, 1, 63, 64, 65, 200, 1000, 16_400, (1 << 16) + 17] {
        let mut x: Vec<f32> = seeded(9, len).iter().map(|v| v * 5.0).collect();
        for (i, bad) in [(0, f32::NAN), (63, f32::INFINITY), (64, f32::NEG_INFINITY), (len / 2, f32::NAN), (len.saturating_sub(1), -0.0)] {
            if let Some(v) = x.get_mut(i) {
                *v = bad;
            }
        }
        let want = x.iter().filter(|v| v.is_finite()).fold(0f32, |m, v| m.max(v.abs()));
        let s = if want > 0.0 { want / 127.0 } else { 1.0 };
        assert_eq!(weight_scale_for(&x).to_bits(), s.to_bits(), "len {len} (weight_scale_for)");
        let (lo, hi) = x.iter().filter(|v| v.is_finite()).fold((0f32, 0f32), |(l, h), &v| (l.min(v), h.max(v)));
        let r = range_f32(&x);
        assert_eq!((r.lo.to_bits(), r.hi.to_bits()), ((lo + 0.0).to_bits(), (hi + 0.0).to_bits()), "len {len} (range_f32)");
        let r = range_of(&x);
        assert_eq!((r.lo.to_bits(), r.hi.to_bits()), ((lo + 0.0).to_bits(), (hi + 0.0).to_bits()), "len {len} (range_of)");
        let r = range_plain(&x);
        assert_eq!((r.lo.to_bits(), r.hi.to_bits()), ((lo + 0.0).to_bits(), (hi + 0.0).to_bits()), "len {len} (range_plain)");
        let h: Vec<half::f16> = x.iter().map(|&v| half::f16::from_f32(v)).collect();
        let (hl, hh) = h.iter().map(|v| v.to_f32()).filter(|v| v.is_finite()).fold((0f32, 0f32), |(l, m), v| (l.min(v), m.max(v)));
        assert_eq!(range_of(&h), Range { lo: hl, hi: hh }, "len {len} (f16 range)");
    }
}
