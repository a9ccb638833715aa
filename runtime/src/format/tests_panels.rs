//! The `Panels` layout: a packed refiner weight with its declared parameters parses and unpacks to the
//! checkpoint's values; wrong lengths, dtypes, ranks and undeclared or different parameters are refused.

use super::tests::{crafted, find, rejected, tiny_config, tiny_file, tiny_meta};
use super::*;

const NAME: &str = "upsampler.final_conv.weight";

/// The tiny file with `NAME` packed (`meta_layouts` declared in the meta section).
fn packed_file(meta_layouts: Vec<LayoutParams>, edit: impl FnOnce(&mut TensorEntry, &mut Vec<u8>)) -> Vec<u8> {
    crafted(|p, meta, entries, datas| {
        let mut m = tiny_meta(&tiny_config());
        m.layouts = meta_layouts;
        *meta = serde_json::to_vec(&m).expect("meta");
        let i = find(entries, NAME);
        let values: Vec<f32> = datas[i].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        datas[i] = panels::pack_f32(&entries[i].shape_usize(), &values).expect("rank 4");
        entries[i].layout = Layout::Panels;
        entries[i].length = datas[i].len() as u64;
        edit(&mut entries[i], &mut datas[i]);
        entries[i].checksum = xxhash_rust::xxh3::xxh3_64(&datas[i]);
        *p = plan(meta.len(), entries);
    })
}

#[test]
fn a_packed_weight_with_declared_parameters_parses_and_unpacks_to_the_original() {
    let plain = tiny_file();
    let want = View::parse(&plain).expect("valid").tensor(NAME).expect("present").1.to_vec();
    let bytes = packed_file(vec![LayoutParams::panels()], |_, _| {});
    let view = View::parse(&bytes).expect("packed file is valid");
    view.header.verify(&bytes).expect("checksums");
    let (e, data) = view.tensor(NAME).expect("present");
    assert_eq!(e.layout, Layout::Panels);
    // 64 outputs x 64*9 inputs in the small config: whole panels, so no padding rows.
    assert_eq!(e.length, want.len() as u64);
    let back: Vec<u8> = panels::unpack_f32(e, data).iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(back, want, "unpacked panels differ from the row-major weight");
}

#[test]
fn a_packed_weight_of_the_wrong_length_is_rejected_naming_it() {
    let bytes = packed_file(vec![LayoutParams::panels()], |e, d| {
        d.truncate(d.len() - 32);
        e.length = d.len() as u64;
    });
    rejected(&bytes, NAME);
    rejected(&bytes, "in layout panels8 needs");
}

#[test]
fn panels_hold_only_unquantised_f32_of_rank_four_or_more() {
    rejected(&packed_file(vec![LayoutParams::panels()], |e, _| e.dtype = DType::F16), "holds f32 weights of rank >= 4");
    rejected(&packed_file(vec![LayoutParams::panels()], |e, _| e.shape = vec![e.shape[0], e.shape[1] * 9]), "rank >= 4");
}

#[test]
fn undeclared_or_different_layout_parameters_are_rejected() {
    rejected(&packed_file(vec![], |_, _| {}), "declares no parameters");
    let mut other = LayoutParams::panels();
    other.panel_rows = 16;
    rejected(&packed_file(vec![other], |_, _| {}), "panel_rows: 16");
}

#[test]
fn row_major_files_have_no_layout_list_in_their_meta() {
    let json = serde_json::to_string(&tiny_meta(&tiny_config())).expect("meta");
    assert!(!json.contains("layouts"), "row-major files must stay byte-identical to before");
}
