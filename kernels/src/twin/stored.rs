//! Twin of `kernels/shaders/stored_weights.glsl`: weights read exactly as the model file stores them,
//! from 32-bit words (fp32; two fp16 per word, low half first; four int8 per word, lowest byte first).
//! Every decode is exact, so shader and twin agree to the bit. Int8 scales are applied by the caller.

use half::f16;

/// The shaders' `WTYPE` specialization constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightType {
    F32 = 0,
    F16 = 1,
    /// Symmetric int8 with one fp32 scale per output channel (applied after the sum).
    I8 = 2,
}

impl WeightType {
    /// Bytes per stored element.
    pub fn size(self) -> usize {
        match self {
            WeightType::F32 => 4,
            WeightType::F16 => 2,
            WeightType::I8 => 1,
        }
    }
}

/// Element `idx` of a stored weight, widened to f32 (int8: the raw integer, unscaled).
pub fn stored_weight(wtype: WeightType, wq: &[u32], idx: usize) -> f32 {
    match wtype {
        WeightType::F32 => f32::from_bits(wq[idx]),
        WeightType::F16 => {
            let word = wq[idx >> 1];
            f16::from_bits(if idx & 1 == 0 { word as u16 } else { (word >> 16) as u16 }).to_f32()
        }
        WeightType::I8 => f32::from((wq[idx >> 2] >> (8 * (idx & 3))) as u8 as i8),
    }
}

/// Little-endian element bytes (as `Weights::stored` lends them) as the words a shader binds, the
/// last word zero-padded.
pub fn words_from_le_bytes(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(w)
        })
        .collect()
}

/// Words of fp16 values (tests and hosts that hold `f16` slices).
pub fn words_from_f16(values: &[f16]) -> Vec<u32> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    words_from_le_bytes(&bytes)
}

/// Words of int8 values.
pub fn words_from_i8(values: &[i8]) -> Vec<u32> {
    let bytes: Vec<u8> = values.iter().map(|&v| v as u8).collect();
    words_from_le_bytes(&bytes)
}

/// Words of fp32 values.
pub fn words_from_f32(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_int8_value_decodes_from_every_byte_position() {
        let all: Vec<i8> = (i8::MIN..=i8::MAX).collect();
        let words = words_from_i8(&all);
        for (i, &v) in all.iter().enumerate() {
            assert_eq!(stored_weight(WeightType::I8, &words, i), f32::from(v), "int8 {v} at {i}");
        }
    }

    #[test]
    fn fp16_values_decode_exactly_from_both_halves_of_a_word() {
        // Normals, subnormals, signed zero and the largest finite value.
        let values: Vec<f16> = [0.0f32, -0.0, 1.0, -2.5, 65504.0, 6.0e-8, -3.0e-5, 0.1].iter().map(|&v| f16::from_f32(v)).collect();
        let words = words_from_f16(&values);
        assert_eq!(words.len(), 4);
        for (i, v) in values.iter().enumerate() {
            assert_eq!(stored_weight(WeightType::F16, &words, i).to_bits(), v.to_f32().to_bits(), "fp16 {v} at {i}");
        }
    }

    #[test]
    fn fp32_words_are_the_value_bits_and_odd_byte_counts_are_padded() {
        let v = [1.5f32, -0.0, f32::MIN_POSITIVE];
        let w = words_from_f32(&v);
        assert!((0..3).all(|i| stored_weight(WeightType::F32, &w, i).to_bits() == v[i].to_bits()));
        assert_eq!(words_from_le_bytes(&[1, 2, 3, 4, 5]), vec![0x0403_0201, 5]);
    }
}
