//! Driving and source parameters in and out (format: `docs/driving-format.md`).
//!
//! Readers: the official tracker's `optim.pkl` / `smoothed.pkl` (a dict from frame key `<name>_<idx>`
//! to a dict of numpy float32 arrays, frames ordered by the integer after the last `_`) and gaga's JSON
//! lines (one frame object per line). Both are validated the same way: lengths, finite values, and a
//! camera rotation that really is one. Errors are `Error::Input` naming the file, frame and field.

mod numpy;
#[cfg(test)]
mod tests;

use std::path::Path;

use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::pickle::{self, Value};
use crate::types::{DrivingFrame, SourceParams, Transform};

/// FLAME expression coefficients per frame.
pub const EXPR_LEN: usize = 100;
/// FLAME identity coefficients.
pub const SHAPE_LEN: usize = 300;
/// Largest accepted |R^T R - I| entry and |det R - 1|. The tracker's rotations are orthonormal to
/// ~1e-6 in f32; 1e-3 still admits values printed with 4-5 significant digits, while a scaled, sheared
/// or mirrored matrix is off by far more.
pub const ROTATION_TOLERANCE: f32 = 1e-3;

fn input_err(source: &str, frame: &str, field: &str, what: impl Into<String>) -> Error {
    Error::Input { source_name: source.into(), frame: frame.into(), field: field.into(), what: what.into() }
}

/// Reads driving frames, choosing the format by extension: `.pkl` (tracker pickle) or `.jsonl`/`.json`.
pub fn read_driving(path: &Path) -> Result<Vec<DrivingFrame>> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.into(), source })?;
    let name = path.display().to_string();
    match path.extension().and_then(|e| e.to_str()) {
        Some("pkl") | Some("pickle") => parse_tracker_pickle(&bytes, &name),
        Some("jsonl") | Some("json") => {
            let text = std::str::from_utf8(&bytes).map_err(|e| input_err(&name, "-", "-", format!("not UTF-8 text: {e}")))?;
            parse_jsonl(text, &name)
        }
        other => Err(input_err(&name, "-", "-", format!("unknown driving format {other:?}: expected .pkl or .jsonl"))),
    }
}

/// Checks lengths, finiteness and the rotation of one frame.
pub fn validate_frame(f: &DrivingFrame, source: &str) -> Result<()> {
    let err = |field: &str, what: String| input_err(source, &f.key, field, what);
    if f.expcode.len() != EXPR_LEN {
        return Err(err("expcode", format!("expected {EXPR_LEN} values, found {}", f.expcode.len())));
    }
    if let Some(s) = &f.shapecode {
        if s.len() != SHAPE_LEN {
            return Err(err("shapecode", format!("expected {SHAPE_LEN} values, found {}", s.len())));
        }
    }
    let flat_t: Vec<f32> = f.transform.iter().flatten().copied().collect();
    let fields: [(&str, &[f32]); 5] = [
        ("expcode", &f.expcode),
        ("posecode", &f.posecode),
        ("eyecode", &f.eyecode),
        ("transform_matrix", &flat_t),
        ("shapecode", f.shapecode.as_deref().unwrap_or(&[])),
    ];
    for (field, values) in fields {
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(err(field, format!("value {i} is {}", values[i])));
        }
    }
    check_rotation(&f.transform).map_err(|what| err("transform_matrix", what))
}

/// `Ok` when the 3x3 block of `t` is a rotation within `ROTATION_TOLERANCE`.
pub fn check_rotation(t: &Transform) -> std::result::Result<(), String> {
    let r = |i: usize, j: usize| t[i][j];
    let mut worst = 0f32;
    for i in 0..3 {
        for j in 0..3 {
            let dot: f32 = (0..3).map(|k| r(k, i) * r(k, j)).sum();
            worst = worst.max((dot - if i == j { 1.0 } else { 0.0 }).abs());
        }
    }
    let det = r(0, 0) * (r(1, 1) * r(2, 2) - r(1, 2) * r(2, 1)) - r(0, 1) * (r(1, 0) * r(2, 2) - r(1, 2) * r(2, 0))
        + r(0, 2) * (r(1, 0) * r(2, 1) - r(1, 1) * r(2, 0));
    if worst > ROTATION_TOLERANCE || (det - 1.0).abs() > ROTATION_TOLERANCE || !det.is_finite() {
        return Err(format!(
            "the 3x3 block is not a rotation: max |R^T R - I| = {worst:e}, det = {det} (tolerance {ROTATION_TOLERANCE:e})"
        ));
    }
    Ok(())
}

/// The integer after the last `_` of a tracker frame key, used to order frames.
fn frame_index(key: &str) -> Option<i64> {
    key.rsplit('_').next()?.parse().ok()
}

fn fixed<const N: usize>(v: &[f32], source: &str, frame: &str, field: &str) -> Result<[f32; N]> {
    v.try_into().map_err(|_| input_err(source, frame, field, format!("expected {N} values, found {}", v.len())))
}

fn transform_from(v: &[f32], source: &str, frame: &str) -> Result<Transform> {
    if v.len() != 12 {
        return Err(input_err(source, frame, "transform_matrix", format!("expected 3x4 = 12 values, found {}", v.len())));
    }
    let mut t = [[0f32; 4]; 3];
    for (i, row) in t.iter_mut().enumerate() {
        row.copy_from_slice(&v[4 * i..4 * i + 4]);
    }
    Ok(t)
}

/// Parses the official tracker's pickle (`optim.pkl`, `smoothed.pkl`).
pub fn parse_tracker_pickle(bytes: &[u8], source: &str) -> Result<Vec<DrivingFrame>> {
    let root = pickle::load(bytes, numpy::NUMPY_GLOBALS).map_err(|e| input_err(source, "-", "-", e.to_string()))?;
    let entries =
        root.as_dict().ok_or_else(|| input_err(source, "-", "-", format!("expected a dict of frames, found a {}", root.kind())))?;
    let mut frames = Vec::with_capacity(entries.len());
    for (k, record) in entries {
        let key = match k {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            other => return Err(input_err(source, "-", "-", format!("a frame key is a {}, not a string", other.kind()))),
        };
        let field = |name: &str, required: bool| -> Result<Option<numpy::Array>> {
            match record.get(name) {
                Some(v) => numpy::array(v).map(Some).map_err(|what| input_err(source, &key, name, what)),
                None if required => Err(input_err(source, &key, name, "missing")),
                None => Ok(None),
            }
        };
        let get = |name: &str| -> Result<Vec<f32>> { Ok(field(name, true)?.map(|a| a.data).unwrap_or_default()) };
        let frame = DrivingFrame {
            expcode: get("expcode")?,
            posecode: fixed(&get("posecode")?, source, &key, "posecode")?,
            eyecode: fixed(&get("eyecode")?, source, &key, "eyecode")?,
            transform: transform_from(&get("transform_matrix")?, source, &key)?,
            shapecode: field("shapecode", false)?.map(|a| a.data),
            face: true,
            key,
        };
        validate_frame(&frame, source)?;
        frames.push(frame);
    }
    // Stable: keys without a numeric suffix keep their file order, after the numbered ones.
    frames.sort_by_key(|f| frame_index(&f.key).map_or((1, 0), |i| (0, i)));
    Ok(frames)
}

fn json_floats(v: &Json, source: &str, frame: &str, field: &str) -> Result<Vec<f32>> {
    let flat: Vec<&Json> = match v {
        Json::Array(rows) if rows.iter().all(Json::is_array) => rows.iter().flat_map(|r| r.as_array().into_iter().flatten()).collect(),
        Json::Array(items) => items.iter().collect(),
        other => return Err(input_err(source, frame, field, format!("expected an array of numbers, found {other}"))),
    };
    flat.iter()
        .enumerate()
        .map(|(i, x)| {
            x.as_f64().map(|f| f as f32).ok_or_else(|| input_err(source, frame, field, format!("value {i} is {x}, not a number")))
        })
        .collect()
}

/// Parses JSON lines: one frame object per non-blank line.
pub fn parse_jsonl(text: &str, source: &str) -> Result<Vec<DrivingFrame>> {
    let mut frames: Vec<DrivingFrame> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = (n + 1).to_string();
        let obj: Json = serde_json::from_str(line).map_err(|e| input_err(source, &format!("line {line_no}"), "-", e.to_string()))?;
        let obj = obj.as_object().ok_or_else(|| input_err(source, &format!("line {line_no}"), "-", "not a JSON object"))?;
        let key = match obj.get("key") {
            Some(Json::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => line_no.clone(),
        };
        let face = match obj.get("face") {
            None => true,
            Some(v) => v.as_bool().ok_or_else(|| input_err(source, &key, "face", format!("expected true or false, found {v}")))?,
        };
        // A frame without a face may leave out its parameters: it repeats the last frame's.
        let previous = frames.last();
        let get = |field: &str| -> Result<Option<Vec<f32>>> { obj.get(field).map(|v| json_floats(v, source, &key, field)).transpose() };
        let need = |field: &str, prev: Option<Vec<f32>>| -> Result<Vec<f32>> {
            match (get(field)?, face, prev) {
                (Some(v), _, _) => Ok(v),
                (None, false, Some(p)) => Ok(p),
                _ => Err(input_err(source, &key, field, "missing")),
            }
        };
        let flat_t = |f: &DrivingFrame| f.transform.iter().flatten().copied().collect::<Vec<f32>>();
        let frame = DrivingFrame {
            expcode: need("expcode", previous.map(|p| p.expcode.clone()))?,
            posecode: fixed(&need("posecode", previous.map(|p| p.posecode.to_vec()))?, source, &key, "posecode")?,
            eyecode: fixed(&need("eyecode", previous.map(|p| p.eyecode.to_vec()))?, source, &key, "eyecode")?,
            transform: transform_from(&need("transform_matrix", previous.map(flat_t))?, source, &key)?,
            shapecode: get("shapecode")?,
            face,
            key,
        };
        validate_frame(&frame, source)?;
        frames.push(frame);
    }
    Ok(frames)
}

fn list(values: &[f32]) -> String {
    let items: Vec<String> = values.iter().map(|v| format!("{v}")).collect();
    format!("[{}]", items.join(","))
}

fn transform_json(t: &Transform) -> String {
    format!("[{}]", t.iter().map(|r| list(r)).collect::<Vec<_>>().join(","))
}

/// One JSON line per frame (shortest round-trip decimal for every f32, so reading back is exact).
pub fn to_jsonl(frames: &[DrivingFrame]) -> String {
    let mut out = String::new();
    for f in frames {
        let key = serde_json::to_string(&f.key).unwrap_or_else(|_| "\"?\"".into());
        out.push_str(&format!(
            "{{\"key\":{key},\"expcode\":{},\"posecode\":{},\"eyecode\":{},\"transform_matrix\":{}",
            list(&f.expcode),
            list(&f.posecode),
            list(&f.eyecode),
            transform_json(&f.transform)
        ));
        if let Some(s) = &f.shapecode {
            out.push_str(&format!(",\"shapecode\":{}", list(s)));
        }
        // Always written, so a reader sees at a glance which frames had a face.
        out.push_str(if f.face { ",\"face\":true}\n" } else { ",\"face\":false}\n" });
    }
    out
}

/// Writes frames as JSON lines (aside, then renamed into place).
pub fn write_jsonl(path: &Path, frames: &[DrivingFrame]) -> Result<()> {
    crate::write_aside::write_bytes_aside(path, to_jsonl(frames).as_bytes())
}

/// Parses source parameters: `{"shapecode": [300], "transform_matrix": [[4],[4],[4]]}`.
pub fn parse_source_params(text: &str, source: &str) -> Result<SourceParams> {
    let obj: Json = serde_json::from_str(text).map_err(|e| input_err(source, "source", "-", e.to_string()))?;
    let field = |name: &str| {
        obj.get(name).ok_or_else(|| input_err(source, "source", name, "missing")).and_then(|v| json_floats(v, source, "source", name))
    };
    let params = SourceParams { shapecode: field("shapecode")?, transform: transform_from(&field("transform_matrix")?, source, "source")? };
    // Reuse the frame checks: the source is a frame with a neutral expression.
    let as_frame = DrivingFrame {
        key: "source".into(),
        expcode: vec![0.0; EXPR_LEN],
        posecode: [0.0; 6],
        eyecode: [0.0; 6],
        transform: params.transform,
        shapecode: Some(params.shapecode.clone()),
        face: true,
    };
    validate_frame(&as_frame, source)?;
    Ok(params)
}

/// Reads a source parameters JSON file.
pub fn read_source_params(path: &Path) -> Result<SourceParams> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.into(), source })?;
    parse_source_params(&text, &path.display().to_string())
}

/// Source parameters as JSON text.
pub fn source_params_json(p: &SourceParams) -> String {
    format!("{{\n  \"shapecode\": {},\n  \"transform_matrix\": {}\n}}\n", list(&p.shapecode), transform_json(&p.transform))
}

/// Writes source parameters as JSON.
pub fn write_source_params(path: &Path, p: &SourceParams) -> Result<()> {
    std::fs::write(path, source_params_json(p)).map_err(|source| Error::Io { path: path.into(), source })
}
