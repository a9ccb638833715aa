//! The unpickler on arbitrary bytes, with every global the project's readers allow: it must return
//! `Ok` or `Err`, never panic, hang or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

const ALLOWED: &[(&str, &str)] = &[
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch", "FloatStorage"),
    ("torch", "LongStorage"),
    ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
];

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = gaga_runtime::pickle::load(data, ALLOWED) {
        // Exercise the accessors consumers use.
        let _ = v.get("model").and_then(|m| m.as_dict()).map(|d| d.len());
        let _ = v.bytes_like();
    }
});
