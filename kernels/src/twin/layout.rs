//! Reads the push-constant block's member offsets out of shipped SPIR-V, so a test can hold each
//! `#[repr(C)]` push struct in this module against the shader it feeds (no reflection crate needed).

const MAGIC: u32 = 0x0723_0203;
const OP_MEMBER_DECORATE: u32 = 72;
const OP_TYPE_POINTER: u32 = 32;
const OP_VARIABLE: u32 = 59;
const DECORATION_OFFSET: u32 = 35;
const STORAGE_PUSH_CONSTANT: u32 = 9;

/// Byte offsets of the push-constant block's members, in member order; `None` when the module has no
/// push-constant block or is not SPIR-V.
pub fn push_constant_offsets(spirv: &[u8]) -> Option<Vec<u32>> {
    let chunks = spirv.chunks_exact(4);
    if !chunks.remainder().is_empty() || spirv.len() < 20 {
        return None;
    }
    let words: Vec<u32> = chunks.map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    if words[0] != MAGIC {
        return None;
    }
    let mut instructions = Vec::new();
    let mut at = 5;
    while at < words.len() {
        let count = (words[at] >> 16) as usize;
        if count == 0 || at + count > words.len() {
            return None;
        }
        instructions.push(&words[at..at + count]);
        at += count;
    }
    let opcode = |i: &[u32]| i[0] & 0xffff;
    // OpVariable: type, id, storage class. OpTypePointer: id, storage class, pointee.
    let pointer = instructions.iter().find(|i| opcode(i) == OP_VARIABLE && i.len() >= 4 && i[3] == STORAGE_PUSH_CONSTANT)?[1];
    let block = instructions.iter().find(|i| opcode(i) == OP_TYPE_POINTER && i.len() >= 4 && i[1] == pointer)?[3];
    let mut members: Vec<(u32, u32)> = instructions
        .iter()
        .filter(|i| opcode(i) == OP_MEMBER_DECORATE && i.len() >= 5 && i[1] == block && i[3] == DECORATION_OFFSET)
        .map(|i| (i[2], i[4]))
        .collect();
    members.sort_unstable();
    Some(members.into_iter().map(|(_, offset)| offset).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twin::{bilinear, conv2d, elementwise, flame};

    /// Offsets of consecutive 4-byte fields of a `#[repr(C)]` struct of `size` bytes.
    fn packed_u32_offsets(size: usize) -> Vec<u32> {
        (0..size as u32 / 4).map(|i| 4 * i).collect()
    }

    #[test]
    fn push_structs_match_the_shaders_push_blocks() {
        // Every push struct is all u32/f32 fields, so its offsets are 0, 4, 8, ... up to its size.
        let cases = [
            ("conv2d", crate::twin::CONV2D_SPV, std::mem::size_of::<conv2d::Conv2dPush>()),
            ("conv2d_f16", crate::twin::CONV2D_F16_SPV, std::mem::size_of::<conv2d::Conv2dPush>()),
            ("bilinear", crate::twin::BILINEAR_SPV, std::mem::size_of::<bilinear::BilinearPush>()),
            ("elementwise", crate::twin::ELEMENTWISE_SPV, std::mem::size_of::<elementwise::ElementwisePush>()),
            ("flame_lbs", crate::twin::FLAME_LBS_SPV, std::mem::size_of::<flame::FlamePush>()),
        ];
        for (name, spv, size) in cases {
            assert_eq!(push_constant_offsets(spv), Some(packed_u32_offsets(size)), "{name}: push block vs Rust struct");
        }
    }

    #[test]
    fn non_spirv_has_no_push_block() {
        assert_eq!(push_constant_offsets(b"not a shader at all!"), None);
    }
}
