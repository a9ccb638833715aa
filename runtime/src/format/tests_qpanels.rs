//! The packed f16 / int8 layouts (`QPanelsF16`, `QPanelsI8`): a packed refiner weight with its declared,
//! versioned parameters parses and unpacks to the row-major values; wrong lengths, dtypes, axes, another
//! packing version, and truncated or misaligned bytes are refused naming the tensor.

use gaga_kernels::qgemm::{self, PackedConv};
use half::f16;

use super::tests::{crafted, entry, find, rejected, tiny_config, tiny_meta};
use super::*;

const NAME: &str = "upsampler.final_conv.weight";

/// Row-major int8 values of the crafted weight `[c_out, c_in, 3, 3]` and its per-channel scales.
fn int8_values(n: usize, c_out: usize) -> (Vec<i8>, Vec<f32>) {
    ((0..n).map(|i| ((i * 37) % 255) as i8).map(|v| v.max(-127)).collect(), (0..c_out).map(|o| 0.01 + o as f32 * 1e-3).collect())
}

/// The tiny file with `NAME` stored as f16 or int8 (+ `@scale`) in its packed layout; `layouts` go to
/// the meta section and `edit` may then spoil the entry or its bytes.
fn qpacked_file(int8: bool, layouts: Option<Vec<LayoutParams>>, edit: impl FnOnce(&mut TensorEntry, &mut Vec<u8>)) -> Vec<u8> {
    crafted(|p, meta, entries, datas| {
        let i = find(entries, NAME);
        let shape = entries[i].shape_usize();
        let (co, ci, k) = (shape[0], shape[1], shape[3]);
        let layout = if int8 { Layout::QPanelsI8 } else { Layout::QPanelsF16 };
        let mut m = tiny_meta(&tiny_config());
        m.layouts = layouts.unwrap_or_else(|| LayoutParams::of(layout).into_iter().collect());
        *meta = serde_json::to_vec(&m).expect("meta");
        if int8 {
            let (q, scales) = int8_values(co * ci * k * k, co);
            datas[i] = PackedConv::from_i8(&q, &scales, co, ci, k).expect("pack").packed_bytes().to_vec();
            entries[i].dtype = DType::I8;
            entries[i].quant_axis = Some(0);
            let mut s = entry(&format!("{NAME}@scale"), DType::F32, &[co]);
            let sb: Vec<u8> = scales.iter().flat_map(|v| v.to_le_bytes()).collect();
            (s.length, s.checksum) = (sb.len() as u64, xxhash_rust::xxh3::xxh3_64(&sb));
            entries.push(s);
            datas.push(sb);
        } else {
            let h: Vec<f16> = (0..co * ci * k * k).map(|j| f16::from_f32(j as f32 * 1e-3)).collect();
            datas[i] = PackedConv::from_f16(&h, co, ci, k).expect("pack").packed_bytes().to_vec();
            entries[i].dtype = DType::F16;
        }
        entries[i].layout = layout;
        entries[i].length = datas[i].len() as u64;
        edit(&mut entries[i], &mut datas[i]);
        entries[i].checksum = xxhash_rust::xxh3::xxh3_64(&datas[i]);
        *p = plan(meta.len(), entries);
    })
}

fn scales_of<'a>(view: &View<'a>) -> Vec<f32> {
    let (_, b) = view.tensor(&format!("{NAME}@scale")).expect("scale tensor");
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

#[test]
fn packed_int8_and_f16_weights_parse_and_unpack_to_the_row_major_values() {
    for int8 in [false, true] {
        let bytes = qpacked_file(int8, None, |_, _| {});
        let view = View::parse(&bytes).expect("packed file is valid");
        view.header.verify(&bytes).expect("checksums");
        let (e, data) = view.tensor(NAME).expect("present");
        let (co, ci, k) = (e.shape[0] as usize, e.shape[1] as usize, e.shape[3] as usize);
        let n = co * ci * k * k;
        let want: Vec<f32> = if int8 {
            let (q, s) = int8_values(n, co);
            q.iter().enumerate().map(|(j, &v)| v as f32 * s[j / (ci * k * k)]).collect()
        } else {
            (0..n).map(|j| f16::from_f32(j as f32 * 1e-3).to_f32()).collect()
        };
        let scales = int8.then(|| scales_of(&view));
        let got = panels::unpack_q_f32(e, data, scales.as_deref()).expect("unpacks");
        assert_eq!(got, want, "int8 {int8}: unpacked values differ (exact: same products)");
        assert_eq!(e.length as usize, qgemm::packed_len(if int8 { qgemm::PackedFormat::I8 } else { qgemm::PackedFormat::F16 }, co, ci, k));
    }
}

#[test]
fn a_truncated_packed_weight_is_rejected_naming_it() {
    for int8 in [false, true] {
        let bytes = qpacked_file(int8, None, |e, d| {
            d.truncate(d.len() - 32);
            e.length = d.len() as u64;
        });
        rejected(&bytes, NAME);
        rejected(&bytes, "needs");
    }
}

#[test]
fn packed_layouts_hold_only_their_dtype_with_the_right_axis_and_kernel() {
    rejected(&qpacked_file(false, None, |e, _| e.dtype = DType::F32), "holds f16 weights");
    rejected(&qpacked_file(true, None, |e, _| e.quant_axis = Some(1)), "scales along axis 0");
    // A non-square kernel has no I8 packing: refused before its length is even considered.
    rejected(&qpacked_file(true, None, |e, _| e.shape = vec![e.shape[0], e.shape[1], 9, 1]), "square odd kernel");
}

#[test]
fn a_file_packed_by_another_layout_version_is_refused_with_the_reason() {
    let mut old = LayoutParams::of(Layout::QPanelsI8).expect("params");
    old.name = "qpanels8x4-i8-v0".into();
    let bytes = qpacked_file(true, Some(vec![old]), |_, _| {});
    rejected(&bytes, NAME);
    rejected(&bytes, "packed by another version");
    rejected(&qpacked_file(false, Some(vec![]), |_, _| {}), "declares no parameters");
}

#[test]
fn misaligned_or_short_packed_bytes_give_an_error_naming_the_tensor() {
    let bytes = qpacked_file(false, None, |_, _| {});
    let view = View::parse(&bytes).expect("valid");
    let (e, data) = view.tensor(NAME).expect("present");
    // One byte in: f16 needs 2-byte alignment (and the length no longer fits either way).
    let mut shifted = vec![0u8; data.len() + 2];
    let at = if (shifted.as_ptr() as usize) & 1 == 0 { 1 } else { 0 };
    shifted[at..at + data.len()].copy_from_slice(data);
    let err = panels::qpacked(e, &shifted[at..at + data.len()], None).err().expect("misaligned f16 is refused");
    assert!(err.contains(NAME) && err.contains("aligned"), "{err}");
    let err = panels::qpacked(e, &data[..data.len() - 2], None).err().expect("short data is refused");
    assert!(err.contains(NAME) && err.contains("bytes, expected"), "{err}");
    let bytes = qpacked_file(true, None, |_, _| {});
    let view = View::parse(&bytes).expect("valid");
    let (e, data) = view.tensor(NAME).expect("present");
    let err = panels::qpacked(e, data, None).err().expect("int8 without scales is refused");
    assert!(err.contains(NAME) && err.contains("scales missing"), "{err}");
}
