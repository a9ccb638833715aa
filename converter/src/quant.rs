//! Per-output-channel symmetric int8 (TFLite's weight scheme: values in [-127, 127], zero point 0,
//! one fp32 scale per channel along the output axis) and fp16 storage.

/// Quantises row-major `values` of `shape` along `axis`. Returns the int8 values and one scale per
/// channel; `value ~= q * scale`, with |error| <= scale / 2 for every element.
pub fn quantise_i8(values: &[f32], shape: &[usize], axis: usize) -> (Vec<i8>, Vec<f32>) {
    let channels = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let channel = |i: usize| (i / inner.max(1)) % channels.max(1);
    let mut max = vec![0f32; channels];
    for (i, v) in values.iter().enumerate() {
        let c = channel(i);
        max[c] = max[c].max(v.abs());
    }
    // A zero channel gets scale 0: it dequantises to exact zeros.
    let scales: Vec<f32> = max.iter().map(|m| m / 127.0).collect();
    let q = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let s = scales[channel(i)];
            if s > 0.0 {
                (v / s).round().clamp(-127.0, 127.0) as i8
            } else {
                0
            }
        })
        .collect();
    (q, scales)
}

/// Little-endian fp16 bytes, rounded to nearest even (values beyond fp16's range become infinite,
/// which the policy avoids by keeping unbounded tensors at fp32).
pub fn to_f16_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect()
}

pub fn to_f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeded values in [-1, 1) with a different magnitude per channel, including an all-zero channel.
    fn weights(shape: &[usize], axis: usize) -> Vec<f32> {
        let n: usize = shape.iter().product();
        let inner: usize = shape[axis + 1..].iter().product();
        let raw = seeded_values(n);
        raw.iter().enumerate().map(|(i, v)| v * ((i / inner) % shape[axis]) as f32 * 0.37).collect()
    }

    fn seeded_values(n: usize) -> Vec<f32> {
        let mut s = 0x2545_f491_4f6c_dd1du64;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    #[test]
    fn int8_error_is_within_half_a_step_per_channel() {
        for (shape, axis) in [(vec![7usize, 5, 3, 3], 0usize), (vec![1, 6, 4, 3, 3], 1), (vec![5, 4, 2, 2], 1), (vec![13, 9], 0)] {
            let w = weights(&shape, axis);
            let (q, scales) = quantise_i8(&w, &shape, axis);
            assert_eq!(scales.len(), shape[axis]);
            let inner: usize = shape[axis + 1..].iter().product();
            for (i, (&v, &qi)) in w.iter().zip(&q).enumerate() {
                let s = scales[(i / inner) % shape[axis]];
                // Round-to-nearest leaves at most half a step; 1e-6 covers the f32 division.
                assert!((qi as f32 * s - v).abs() <= s * 0.5 + 1e-6, "shape {shape:?} element {i}: {v} -> {qi} x {s}");
                assert!((-127..=127).contains(&qi));
            }
        }
    }

    #[test]
    fn all_zero_channel_dequantises_to_zero() {
        let (q, s) = quantise_i8(&[0.0, 0.0, 1.0, -2.0], &[2, 2], 0);
        assert_eq!(s[0], 0.0);
        assert_eq!(&q[..2], &[0, 0]);
        assert_eq!(&q[2..], &[64, -127]);
    }

    #[test]
    fn fp16_round_trip_is_within_half_an_ulp() {
        let v = seeded_values(1000);
        let b = to_f16_bytes(&v);
        for (i, x) in v.iter().enumerate() {
            let y = half::f16::from_le_bytes([b[2 * i], b[2 * i + 1]]).to_f32();
            // fp16 has an 11-bit significand: relative error <= 2^-11 for normal values, and the
            // absolute spacing near zero is 2^-24 (subnormals).
            assert!((x - y).abs() <= x.abs() * 2f32.powi(-11) + 2f32.powi(-25), "{x} -> {y}");
        }
    }
}
