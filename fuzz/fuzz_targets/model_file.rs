//! The model-file reader on arbitrary bytes: format validation, then `Model::from_bytes` and every
//! tensor read through `Weights`. If the first input byte is odd, the header checksum is recomputed
//! over the rest before parsing, so mutations of the meta and directory reach the checks behind it.
#![no_main]

use gaga_runtime::format::{header, Header, Preamble};
use gaga_runtime::model::Model;
use gaga_runtime::Weights;
use libfuzzer_sys::fuzz_target;

fn reseal(bytes: &mut [u8]) {
    let Ok(p) = Preamble::decode(bytes) else { return };
    let slice = |s: header::Section| {
        let end = s.offset.checked_add(s.length)?;
        bytes.get(usize::try_from(s.offset).ok()?..usize::try_from(end).ok()?)
    };
    let (Some(meta), Some(dir)) = (slice(p.meta), slice(p.directory)) else { return };
    let mut head = [0u8; header::PREAMBLE_LEN];
    head.copy_from_slice(&bytes[..header::PREAMBLE_LEN]);
    let sum = header::header_checksum(&head, meta, dir);
    bytes[header::CHECKSUM_AT..header::CHECKSUM_AT + 8].copy_from_slice(&sum.to_le_bytes());
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 {
        reseal(&mut bytes);
    }
    let valid = Header::parse(&bytes).is_ok();
    match Model::from_bytes(bytes) {
        Ok(m) => {
            assert!(valid, "Model accepted what Header rejected");
            let _ = m.verify();
            let names: Vec<String> = m.tensors().iter().map(|e| e.name.clone()).collect();
            for n in names {
                let v = m.f32(&n).expect("listed tensor reads");
                assert_eq!(v.len(), m.shape(&n).expect("shape").iter().product::<usize>(), "{n}");
            }
        }
        Err(_) => assert!(!valid, "Header accepted what Model rejected"),
    }
});
