//! The conversion: open the checkpoint and FLAME asset, infer and check the configuration, decide each
//! tensor's precision, then stream tensors one at a time into a file written aside and renamed into
//! place. Equal inputs and options give byte-identical output (no timestamps; fixed order).

use std::collections::HashMap;
use std::path::PathBuf;

use gaga_kernels::qgemm::ActQuant;
use gaga_runtime::format::{self, schema, DType, Layout, Meta, Omitted, PrecisionMeta, Provenance, Reason, TensorEntry};
use gaga_runtime::pickle::Value;
use gaga_runtime::{Error, ModelConfig, Result};

use crate::infer::{infer_config, MetaCfg};
use crate::policy::{decide, default_rules, output_axis, Keep, Precision};
use crate::source::{SourceFile, SourceTensor, SrcDType};
use crate::writer::{write_model, Planned};

/// What to convert and how.
#[derive(Clone, Debug)]
pub struct ConvertOptions {
    pub checkpoint: PathBuf,
    pub flame: PathBuf,
    pub output: PathBuf,
    pub precision: Precision,
    pub keep: Vec<Keep>,
    /// Recorded in the meta section (`provenance.created_by`).
    pub created_by: String,
}

/// Progress of the data phase, reported after each tensor.
#[derive(Clone, Debug)]
pub struct Progress<'a> {
    pub tensor: &'a str,
    pub done: usize,
    pub total: usize,
    pub bytes_written: u64,
    pub bytes_total: u64,
}

/// What was written.
#[derive(Clone, Debug)]
pub struct Summary {
    pub config: ModelConfig,
    pub tensors: usize,
    pub file_bytes: u64,
    pub omitted: Vec<Omitted>,
}

/// Source tensors left out of every model file, with the reason (spec section 7.1).
pub const OMIT: &[(&str, &str)] = &[
    ("percep_loss.*", "perceptual-loss networks: training only"),
    ("upsampler.toRGB.*", "StyleUNet side outputs: unused at inference"),
    ("base_model.dino_model.mask_token", "masked-token training only"),
    ("base_model.refinenet.0.resConfUnit1.*", "refinenet.0 receives a single input"),
];

/// One tensor of the output: its source and the entries it becomes.
pub(crate) struct Job<'a> {
    pub src: &'a SourceFile,
    pub tensor: &'a SourceTensor,
    pub name: String,
    pub precision: Option<Precision>,
}

/// Decisions made by calibration on real inputs (`crate::calibrate`), applied on top of the policy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Calibrated {
    /// Tensors stored at fp16 instead of int8, with the measurement that decided it.
    pub fp16: Vec<(String, String)>,
    /// int8 layers left with a dynamic (per call) activation scale, with the measurement.
    pub dynamic: Vec<(String, String)>,
    /// `(conv weight name, quantiser)`: written as `<name>@act_scale`, f32 `[1]` (scale) or `[2]` (scale,
    /// zero point), next to the weight.
    pub act_scales: Vec<(String, ActQuant)>,
}

/// Converts `opts.checkpoint` + `opts.flame` into `opts.output`. The inputs must not change while
/// this runs (they are memory-mapped).
pub fn convert(opts: &ConvertOptions, progress: &mut dyn FnMut(&Progress)) -> Result<Summary> {
    convert_with(opts, &Calibrated::default(), progress)
}

/// [`convert`] with calibration decisions (`gaga convert --calibrate`).
pub fn convert_with(opts: &ConvertOptions, cal: &Calibrated, progress: &mut dyn FnMut(&Progress)) -> Result<Summary> {
    let ckpt = SourceFile::open(&opts.checkpoint)?;
    let flame = SourceFile::open(&opts.flame)?;
    let mut omitted = Vec::new();
    let model = model_tensors(&ckpt, &mut omitted)?;
    let flame_t = flame_tensors(&flame, &mut omitted)?;
    let mut named: Vec<(String, &SourceFile, &SourceTensor)> = Vec::new();
    for (n, t) in model {
        named.push((n, &ckpt, t));
    }
    for (n, t) in flame_t {
        named.push((n, &flame, t));
    }
    let shapes: HashMap<String, Vec<usize>> = named.iter().map(|(n, _, t)| (n.clone(), t.shape.clone())).collect();
    let meta_cfg = read_meta_cfg(ckpt.root.as_ref());
    let config = infer_config(&shapes, &meta_cfg).map_err(|what| {
        let path = if what.contains("`flame.") { opts.flame.clone() } else { opts.checkpoint.clone() };
        Error::Format { path, what }
    })?;
    schema::check_config(&config).map_err(|e| Error::Config(format!("inferred configuration: {e}")))?;

    let required = schema::required_tensors(&config);
    let mut by_name: HashMap<&str, (&SourceFile, &SourceTensor)> = named.iter().map(|(n, f, t)| (n.as_str(), (*f, *t))).collect();
    let mut jobs = Vec::new();
    for r in &required {
        let Some((f, t)) = by_name.remove(r.name.as_str()) else {
            let file = if r.name.starts_with("flame.") { &opts.flame } else { &opts.checkpoint };
            return Err(Error::Format { path: file.clone(), what: format!("tensor `{}` is missing", r.name) });
        };
        if t.shape != r.shape {
            return Err(Error::Shape { name: r.name.clone(), expected: r.shape.clone(), found: t.shape.clone() });
        }
        jobs.push(Job { src: f, tensor: t, name: r.name.clone(), precision: None });
    }
    // Landmark embeddings are optional and shaped differently across FLAME releases; keep them as found.
    let mut rest: Vec<(&str, (&SourceFile, &SourceTensor))> = by_name.into_iter().collect();
    rest.sort_by(|a, b| a.0.cmp(b.0));
    for (name, (f, t)) in rest {
        if !name.starts_with("flame.lmk.") {
            return Err(Error::Format {
                path: f.path.clone(),
                what: format!("unexpected tensor `{name}` (not part of the GAGAvatar architecture)"),
            });
        }
        jobs.push(Job { src: f, tensor: t, name: name.to_string(), precision: None });
    }

    let mut rules = default_rules();
    let mut planned = Vec::new();
    for job in &mut jobs {
        let (mut entry, scale) = plan_entry(job, opts, &rules);
        let (entry_scale, act) = crate::calibrate::apply(job, &mut entry, scale, cal);
        planned.push(Planned { entry, scale: entry_scale, act, job_index: planned.len() });
    }
    // The calibrated decisions go first in the recorded policy (they were applied before the rules).
    rules.splice(0..0, crate::calibrate::recorded_rules(cal));
    omitted.sort_by(|a, b| a.name.cmp(&b.name));
    let meta = Meta {
        config: config.clone(),
        provenance: Provenance {
            checkpoint_sha256: crate::sha256_file(&opts.checkpoint)?,
            flame_sha256: crate::sha256_file(&opts.flame)?,
            converter_version: env!("CARGO_PKG_VERSION").to_string(),
            created_by: opts.created_by.clone(),
        },
        precision: PrecisionMeta {
            requested: opts.precision.name().to_string(),
            keep_overrides: opts.keep.iter().map(Keep::spelled).collect(),
            rules,
        },
        omitted: omitted.clone(),
        layouts: vec![],
    };
    let file_bytes = write_model(&opts.output, &meta, &jobs, planned, progress)?;
    Ok(Summary { config, tensors: jobs.len(), file_bytes, omitted })
}

/// The directory entry for `job` (offset and checksum filled in later) and, for int8, its scale entry.
fn plan_entry(job: &mut Job, opts: &ConvertOptions, rules: &[format::PrecisionRule]) -> (TensorEntry, Option<TensorEntry>) {
    let t = job.tensor;
    let shape: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
    let mut entry = TensorEntry {
        name: job.name.clone(),
        dtype: DType::F32,
        layout: Layout::RowMajor,
        stage: schema::stage_of(&job.name),
        quant_axis: None,
        reason: Reason::Requested,
        shape,
        offset: 0,
        length: 0,
        checksum: 0,
    };
    if !t.dtype.is_float() {
        entry.dtype = if t.dtype == SrcDType::I32 { DType::I32 } else { DType::I64 };
        entry.reason = Reason::IntegerData;
    } else {
        let d = decide(&job.name, t.shape.len(), opts.precision, rules, &opts.keep);
        job.precision = Some(d.precision);
        entry.reason = d.reason;
        entry.dtype = match d.precision {
            Precision::Fp32 => DType::F32,
            Precision::Fp16 => DType::F16,
            Precision::Int8 => DType::I8,
        };
    }
    let mut scale = None;
    if entry.dtype == DType::I8 {
        let axis = output_axis(&job.name);
        entry.quant_axis = Some(axis);
        let channels = t.shape[axis as usize] as u64;
        let mut s = entry.clone();
        s.name = format!("{}@scale", job.name);
        s.dtype = DType::F32;
        s.quant_axis = None;
        s.reason = Reason::QuantScale;
        s.shape = vec![channels];
        s.length = channels * 4;
        scale = Some(s);
    }
    entry.length = entry.shape.iter().product::<u64>() * entry.dtype.size() as u64;
    (entry, scale)
}

/// State-dict tensors of the checkpoint (under `model` when the root has it), minus `OMIT`.
fn model_tensors<'a>(f: &'a SourceFile, omitted: &mut Vec<Omitted>) -> Result<Vec<(String, &'a SourceTensor)>> {
    let nested = f.tensors.iter().any(|t| t.name.starts_with("model."));
    let mut out = Vec::new();
    for t in &f.tensors {
        let name = if nested {
            match t.name.strip_prefix("model.") {
                Some(n) => n,
                None => continue,
            }
        } else {
            t.name.as_str()
        };
        if let Some((_, why)) = OMIT.iter().find(|(p, _)| format::meta::glob_match(p, name)) {
            omitted.push(Omitted { name: name.to_string(), reason: why.to_string() });
        } else {
            out.push((name.to_string(), t));
        }
    }
    if out.is_empty() {
        return Err(Error::Format { path: f.path.clone(), what: "holds no state-dict tensors".into() });
    }
    Ok(out)
}

/// FLAME arrays renamed to `flame.*` (`flame_model.f` is `flame.faces`), landmarks to `flame.lmk.*`.
fn flame_tensors<'a>(f: &'a SourceFile, omitted: &mut Vec<Omitted>) -> Result<Vec<(String, &'a SourceTensor)>> {
    let mut out = Vec::new();
    for t in &f.tensors {
        let name = if let Some(k) = t.name.strip_prefix("flame_model.") {
            if k == "f" {
                "flame.faces".to_string()
            } else {
                format!("flame.{k}")
            }
        } else if let Some(k) = t.name.strip_prefix("lmk_embeddings.") {
            format!("flame.lmk.{k}")
        } else {
            omitted.push(Omitted { name: t.name.clone(), reason: "FLAME asset entry the runtime does not use".into() });
            continue;
        };
        out.push((name, t));
    }
    if out.is_empty() {
        return Err(Error::Format { path: f.path.clone(), what: "holds no `flame_model.*` arrays (expected FLAME_with_eye.pt)".into() });
    }
    Ok(out)
}

/// `meta_cfg.DATASET.{POINT_PLANE_SIZE, FOCAL_LENGTH, FLAME_SCALE}` where present.
fn read_meta_cfg(root: Option<&Value>) -> MetaCfg {
    let ds = root.and_then(|r| r.get("meta_cfg")).and_then(|m| m.get("DATASET"));
    let num = |k: &str| ds.and_then(|d| d.get(k)).and_then(Value::as_float);
    MetaCfg {
        plane_size: num("POINT_PLANE_SIZE").filter(|v| *v >= 0.0).map(|v| v as usize),
        focal: num("FOCAL_LENGTH").map(|v| v as f32),
        flame_scale: num("FLAME_SCALE").map(|v| v as f32),
    }
}
