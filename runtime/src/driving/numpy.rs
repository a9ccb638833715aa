//! Decodes numpy arrays from an unevaluated pickle tree (`crate::pickle::Value`), as Python's pickle
//! writes them:
//! - protocols 2-4: `numpy[._]core.multiarray._reconstruct(ndarray, (0,), b'b')` then BUILD with
//!   `(version, shape, dtype, is_fortran, raw bytes)`; under protocol 2 the bytes are spelled
//!   `_codecs.encode(text, 'latin1')`;
//! - protocol 5: `numpy[._]core.numeric._frombuffer(buffer, dtype, shape, order)`.
//!
//! The dtype is `numpy.dtype('f4', False, True)` with a BUILD state whose second item is the byte order
//! (a memoised dtype may come back without its state: then the byte order is little-endian, numpy's
//! pickling default on every platform it writes these files from).

use crate::pickle::Value;

/// The globals a driving pickle may reference.
pub const NUMPY_GLOBALS: &[(&str, &str)] = &[
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("collections", "OrderedDict"),
];

/// A decoded array: values as f32 (from f4 or f8), row-major, with its shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

fn is_numpy(module: &str, name: &str, want: &str) -> bool {
    name == want && matches!(module, "numpy.core.multiarray" | "numpy._core.multiarray" | "numpy.core.numeric" | "numpy._core.numeric")
}

/// `(element size, big endian)` of a float dtype value; other dtypes are refused by name.
fn dtype(v: &Value) -> Result<(usize, bool), String> {
    let (obj, state) = match v {
        Value::Build { obj, state } => (obj.as_ref(), Some(state.as_ref())),
        other => (other, None),
    };
    let Some(("numpy", "dtype", args)) = obj.as_reduce() else {
        return Err(format!("expected a numpy dtype, found a {}", obj.kind()));
    };
    let descr = args.as_seq().and_then(|a| a.first()).and_then(Value::as_str).unwrap_or("?");
    let mut big = descr.starts_with('>');
    if let Some(order) = state.and_then(Value::as_seq).and_then(|s| s.get(1)).and_then(Value::as_str) {
        big = order == ">";
    }
    match descr.trim_start_matches(['<', '>', '=', '|']) {
        "f4" => Ok((4, big)),
        "f8" => Ok((8, big)),
        other => Err(format!("dtype `{other}` is not a float array (expected f4 or f8)")),
    }
}

fn shape(v: &Value) -> Result<Vec<usize>, String> {
    let dims = v.as_seq().ok_or_else(|| format!("shape: expected a tuple, found a {}", v.kind()))?;
    dims.iter()
        .map(|d| d.as_int().and_then(|i| usize::try_from(i).ok()).ok_or_else(|| "shape: a dimension is not a non-negative int".to_string()))
        .collect()
}

fn decode(raw: &[u8], shape: Vec<usize>, (size, big): (usize, bool), fortran: bool) -> Result<Array, String> {
    let numel: usize = shape.iter().product();
    if raw.len() != numel * size {
        return Err(format!("shape {shape:?} needs {} bytes, found {}", numel * size, raw.len()));
    }
    let values: Vec<f32> = raw
        .chunks_exact(size)
        .map(|c| match (size, big) {
            (4, false) => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            (4, true) => f32::from_be_bytes([c[0], c[1], c[2], c[3]]),
            (_, false) => f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32,
            (_, true) => f64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32,
        })
        .collect();
    let data = if fortran && shape.len() > 1 { fortran_to_c(&values, &shape) } else { values };
    Ok(Array { shape, data })
}

/// Reorders column-major values to row-major.
fn fortran_to_c(values: &[f32], shape: &[usize]) -> Vec<f32> {
    let mut out = vec![0f32; values.len()];
    let mut index = vec![0usize; shape.len()];
    for &v in values {
        // `index` walks in Fortran order: first axis fastest.
        let mut c = 0;
        for (d, &i) in index.iter().enumerate() {
            c = c * shape[d] + i;
        }
        out[c] = v;
        for (d, i) in index.iter_mut().enumerate() {
            *i += 1;
            if *i < shape[d] {
                break;
            }
            *i = 0;
        }
    }
    out
}

/// Decodes `v` as a numpy float array; the error says what was found instead.
pub fn array(v: &Value) -> Result<Array, String> {
    match v {
        Value::Build { obj, state } => {
            let Some((module, name, _)) = obj.as_reduce() else {
                return Err(format!("expected a numpy array, found a built {}", obj.kind()));
            };
            if !is_numpy(module, name, "_reconstruct") {
                return Err(format!("expected numpy _reconstruct, found {module}.{name}"));
            }
            let s = state.as_seq().filter(|s| s.len() == 5).ok_or("array state is not a 5-tuple")?;
            let fortran = s[3].as_bool().ok_or("array state: is_fortran is not a bool")?;
            let raw = s[4].bytes_like().ok_or_else(|| format!("array state: data is a {}, not bytes", s[4].kind()))?;
            decode(&raw, shape(&s[1])?, dtype(&s[2])?, fortran)
        }
        Value::Reduce { func, args, .. } if is_numpy(&func.0, &func.1, "_frombuffer") => {
            let a = args.as_seq().filter(|a| a.len() == 4).ok_or("_frombuffer needs 4 arguments")?;
            let raw = a[0].bytes_like().ok_or_else(|| format!("_frombuffer: buffer is a {}", a[0].kind()))?;
            let fortran = a[3].as_str() == Some("F");
            decode(&raw, shape(&a[2])?, dtype(&a[1])?, fortran)
        }
        other => Err(format!("expected a numpy array, found a {}", other.kind())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fortran_order_is_transposed_to_row_major() {
        // A 2x3 array [[0,1,2],[3,4,5]] stored column-major is 0,3,1,4,2,5.
        let c = fortran_to_c(&[0.0, 3.0, 1.0, 4.0, 2.0, 5.0], &[2, 3]);
        assert_eq!(c, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn big_endian_and_f8_data_decode() {
        let raw: Vec<u8> = [1.5f64, -2.0].iter().flat_map(|v| v.to_be_bytes()).collect();
        let a = decode(&raw, vec![2], (8, true), false).expect("valid f8 data");
        assert_eq!(a.data, vec![1.5, -2.0]);
        assert!(decode(&raw, vec![3], (8, true), false).is_err(), "length mismatch is refused");
    }
}
