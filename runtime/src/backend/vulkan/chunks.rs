//! Splitting a buffer larger than `maxStorageBufferRange` (128 MiB on lavapipe) into bindable ranges.
//! Plain arithmetic, tested without a device.

use std::ops::Range;

use crate::error::{Error, Result};

/// Byte ranges covering `0..total`, each at most `max_range` long, each starting at a multiple of both
/// `unit` (the element group a shader must see whole: a row, a channel plane) and `align`
/// (`minStorageBufferOffsetAlignment`). `name` is for the error when one step cannot fit.
pub fn plan_chunks(name: &str, total: u64, unit: u64, align: u64, max_range: u64) -> Result<Vec<Range<u64>>> {
    if unit == 0 || align == 0 {
        return Err(Error::Vulkan(format!("buffer `{name}`: chunk unit {unit} and alignment {align} must be non-zero")));
    }
    let step =
        lcm(unit, align).ok_or_else(|| Error::Vulkan(format!("buffer `{name}`: lcm of unit {unit} and alignment {align} overflows")))?;
    let per_chunk = (max_range / step) * step;
    if per_chunk == 0 {
        return Err(Error::Vulkan(format!(
            "buffer `{name}`: one chunk step of {step} bytes (unit {unit}, alignment {align}) exceeds the device's \
             {max_range}-byte storage-buffer range"
        )));
    }
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < total {
        let end = (start + per_chunk).min(total);
        chunks.push(start..end);
        start = end;
    }
    Ok(chunks)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: u64, b: u64) -> Option<u64> {
    (a / gcd(a, b)).checked_mul(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_buffer_within_range_is_one_chunk() {
        let chunks = plan_chunks("x", 100 * MIB, 4, 16, 128 * MIB).expect("plannable");
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0], 0..100 * MIB);
    }

    #[test]
    fn an_empty_buffer_has_no_chunks() {
        assert_eq!(plan_chunks("x", 0, 4, 16, 128 * MIB).ok(), Some(vec![]));
    }

    #[test]
    fn chunks_cover_the_buffer_and_start_on_whole_units() {
        // The 256 x 296 x 296 f32 lift feature (~90 MiB) against a 32 MiB range, split by channel planes.
        let plane = 296 * 296 * 4;
        let total = 256 * plane;
        let chunks = plan_chunks("f_feature0", total, plane, 64, 32 * MIB).expect("plannable");
        assert_eq!(chunks.first().map(|c| c.start), Some(0));
        assert_eq!(chunks.last().map(|c| c.end), Some(total));
        for pair in chunks.windows(2) {
            assert_eq!(pair[0].end, pair[1].start, "chunks are contiguous");
        }
        for c in &chunks {
            assert!(c.end - c.start <= 32 * MIB, "chunk {c:?} longer than the range");
            assert_eq!(c.start % plane, 0, "chunk {c:?} splits a plane");
            assert_eq!(c.start % 64, 0, "chunk {c:?} misaligned");
        }
        assert_eq!(chunks.len(), 3, "95 planes fit per 32 MiB chunk: 256 planes are 95 + 95 + 66");
    }

    #[test]
    fn a_unit_larger_than_the_range_is_an_error_naming_the_buffer() {
        let err = plan_chunks("weights", 10 * MIB, 3 * MIB, 4, 2 * MIB).expect_err("cannot fit");
        let text = err.to_string();
        assert!(text.contains("weights") && text.contains(&(3 * MIB).to_string()), "{text}");
    }
}
