//! Turns the unpickled object tree of a torch checkpoint into `SourceTensor`s: finds every
//! `_rebuild_tensor_v2` call under nested dicts and names it by its dotted key path.

use std::ops::Range;

use gaga_runtime::pickle::Value;

use crate::source::{SourceTensor, SrcDType};

/// The globals `torch.load(weights_only=True)` accepts for a plain state dict; nothing else is read.
pub const ALLOWED: &[(&str, &str)] = &[
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch", "Size"),
    ("_codecs", "encode"),
    ("torch", "DoubleStorage"),
    ("torch", "FloatStorage"),
    ("torch", "HalfStorage"),
    ("torch", "BFloat16Storage"),
    ("torch", "LongStorage"),
    ("torch", "IntStorage"),
    ("torch", "ShortStorage"),
    ("torch", "CharStorage"),
    ("torch", "ByteStorage"),
    ("torch", "BoolStorage"),
];

fn storage_dtype(name: &str) -> Option<SrcDType> {
    Some(match name {
        "DoubleStorage" => SrcDType::F64,
        "FloatStorage" => SrcDType::F32,
        "HalfStorage" => SrcDType::F16,
        "BFloat16Storage" => SrcDType::BF16,
        "LongStorage" => SrcDType::I64,
        "IntStorage" => SrcDType::I32,
        "ShortStorage" => SrcDType::I16,
        "CharStorage" => SrcDType::I8,
        "ByteStorage" => SrcDType::U8,
        "BoolStorage" => SrcDType::Bool,
        _ => return None,
    })
}

/// Every tensor under `root`, in pickle order. `storage` maps a storage key to its zip entry's bytes.
pub(super) fn collect_tensors(root: &Value, storage: &dyn Fn(&str) -> Option<Range<usize>>) -> Result<Vec<SourceTensor>, String> {
    let mut out = Vec::new();
    walk(root, "", storage, &mut out)?;
    Ok(out)
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn walk(v: &Value, prefix: &str, storage: &dyn Fn(&str) -> Option<Range<usize>>, out: &mut Vec<SourceTensor>) -> Result<(), String> {
    match v {
        // A state dict's BUILD carries `_metadata` (module versions), which inference does not need.
        Value::Build { obj, .. } => walk(obj, prefix, storage, out)?,
        Value::Reduce { func, args, .. } if func.1 == "_rebuild_tensor_v2" => out.push(tensor(prefix, args, storage)?),
        Value::Reduce { func, args, .. } if func.1 == "_rebuild_parameter" => match args.as_tuple() {
            Some([data, ..]) => walk(data, prefix, storage, out)?,
            _ => return Err(format!("`{prefix}`: _rebuild_parameter without a tensor argument")),
        },
        Value::Dict(_) | Value::Reduce { .. } => {
            for (k, x) in v.as_dict().unwrap_or(&[]) {
                let key = match k {
                    Value::Str(s) => s.clone(),
                    Value::Int(i) => i.to_string(),
                    other => return Err(format!("`{prefix}`: dict key is a {}, expected a string", other.kind())),
                };
                walk(x, &join(prefix, &key), storage, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn usizes(v: &Value, what: &str, name: &str) -> Result<Vec<usize>, String> {
    let seq = v.as_seq().ok_or_else(|| format!("tensor `{name}`: {what} is a {}, expected a tuple", v.kind()))?;
    seq.iter()
        .map(|x| {
            x.as_int()
                .and_then(|i| usize::try_from(i).ok())
                .ok_or_else(|| format!("tensor `{name}`: {what} holds {x:?}, expected non-negative integers"))
        })
        .collect()
}

/// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])`.
fn tensor(name: &str, args: &Value, storage: &dyn Fn(&str) -> Option<Range<usize>>) -> Result<SourceTensor, String> {
    let a = args.as_tuple().ok_or_else(|| format!("tensor `{name}`: rebuild arguments are a {}", args.kind()))?;
    if a.len() < 4 {
        return Err(format!("tensor `{name}`: {} rebuild arguments, expected at least 4", a.len()));
    }
    let Value::PersistentId(pid) = &a[0] else {
        return Err(format!("tensor `{name}`: storage is a {}, expected a persistent id", a[0].kind()));
    };
    // ('storage', storage_type, key, location, numel)
    let p = pid.as_tuple().unwrap_or(&[]);
    let (type_name, key, numel) = match p {
        [Value::Str(tag), Value::Global { name: ty, .. }, key, _location, numel] if tag == "storage" => (ty, key, numel),
        _ => return Err(format!("tensor `{name}`: persistent id {pid:?} is not ('storage', type, key, location, numel)")),
    };
    let dtype = storage_dtype(type_name).ok_or_else(|| format!("tensor `{name}`: unknown storage type `{type_name}`"))?;
    let key = match key {
        Value::Str(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        other => return Err(format!("tensor `{name}`: storage key is a {}", other.kind())),
    };
    let numel = numel.as_int().and_then(|n| usize::try_from(n).ok()).ok_or_else(|| format!("tensor `{name}`: storage size {numel:?}"))?;
    let entry = storage(&key).ok_or_else(|| format!("tensor `{name}`: storage `data/{key}` is not in the archive"))?;
    let bytes = numel.checked_mul(dtype.size()).filter(|&b| b <= entry.len()).ok_or_else(|| {
        format!(
            "tensor `{name}`: storage `data/{key}` declares {numel} elements of {} bytes but the entry has {} bytes",
            dtype.size(),
            entry.len()
        )
    })?;
    let offset =
        a[1].as_int().and_then(|i| usize::try_from(i).ok()).ok_or_else(|| format!("tensor `{name}`: storage offset {:?}", a[1]))?;
    let shape = usizes(&a[2], "size", name)?;
    let strides = usizes(&a[3], "stride", name)?;
    if shape.len() != strides.len() {
        return Err(format!("tensor `{name}`: size has {} dimensions, stride {}", shape.len(), strides.len()));
    }
    Ok(SourceTensor { name: name.to_string(), dtype, shape, strides, offset, storage: entry.start..entry.start + bytes })
}
