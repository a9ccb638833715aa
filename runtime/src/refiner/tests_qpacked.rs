//! `packed::load` on f16 / int8 weights stored in the `qgemm` layouts: borrowed (no copy), the same
//! outputs as the row-major weights packed at load, and errors naming the tensor for truncated or
//! misaligned bytes and missing scales.

use std::borrow::Cow;

use gaga_kernels::conv::{Conv2d, Scratch};
use gaga_kernels::qgemm::PackedConv;
use gaga_kernels::testing::seeded;

use super::*;
use crate::weights::Stored;

const NAME: &str = "layer.weight";

/// One conv weight as stored: dtype, layout, bytes (from `offset` in `buf`, for misalignment) and scales.
struct One {
    dtype: DType,
    layout: Layout,
    shape: Vec<usize>,
    buf: Vec<u8>,
    offset: usize,
    len: usize,
    scales: Option<Vec<f32>>,
}

impl Weights for One {
    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        if name != NAME {
            return Err(Error::MissingTensor { name: name.to_string() });
        }
        Ok(self.shape.clone())
    }
    fn f32(&self, name: &str) -> Result<Cow<'_, [f32]>> {
        Err(Error::Other(format!("tensor `{name}`: f32 not read in these tests")))
    }
    fn stored(&self, _: &str) -> Result<Stored<'_>> {
        Ok(Stored {
            dtype: self.dtype,
            layout: self.layout,
            shape: self.shape.clone(),
            bytes: Cow::Borrowed(&self.buf[self.offset..self.offset + self.len]),
            scales: self.scales.as_deref().map(Cow::Borrowed),
            quant_axis: self.scales.as_ref().map(|_| 0),
        })
    }
}

const SPEC: Conv2d = Conv2d { c_in: 6, c_out: 10, kernel: 3, stride: 1, pad: 1 };

fn one(int8: bool, packed: bool) -> One {
    let (co, ci, k) = (SPEC.c_out, SPEC.c_in, SPEC.kernel);
    let wt = seeded(5, co * ci * k * k);
    let (dtype, scales, bytes) = if int8 {
        let p = PackedConv::from_f32_as_i8(&wt, co, ci, k).expect("quantise");
        let rm = match p.unpack_to_row_major() {
            gaga_kernels::qgemm::RowMajor::I8 { q, .. } => bytemuck::cast_slice::<i8, u8>(&q).to_vec(),
            _ => unreachable!("int8 weight"),
        };
        (DType::I8, p.scales().map(<[f32]>::to_vec), if packed { p.packed_bytes().to_vec() } else { rm })
    } else {
        let h: Vec<f16> = wt.iter().map(|&v| f16::from_f32(v)).collect();
        let p = PackedConv::from_f16(&h, co, ci, k).expect("f16");
        (DType::F16, None, if packed { p.packed_bytes().to_vec() } else { bytemuck::cast_slice(&h).to_vec() })
    };
    // Start at an even offset of a u32-aligned buffer, so the bytes are aligned for f16.
    let mut buf = vec![0u8; bytes.len() + 8];
    buf[4..4 + bytes.len()].copy_from_slice(&bytes);
    let layout = match (packed, int8) {
        (false, _) => Layout::RowMajor,
        (true, false) => Layout::QPanelsF16,
        (true, true) => Layout::QPanelsI8,
    };
    One { dtype, layout, shape: vec![co, ci, k, k], offset: 4, len: bytes.len(), buf, scales }
}

fn output(w: &One) -> Vec<f32> {
    let (kernel, _) = load(w, NAME, &w.shape, &SPEC, None, false).expect("loads");
    let (h, wd) = (5, 7);
    let x = seeded(9, SPEC.c_in * h * wd);
    let mut out = vec![0f32; SPEC.c_out * h * wd];
    kernel.run(&mut Scratch::new(), &SPEC, &x, h, wd, &mut out).expect("runs");
    out
}

#[test]
fn packed_f16_and_int8_weights_are_borrowed_and_give_the_row_major_outputs_bit_for_bit() {
    for int8 in [false, true] {
        let packed = one(int8, true);
        let (kernel, _) = load(&packed, NAME, &packed.shape, &SPEC, None, false).expect("loads");
        assert!(kernel.is_borrowed(), "int8 {int8}: packed weights should be borrowed, not copied");
        assert_eq!(kernel.precision(), if int8 { Precision::Int8 } else { Precision::Fp16 });
        // Same packed values either way, so the same kernel arithmetic: no tolerance.
        assert_eq!(output(&packed), output(&one(int8, false)), "int8 {int8}");
    }
}

#[test]
fn truncated_misaligned_or_unscaled_packed_weights_are_errors_naming_the_tensor() {
    let check = |w: &One, needle: &str| {
        let e = load(w, NAME, &w.shape, &SPEC, None, false).err().expect("refused").to_string();
        assert!(e.contains(NAME) && e.contains(needle), "expected `{NAME}` and `{needle}` in: {e}");
    };
    for int8 in [false, true] {
        let mut w = one(int8, true);
        w.len -= 4;
        check(&w, "bytes, expected");
    }
    let mut w = one(false, true);
    w.offset = 5;
    check(&w, "aligned");
    let mut w = one(true, true);
    w.scales = None;
    check(&w, "scales missing");
}
