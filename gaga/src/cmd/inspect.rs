//! `gaga inspect`: a model file's configuration, tensors by stage and precision, omitted source
//! tensors, and what a per-frame session needs; `--verify` checks every tensor checksum.

use std::collections::BTreeMap;
use std::path::PathBuf;

use gaga_runtime::format::{DType, Stage};
use gaga_runtime::model::Model;
use gaga_runtime::{ModelConfig, Weights};
use serde_json::json;

use super::CmdResult;

#[derive(clap::Args)]
pub struct Args {
    /// The model file.
    pub model: PathBuf,
    /// Check every tensor's checksum (reads the whole file).
    #[arg(long)]
    pub verify: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

const DTYPES: [DType; 6] = [DType::F32, DType::F16, DType::I8, DType::I32, DType::I64, DType::U8];

/// Bytes in the largest binary unit that keeps the number at or above 1.
fn human(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// Writes `text` to stdout; a closed pipe (`gaga inspect | head`) is not an error.
fn emit(text: &str) -> CmdResult {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Bytes of fp32 activations a per-frame refiner pass holds at its peak, roughly: the splatted
/// feature image, the encoder's skip features, and three working buffers of the widest level.
pub fn frame_activation_estimate(c: &ModelConfig) -> u64 {
    let r = &c.refiner;
    let side = |i: usize| 4u64 << i;
    let skips: u64 = r.unet_channels.iter().enumerate().map(|(i, &ch)| ch as u64 * side(i) * side(i)).sum();
    let widest = (0..r.unet_channels.len())
        .map(|i| r.unet_channels[i].max(r.decoder_channels.get(i).copied().unwrap_or(0)) as u64 * side(i) * side(i))
        .max()
        .unwrap_or(0);
    let splat = r.in_channels as u64 * (r.size * r.size) as u64;
    4 * (splat + skips + 3 * widest)
}

/// What calibration decided (`Reason::Calibrated`): layers kept at fp16 with the recorded measurement,
/// and the activation quantisers `<weight>@act_scale` (scale and zero point).
pub struct CalibrationView {
    pub fp16: Vec<(String, String)>,
    /// int8 layers calibration left with a dynamic activation scale.
    pub dynamic: Vec<(String, String)>,
    /// `(conv, scale, zero point)`: `x ~= scale * (q - zero)`.
    pub act_scales: Vec<(String, f32, f32)>,
}

pub fn calibration(m: &Model) -> CalibrationView {
    let dynamic = m.meta().precision.rules.iter().filter(|r| r.precision == "int8" && r.reason.starts_with("calibrated:"));
    let mut v =
        CalibrationView { fp16: vec![], dynamic: dynamic.map(|r| (r.pattern.clone(), r.reason.clone())).collect(), act_scales: vec![] };
    for e in m.tensors().iter().filter(|e| e.reason == gaga_runtime::format::Reason::Calibrated) {
        if let Some(base) = e.name.strip_suffix("@act_scale") {
            let values = m.f32(&e.name).unwrap_or_default();
            let (scale, zero) = (values.first().copied().unwrap_or(f32::NAN), values.get(1).copied().unwrap_or(0.0));
            v.act_scales.push((base.to_string(), scale, zero));
        } else {
            let why = m.meta().precision.rules.iter().find(|r| r.pattern == e.name).map(|r| r.reason.clone()).unwrap_or_default();
            v.fp16.push((e.name.clone(), why));
        }
    }
    v
}

pub fn run(args: Args) -> CmdResult {
    let m = Model::open(&args.model)?;
    let verified = if args.verify {
        m.verify()?;
        Some(true)
    } else {
        None
    };
    // stage -> dtype -> (tensors, bytes)
    let mut table: BTreeMap<Stage, BTreeMap<&str, (usize, u64)>> = BTreeMap::new();
    for e in m.tensors() {
        let cell = table.entry(e.stage).or_default().entry(e.dtype.name()).or_default();
        cell.0 += 1;
        cell.1 += e.length;
    }
    let per_frame = m.stage_bytes(Stage::Frame) + m.stage_bytes(Stage::Flame);
    let activations = frame_activation_estimate(m.config());
    let p = &m.header().preamble;
    let meta = m.meta();
    let cal = calibration(&m);
    if args.json {
        let stages: serde_json::Map<String, serde_json::Value> = table
            .iter()
            .map(|(s, d)| {
                (
                    s.name().to_string(),
                    json!(d
                        .iter()
                        .map(|(k, (n, b))| (k.to_string(), json!({"tensors": n, "bytes": b})))
                        .collect::<serde_json::Map<_, _>>()),
                )
            })
            .collect();
        let tensors: Vec<_> = m
            .tensors()
            .iter()
            .map(|e| json!({"name": e.name, "dtype": e.dtype.name(), "layout": e.layout.name(), "shape": e.shape, "stage": e.stage.name(), "reason": e.reason.name(), "bytes": e.length}))
            .collect();
        let out = json!({
            "path": args.model.display().to_string(),
            "version": format!("{}.{}", p.major, p.minor),
            "file_bytes": p.file_length,
            "config": meta.config,
            "provenance": meta.provenance,
            "precision": meta.precision,
            "stages": stages,
            "omitted": meta.omitted,
            "per_frame_weight_bytes": per_frame,
            "per_frame_activation_estimate_bytes": activations,
            "verified": verified,
            "calibration": {
                "fp16": cal.fp16.iter().map(|(n, why)| json!({"name": n, "reason": why})).collect::<Vec<_>>(),
                "dynamic": cal.dynamic.iter().map(|(n, why)| json!({"name": n, "reason": why})).collect::<Vec<_>>(),
                "act_scales": cal.act_scales.iter().map(|(n, s, z)| (n.clone(), json!({"scale": s, "zero_point": *z as i32}))).collect::<serde_json::Map<_, _>>(),
            },
            "tensors": tensors,
        });
        return emit(&(serde_json::to_string_pretty(&out)? + "\n"));
    }
    let c = m.config();
    let mut o = String::new();
    use std::fmt::Write as _;
    writeln!(
        o,
        "{}: format {}.{}, {} bytes ({}), {} tensors",
        args.model.display(),
        p.major,
        p.minor,
        p.file_length,
        human(p.file_length),
        m.tensors().len()
    )?;
    let pv = &meta.provenance;
    writeln!(
        o,
        "provenance: checkpoint sha256 {}, FLAME sha256 {}, converter {}, by {}",
        pv.checkpoint_sha256, pv.flame_sha256, pv.converter_version, pv.created_by
    )?;
    let keep = if meta.precision.keep_overrides.is_empty() { "none".to_string() } else { meta.precision.keep_overrides.join(" ") };
    writeln!(o, "precision: requested {}, overrides {keep}, {} policy rules", meta.precision.requested, meta.precision.rules.len())?;
    writeln!(
        o,
        "config: image {}, DINO dim {} depth {} heads {} patch {} input {}, DPT {:?} -> {}, planes {}x{}, {} Gaussians x {} channels",
        c.image_size,
        c.dino.dim,
        c.dino.depth,
        c.dino.heads,
        c.dino.patch_size,
        c.dino.input_size,
        c.dpt.project_channels,
        c.feature_dim,
        c.plane_size,
        c.plane_size,
        c.gaussians(),
        c.gaussian_channels
    )?;
    writeln!(
        o,
        "        refiner {} style {} unet {:?} decoder {:?}; FLAME {} vertices {} faces {}+{} params",
        c.refiner.size,
        c.refiner.style_dim,
        c.refiner.unet_channels,
        c.refiner.decoder_channels,
        c.flame.vertices,
        c.flame.faces,
        c.flame.shape_params,
        c.flame.expr_params
    )?;
    writeln!(o, "\n{:<8} {:>7} {}", "stage", "tensors", DTYPES.map(|d| format!("{:>12}", d.name())).join(""))?;
    for (stage, dtypes) in &table {
        let n: usize = dtypes.values().map(|v| v.0).sum();
        let cells: String =
            DTYPES.iter().map(|d| format!("{:>12}", dtypes.get(d.name()).map(|v| human(v.1)).unwrap_or_else(|| "-".into()))).collect();
        writeln!(o, "{:<8} {n:>7} {cells}", stage.name())?;
    }
    writeln!(o, "\nper-frame session: {} of weights (frame + flame), about {} of fp32 activations", human(per_frame), human(activations))?;
    let mut reasons: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for o in &meta.omitted {
        reasons.entry(o.reason.as_str()).or_default().push(&o.name);
    }
    writeln!(o, "omitted {} source tensors:", meta.omitted.len())?;
    for (why, names) in reasons {
        writeln!(o, "  {} ({why}): {}", names.len(), names.join(", "))?;
    }
    if !cal.fp16.is_empty() || !cal.act_scales.is_empty() || !cal.dynamic.is_empty() {
        let (f, d, a) = (cal.fp16.len(), cal.dynamic.len(), cal.act_scales.len());
        writeln!(o, "calibration: {f} layers kept fp16, {d} with dynamic activation scales, {a} static activation scales")?;
        for (n, why) in &cal.fp16 {
            writeln!(o, "  fp16 {n}: {why}")?;
        }
        for (n, why) in &cal.dynamic {
            writeln!(o, "  dynamic {n}: {why}")?;
        }
        for (n, s, z) in &cal.act_scales {
            writeln!(o, "  act_scale {n}: {s:.6e}, zero point {z} (x from {:.4} to {:.4})", s * (-127.0 - z), s * (127.0 - z))?;
        }
    }
    for l in &meta.layouts {
        let n = m.tensors().iter().filter(|e| e.layout as u8 == l.code).count();
        writeln!(o, "layout {} (code {}): {n} tensors, {} panels of {} rows", l.name, l.code, l.element, l.panel_rows)?;
    }
    if verified.is_some() {
        writeln!(o, "verify: all {} tensor checksums match", m.tensors().len())?;
    }
    emit(&o)
}
