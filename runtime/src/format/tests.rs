//! One crafted bad file per check, built from a valid tiny model by changing one thing and resealing
//! the header checksum (so each test reaches the check it names).

use super::header::{align_up, PREAMBLE_LEN, SECTION_ALIGN};
use super::*;
use crate::config::ModelConfig;

/// `small()` with a 12-vertex FLAME, so a whole valid file is about 1 MB.
pub(crate) fn tiny_config() -> ModelConfig {
    let mut c = ModelConfig::small();
    c.flame = crate::config::FlameConfig { vertices: 12, faces: 20, shape_params: 3, expr_params: 2, joints: 5, scale: 5.0 };
    c
}

pub(crate) fn tiny_meta(c: &ModelConfig) -> Meta {
    Meta {
        config: c.clone(),
        provenance: Provenance {
            checkpoint_sha256: "00".repeat(32),
            flame_sha256: String::new(),
            converter_version: "test".into(),
            created_by: "format tests".into(),
        },
        precision: PrecisionMeta { requested: "fp32".into(), keep_overrides: vec![], rules: vec![] },
        omitted: vec![],
        layouts: vec![],
    }
}

pub(crate) fn entry(name: &str, dtype: DType, shape: &[usize]) -> TensorEntry {
    TensorEntry {
        name: name.to_string(),
        dtype,
        layout: Layout::RowMajor,
        stage: schema::stage_of(name),
        quant_axis: None,
        reason: Reason::Requested,
        shape: shape.iter().map(|&d| d as u64).collect(),
        offset: 0,
        length: 0,
        checksum: 0,
    }
}

/// Every required tensor as f32 with values `index * 0.001`, except `flame.faces` as i64.
pub(crate) fn tiny_tensors(c: &ModelConfig) -> Vec<(TensorEntry, Vec<u8>)> {
    schema::required_tensors(c)
        .into_iter()
        .map(|r| {
            let n: usize = r.shape.iter().product();
            if r.name == "flame.faces" {
                let v: Vec<u8> = (0..n as i64).flat_map(|i| (i % 12).to_le_bytes()).collect();
                let mut e = entry(&r.name, DType::I64, &r.shape);
                e.reason = Reason::IntegerData;
                (e, v)
            } else {
                let v: Vec<u8> = (0..n).flat_map(|i| (i as f32 * 0.001).to_le_bytes()).collect();
                (entry(&r.name, DType::F32, &r.shape), v)
            }
        })
        .collect()
}

pub(crate) fn tiny_file() -> Vec<u8> {
    let c = tiny_config();
    build(&serde_json::to_vec(&tiny_meta(&c)).expect("meta serialises"), tiny_tensors(&c))
}

/// Lays out the valid tiny file, lets `f` change the preamble, meta JSON, entries or data, then writes
/// the pieces where the (possibly bad) preamble and entries say and reseals the header checksum.
pub(crate) fn crafted(f: impl FnOnce(&mut Preamble, &mut Vec<u8>, &mut Vec<TensorEntry>, &mut Vec<Vec<u8>>)) -> Vec<u8> {
    let c = tiny_config();
    let mut meta = serde_json::to_vec(&tiny_meta(&c)).expect("meta");
    let (mut entries, mut datas): (Vec<_>, Vec<_>) = tiny_tensors(&c).into_iter().unzip();
    for (e, d) in entries.iter_mut().zip(&datas) {
        e.length = d.len() as u64;
        e.checksum = xxhash_rust::xxh3::xxh3_64(d);
    }
    let mut p = plan(meta.len(), &mut entries);
    f(&mut p, &mut meta, &mut entries, &mut datas);
    let dir = encode_directory(&entries);
    let mut out = vec![0u8; p.file_length as usize];
    let mut put = |at: u64, b: &[u8]| {
        let at = at as usize;
        let end = at.saturating_add(b.len()).min(out.len());
        if at < end {
            out[at..end].copy_from_slice(&b[..end - at]);
        }
    };
    put(p.meta.offset, &meta);
    put(p.directory.offset, &dir);
    for (e, d) in entries.iter().zip(&datas) {
        put(p.data.offset + e.offset, d);
    }
    let sealed = finish_preamble(&p, &meta, &dir);
    out[..PREAMBLE_LEN].copy_from_slice(&sealed);
    out
}

pub(crate) fn rejected(bytes: &[u8], needle: &str) {
    match Header::parse(bytes) {
        Ok(_) => panic!("accepted a file that should fail with `{needle}`"),
        Err(e) => assert!(e.what.contains(needle), "error `{}` does not mention `{needle}`", e.what),
    }
}

pub(crate) fn find(entries: &mut [TensorEntry], name: &str) -> usize {
    entries.iter().position(|e| e.name == name).expect("tensor in the tiny model")
}

#[test]
fn valid_file_parses_and_every_tensor_reads_back() {
    let c = tiny_config();
    let bytes = tiny_file();
    let view = View::parse(&bytes).expect("valid");
    view.header.verify(&bytes).expect("checksums");
    assert_eq!(view.header.meta.config, c);
    for (e, d) in tiny_tensors(&c) {
        let (found, data) = view.tensor(&e.name).expect("present");
        assert_eq!((found.dtype, &found.shape, data), (e.dtype, &e.shape, &d[..]), "{}", e.name);
        assert_eq!((view.header.preamble.data.offset + found.offset) % 256, 0);
    }
}

#[test]
fn sections_start_on_16k_boundaries() {
    let bytes = tiny_file();
    let p = Header::parse(&bytes).expect("valid").preamble;
    for s in [p.meta, p.directory, p.data] {
        assert_eq!(s.offset % SECTION_ALIGN, 0);
    }
}

#[test]
fn truncated_file_is_rejected() {
    let bytes = tiny_file();
    rejected(&bytes[..bytes.len() - 1], "truncated");
    rejected(&bytes[..100], "truncated");
    rejected(&[], "truncated");
}

#[test]
fn wrong_magic_is_rejected() {
    let mut bytes = tiny_file();
    bytes[1] = b'X';
    rejected(&bytes, "magic");
}

#[test]
fn other_major_version_is_rejected() {
    rejected(&crafted(|p, _, _, _| p.major = 2), "version 2.0");
    rejected(&crafted(|p, _, _, _| p.major = 0), "version 0.0");
}

#[test]
fn higher_minor_version_is_accepted() {
    Header::parse(&crafted(|p, _, _, _| p.minor = 7)).expect("1.7 is readable");
}

#[test]
fn unknown_required_flag_is_rejected_and_optional_flag_ignored() {
    rejected(&crafted(|p, _, _, _| p.flags = 1), "required flags");
    Header::parse(&crafted(|p, _, _, _| p.flags = 1 << 16)).expect("optional flag");
}

#[test]
fn damaged_header_fails_the_checksum() {
    let bytes = tiny_file();
    let p = Header::parse(&bytes).expect("valid").preamble;
    for at in [p.meta.offset as usize + 3, p.directory.offset as usize + 5] {
        let mut b = bytes.clone();
        b[at] ^= 1;
        rejected(&b, "header checksum mismatch");
    }
}

#[test]
fn nonzero_reserved_bytes_are_rejected() {
    let mut bytes = tiny_file();
    bytes[100] = 1;
    rejected(&bytes, "reserved");
}

#[test]
fn misaligned_or_out_of_range_sections_are_rejected() {
    rejected(&crafted(|p, _, _, _| p.meta.offset += 8), "meta section offset");
    rejected(&crafted(|p, _, _, _| p.data.length += 1), "data section");
    rejected(&crafted(|p, _, _, _| p.directory.offset = u64::MAX - 16383), "directory section");
    rejected(&crafted(|p, _, _, _| p.directory.offset = p.meta.offset), "overlaps");
}

#[test]
fn duplicate_tensor_names_are_rejected() {
    rejected(&crafted(|_, _, e, _| e[1].name = e[0].name.clone()), "appears twice");
}

#[test]
fn non_utf8_name_is_rejected() {
    // Same length as the original name, so the directory size stays as planned.
    let bad = crafted(|_, _, e, _| e[0].name = "\u{7f}".repeat(e[0].name.len()));
    let mut bytes = bad.clone();
    let p = Preamble::decode(&bytes).expect("preamble");
    let at = p.directory.offset as usize + 2;
    bytes[at] = 0xff;
    let dir = bytes[p.directory.offset as usize..(p.directory.offset + p.directory.length) as usize].to_vec();
    let meta = bytes[p.meta.offset as usize..(p.meta.offset + p.meta.length) as usize].to_vec();
    bytes[..PREAMBLE_LEN].copy_from_slice(&finish_preamble(&p, &meta, &dir));
    rejected(&bytes, "not UTF-8");
}

#[test]
fn length_that_disagrees_with_dtype_and_shape_is_rejected() {
    rejected(&crafted(|_, _, e, _| e[0].shape[2] += 1), "needs");
    rejected(&crafted(|_, _, e, _| e[0].shape = vec![u64::MAX, 2, 2]), "overflows");
}

#[test]
fn misaligned_or_out_of_range_tensor_is_rejected() {
    rejected(&crafted(|_, _, e, _| e[3].offset += 4), "not a multiple of 256");
    rejected(&crafted(|p, _, e, _| e[3].offset = align_up(p.data.length, 256).expect("small")), "run past");
    rejected(&crafted(|_, _, e, _| e[3].offset = e[2].offset), "overlap");
}

#[test]
fn int8_tensor_needs_a_scale_of_the_right_shape() {
    let to_i8 = |e: &mut Vec<TensorEntry>, d: &mut Vec<Vec<u8>>, i: usize| {
        e[i].dtype = DType::I8;
        e[i].quant_axis = Some(0);
        e[i].length /= 4;
        let quarter = d[i].len() / 4;
        d[i].truncate(quarter);
    };
    rejected(
        &crafted(|p, m, e, d| {
            let i = find(e, "upsampler.final_conv.weight");
            to_i8(e, d, i);
            *p = plan(m.len(), e);
        }),
        "has no scale tensor",
    );
    rejected(
        &crafted(|p, m, e, d| {
            let i = find(e, "upsampler.final_conv.weight");
            to_i8(e, d, i);
            let mut s = entry("upsampler.final_conv.weight@scale", DType::F32, &[3]);
            s.length = 12;
            e.push(s);
            d.push(vec![0; 12]);
            *p = plan(m.len(), e);
        }),
        "expected f32 [",
    );
}

#[test]
fn unparsable_config_is_rejected() {
    rejected(&crafted(|_, m, _, _| m[0] = b'['), "meta section JSON");
}

#[test]
fn config_out_of_range_is_rejected() {
    rejected(
        &crafted(|p, m, e, _| {
            let mut meta: Meta = serde_json::from_slice(m).expect("meta");
            meta.config.dino.patch_size = 0;
            *m = serde_json::to_vec(&meta).expect("meta");
            *p = plan(m.len(), e);
        }),
        "dino.patch_size is 0",
    );
}

#[test]
fn tensor_shape_that_disagrees_with_the_config_names_tensor_and_shapes() {
    let bad = crafted(|p, m, e, d| {
        let i = find(e, "upsampler.conv_body_first.weight");
        e[i].shape = vec![32, 4, 1, 1];
        let _ = d;
        *p = plan(m.len(), e);
    });
    rejected(&bad, "tensor `upsampler.conv_body_first.weight`: configuration expects shape [4, 32, 1, 1], found [32, 4, 1, 1]");
}

#[test]
fn missing_required_tensor_is_named() {
    let bad = crafted(|p, m, e, d| {
        let i = find(e, "head_base");
        e.remove(i);
        d.remove(i);
        *p = plan(m.len(), e);
    });
    rejected(&bad, "tensor `head_base` required by the configuration is missing");
}

#[test]
fn verify_names_the_tensor_whose_bytes_changed() {
    let mut bytes = tiny_file();
    let h = Header::parse(&bytes).expect("valid");
    let e = h.entry("head_base").expect("present").clone();
    bytes[(h.preamble.data.offset + e.offset) as usize] ^= 0x40;
    let h = Header::parse(&bytes).expect("data is not covered by the header checksum");
    let err = h.verify(&bytes).expect_err("checksum differs");
    assert!(err.what.contains("`head_base`"), "{}", err.what);
}

#[test]
fn glob_patterns_match_dotted_names() {
    use super::meta::glob_match;
    assert!(glob_match("*.bias", "upsampler.final_conv.bias"));
    assert!(glob_match("upsampler.stylegan_decoder.to_rgb*", "upsampler.stylegan_decoder.to_rgbs.3.bias"));
    assert!(glob_match("head_base", "head_base"));
    assert!(!glob_match("head_base", "head_base2"));
    assert!(!glob_match("*.weight", "x.bias"));
    assert!(glob_match("*norm*", "base_model.dino_model.blocks.0.norm1.weight"));
    assert!(glob_match("*.style_convs.??.weight", "u.style_convs.13.weight"));
    assert!(!glob_match("*.style_convs.?.weight", "u.style_convs.0.modulated_conv.weight"));
}

#[test]
fn align_up_rounds_to_the_next_multiple() {
    assert_eq!(align_up(0, SECTION_ALIGN), Some(0));
    assert_eq!(align_up(1, SECTION_ALIGN), Some(SECTION_ALIGN));
    assert_eq!(align_up(u64::MAX, SECTION_ALIGN), None);
}

/// The smallest configuration `check_config` accepts with every layer kind present (2 channels, a 2x2
/// patch grid, one refiner level): its file is mostly section padding, a good fuzzing seed.
pub(crate) fn micro_config() -> ModelConfig {
    let mut c = tiny_config();
    c.image_size = 8;
    c.dino = crate::config::DinoConfig {
        input_size: 28,
        patch_size: 14,
        dim: 4,
        depth: 4,
        heads: 1,
        mlp_dim: 4,
        out_layers: vec![0, 1, 2, 3],
        ln_eps: 1e-6,
    };
    c.dpt = crate::config::DptConfig { project_channels: [2, 2, 2, 2], features: 2 };
    (c.plane_size, c.feature_dim, c.gaussian_channels, c.head_base_dim) = (16, 2, 2, 2);
    (c.vertex_trunk_dim, c.vertex_head_hidden, c.lift_hidden, c.harmonic_frequencies) = (2, 2, 2, 1);
    c.flame = crate::config::FlameConfig { vertices: 3, faces: 1, shape_params: 1, expr_params: 1, joints: 2, scale: 5.0 };
    c.refiner = crate::config::RefinerConfig {
        size: 8,
        in_channels: 2,
        out_channels: 3,
        style_dim: 2,
        mlp_layers: 1,
        unet_channels: vec![2, 2],
        decoder_channels: vec![2, 2],
    };
    c
}

/// Writes the fuzz seed corpus: `cargo test -p gaga-runtime write_fuzz_seeds -- --ignored`.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let c = micro_config();
    let mut tensors = tiny_tensors(&c);
    // One int8 tensor with its scale, so the scale checks have a valid example to mutate.
    let i = tensors.iter().position(|(e, _)| e.name == "upsampler.final_conv.weight").expect("present");
    let (mut e, d) = tensors.remove(i);
    e.dtype = DType::I8;
    e.quant_axis = Some(0);
    let q: Vec<u8> = d.chunks_exact(4).map(|b| (f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * 100.0) as i8 as u8).collect();
    let channels = e.shape[0] as usize;
    let mut s = entry("upsampler.final_conv.weight@scale", DType::F32, &[channels]);
    s.reason = Reason::QuantScale;
    tensors.push((e, q));
    tensors.push((s, [0u8, 0, 128, 60].repeat(channels)));
    let bytes = build(&serde_json::to_vec(&tiny_meta(&c)).expect("meta"), tensors);
    Header::parse(&bytes).expect("seed is valid");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/model_file");
    std::fs::create_dir_all(&dir).expect("seed dir");
    // The fuzz target's first byte is its mode: 1 reseals the header checksum, 0 parses as is.
    std::fs::write(dir.join("sealed-micro-int8.gaga"), [&[1u8][..], &bytes].concat()).expect("write seed");
    std::fs::write(dir.join("raw-truncated.gaga"), [&[0u8][..], &bytes[..200]].concat()).expect("write seed");
}
