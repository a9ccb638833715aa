//! Calibrated int8 (`gaga convert --precision int8 --calibrate DIR`): convert at fp32 first, lift the
//! portraits in DIR with it and render its driving frames, then
//! 1. set each refiner conv's activation scale from the fp32 activations it sees (`<weight>@act_scale`),
//! 2. measure, layer by layer, what int8 costs at the output: the PSNR of the frames when only that
//!    layer is int8 (everything else as the fp32 model),
//! 3. start from every eligible layer at int8 and move the worst layers to fp16, one at a time, until the
//!    smallest PSNR over the calibration frames reaches the target plus a margin,
//!
//! and convert again at int8 with those decisions (`Reason::Calibrated` in the directory, one recorded
//! rule per kept layer with its measurement in the meta section). Only the per-frame refiner is
//! calibrated: the lift runs once per person and its int8 layers follow the policy.
//!
//! Every measurement renders through [`Simulated`], a `Weights` view of the fp32 model in which chosen
//! tensors are replaced by exactly what the int8 (or fp16) file will hold, made by the same `quant`
//! functions as the writer, so the refiner runs the same code on the same values as it will on the file.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use gaga_runtime::eval::psnr;
use gaga_runtime::format::{DType, Layout, PrecisionRule, Reason, Stage, TensorEntry};
use gaga_runtime::image_io::{load_image, CropBox};
use gaga_runtime::model::Model;
use gaga_runtime::refiner::{NoiseMode, Refiner};
use gaga_runtime::render::{FrameRenderer, RenderOptions};
use gaga_runtime::{driving, lift, DrivingFrame, Error, Image, ModelConfig, Result, SourceParams, Stored, Weights};

use crate::convert::{convert, convert_with, Calibrated, ConvertOptions, Job, Progress, Summary};
use crate::policy::{decide, default_rules, output_axis, Precision};
use crate::quant::{quantise_i8, to_f16_bytes};

/// Source parameters used for a portrait without its own `NAME.json`.
const DEFAULT_SOURCE: &str = include_str!("../../assets/defaults/source_params.json");
/// Driving frames used when DIR holds no `.jsonl` or `.pkl`.
const DEFAULT_DRIVER: &str = include_str!("../../assets/defaults/expressions.jsonl");

/// How to calibrate.
#[derive(Clone, Debug)]
pub struct CalibrateOptions {
    /// Portraits (`*.png`, `*.jpg`; optional `NAME.json` source parameters and `NAME.crop` = `x,y,size`)
    /// and driving files (`*.jsonl`, `*.pkl`).
    pub dir: PathBuf,
    /// Smallest acceptable PSNR (dB) of a calibration frame against fp32.
    pub target_psnr: f64,
    /// Extra dB the calibration aims for, because unseen inputs will do somewhat worse.
    pub margin_db: f64,
    /// Driving frames per portrait, spread evenly over all driving frames.
    pub frames_per_portrait: usize,
}

impl CalibrateOptions {
    /// The int8 target (35 dB) with a 2 dB margin, 8 frames per portrait.
    pub fn new(dir: PathBuf) -> Self {
        CalibrateOptions { dir, target_psnr: 35.0, margin_db: 2.0, frames_per_portrait: 8 }
    }
}

/// One calibrated layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerReport {
    pub name: String,
    /// Smallest PSNR over the calibration frames with only this layer at int8.
    pub psnr_alone: f64,
    pub act_scale: Option<f32>,
    pub kept_fp16: bool,
}

/// What calibration measured and decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CalibrationReport {
    pub portraits: usize,
    pub frames: usize,
    pub layers: Vec<LayerReport>,
    /// Smallest PSNR with every eligible layer at int8, and with the decisions applied.
    pub psnr_all_int8: f64,
    pub psnr_final: f64,
    pub decisions: Calibrated,
}

/// A portrait to lift.
pub struct Portrait {
    pub name: String,
    pub image: Image,
    pub params: SourceParams,
}

/// Calibration inputs read from a directory.
pub struct Inputs {
    pub portraits: Vec<Portrait>,
    pub frames: Vec<DrivingFrame>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// Reads the portraits and driving frames of `dir` (sorted by name, so runs are reproducible).
pub fn load_inputs(dir: &Path, image_size: usize) -> Result<Inputs> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir).map_err(io(dir))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    let ext = |p: &Path| p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    let (mut portraits, mut frames) = (Vec::new(), Vec::new());
    for p in &paths {
        match ext(p).as_str() {
            "png" | "jpg" | "jpeg" => {
                let crop = match std::fs::read_to_string(p.with_extension("crop")) {
                    Ok(t) => Some(t.trim().parse::<CropBox>().map_err(|what| Error::Format { path: p.with_extension("crop"), what })?),
                    Err(_) => None,
                };
                let json = p.with_extension("json");
                let params = if json.exists() {
                    driving::read_source_params(&json)?
                } else {
                    driving::parse_source_params(DEFAULT_SOURCE, "bundled source_params.json")?
                };
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                portraits.push(Portrait { name, image: load_image(p, image_size, crop)?, params });
            }
            "jsonl" | "pkl" => frames.extend(driving::read_driving(p)?),
            _ => {}
        }
    }
    if portraits.is_empty() {
        return Err(Error::Format { path: dir.to_path_buf(), what: "calibration directory holds no portrait (*.png, *.jpg)".into() });
    }
    if frames.is_empty() {
        frames = driving::parse_jsonl(DEFAULT_DRIVER, "bundled expressions.jsonl")?;
    }
    Ok(Inputs { portraits, frames })
}

/// An int8 tensor: values, per-channel scales, the channel axis and the shape.
type Int8 = (Vec<i8>, Vec<f32>, usize, Vec<usize>);

/// A `Weights` view of `base` where the tensors in `precision` are replaced by their int8 or fp16
/// storage (and int8 ones get their `@act_scale`).
pub struct Simulated<'a> {
    pub base: &'a dyn Weights,
    pub precision: HashMap<String, Precision>,
    pub act_scales: &'a BTreeMap<String, f32>,
}

impl Simulated<'_> {
    fn act(&self, name: &str) -> Option<f32> {
        let base = name.strip_suffix("@act_scale")?;
        (self.precision.get(base) == Some(&Precision::Int8)).then(|| self.act_scales.get(base).copied()).flatten()
    }
    /// Values, per-channel scales, axis and shape of `name` quantised as the writer does.
    fn int8(&self, name: &str) -> Result<Int8> {
        let (v, shape) = (self.base.f32(name)?, self.base.shape(name)?);
        let axis = output_axis(name) as usize;
        let (q, s) = quantise_i8(&v, &shape, axis);
        Ok((q, s, axis, shape))
    }
}

impl Weights for Simulated<'_> {
    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        match self.act(name) {
            Some(_) => Ok(vec![1]),
            None => self.base.shape(name),
        }
    }
    fn f32(&self, name: &str) -> Result<Cow<'_, [f32]>> {
        if let Some(s) = self.act(name) {
            return Ok(Cow::Owned(vec![s]));
        }
        match self.precision.get(name) {
            Some(Precision::Int8) => {
                let (q, s, axis, shape) = self.int8(name)?;
                let inner: usize = shape[axis + 1..].iter().product::<usize>().max(1);
                Ok(Cow::Owned(q.iter().enumerate().map(|(i, &x)| x as f32 * s[(i / inner) % s.len().max(1)]).collect()))
            }
            Some(Precision::Fp16) => Ok(Cow::Owned(self.base.f32(name)?.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect())),
            _ => self.base.f32(name),
        }
    }
    fn stored(&self, name: &str) -> Result<Stored<'_>> {
        let shape = self.shape(name)?;
        let (dtype, bytes, scales, quant_axis) = match self.precision.get(name) {
            Some(Precision::Int8) if self.act(name).is_none() => {
                let (q, s, axis, _) = self.int8(name)?;
                (DType::I8, q.iter().map(|&x| x as u8).collect(), Some(Cow::Owned(s)), Some(axis))
            }
            Some(Precision::Fp16) => (DType::F16, to_f16_bytes(&self.base.f32(name)?), None, None),
            _ => return self.base.stored(name),
        };
        Ok(Stored { dtype, layout: Layout::RowMajor, shape, bytes: Cow::Owned(bytes), scales, quant_axis })
    }
}

/// One calibration sample: a fp32 splat and the fp32 frame it became.
struct Sample {
    splat: Vec<f32>,
    rgb: Vec<f32>,
}

/// Lifts every portrait with `fp32` and renders `frames_per_portrait` evenly spaced driving frames.
fn reference_samples(fp32: &dyn Weights, cfg: &ModelConfig, inputs: &Inputs, per_portrait: usize) -> Result<Vec<Sample>> {
    let n = inputs.frames.len();
    let picks: Vec<usize> = (0..per_portrait.clamp(1, n)).map(|k| k * n / per_portrait.clamp(1, n)).collect();
    let mut out = Vec::new();
    let mut image = Image::new(cfg.image_size, cfg.image_size);
    for p in &inputs.portraits {
        let avatar = lift::lift(fp32, cfg, &p.image, &p.params)?;
        let mut r = FrameRenderer::new(fp32, cfg, RenderOptions::default())?;
        for &i in &picks {
            let t = r.render_traced(&avatar, &inputs.frames[i], &mut image)?;
            out.push(Sample { splat: t.splat, rgb: image.data.clone() });
        }
    }
    Ok(out)
}

/// Smallest PSNR of `w`'s refiner over the samples, against the fp32 frames.
fn score(w: &dyn Weights, cfg: &ModelConfig, samples: &[Sample]) -> Result<f64> {
    let mut r = Refiner::new(w, cfg, NoiseMode::Stored)?;
    let mut out = vec![0.0; cfg.refiner.out_channels * cfg.image_size * cfg.image_size];
    let mut worst = f64::INFINITY;
    for s in samples {
        r.run(&s.splat, &mut out)?;
        out.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
        worst = worst.min(psnr(&out, &s.rgb)?);
    }
    Ok(worst)
}

/// The 99.99th percentile of |x|, the activation range an int8 scale must cover: the maximum is set
/// by a handful of outliers (splat edges, a few hot channels), and clipping those 0.01% costs less
/// than the resolution a max-based scale would lose on every other value.
pub fn robust_abs_max(x: &[f32], buf: &mut Vec<f32>) -> f32 {
    buf.clear();
    buf.extend(x.iter().map(|v| v.abs()).filter(|v| v.is_finite()));
    if buf.is_empty() {
        return 0.0;
    }
    let k = ((buf.len() - 1) as f64 * 0.9999).round() as usize;
    *buf.select_nth_unstable_by(k, f32::total_cmp).1
}

/// Activation scales (robust |x| max over every sample, / 127) of the refiner's convs on fp32 inputs.
fn activation_scales(fp32: &dyn Weights, cfg: &ModelConfig, samples: &[Sample]) -> Result<BTreeMap<String, f32>> {
    let mut r = Refiner::new(fp32, cfg, NoiseMode::Stored)?;
    let mut out = vec![0.0; cfg.refiner.out_channels * cfg.image_size * cfg.image_size];
    let mut range: BTreeMap<String, f32> = BTreeMap::new();
    let mut buf: Vec<f32> = Vec::new();
    for s in samples {
        r.run_observed(&s.splat, &mut out, &mut |name, x| {
            let m = robust_abs_max(x, &mut buf);
            let e = range.entry(name.to_string()).or_insert(0.0);
            *e = e.max(m);
        })?;
    }
    Ok(range.into_iter().filter(|(_, m)| *m > 0.0).map(|(n, m)| (n, m / 127.0)).collect())
}

/// Measures and decides on the fp32 model `fp32` (see the module comment).
pub fn calibrate(
    fp32: &Model,
    inputs: &Inputs,
    opts: &CalibrateOptions,
    keep: &[crate::Keep],
    log: &mut dyn FnMut(&str),
) -> Result<CalibrationReport> {
    let cfg = fp32.config().clone();
    let rules = default_rules();
    let mut policy = HashMap::new();
    for e in fp32.tensors().iter().filter(|e| e.stage == Stage::Frame && e.dtype == DType::F32 && !e.name.contains('@')) {
        let p = decide(&e.name, e.shape.len(), Precision::Int8, &rules, keep).precision;
        if p != Precision::Fp32 {
            policy.insert(e.name.clone(), p);
        }
    }
    let mut eligible: Vec<String> = policy.iter().filter(|(_, p)| **p == Precision::Int8).map(|(n, _)| n.clone()).collect();
    eligible.sort();
    log(&format!(
        "calibration: {} portraits x {} frames, {} int8 layers in the refiner",
        inputs.portraits.len(),
        opts.frames_per_portrait,
        eligible.len()
    ));
    let samples = reference_samples(fp32, &cfg, inputs, opts.frames_per_portrait)?;
    let act_scales = activation_scales(fp32, &cfg, &samples)?;
    let mut act_scales = act_scales;

    let mut layers = Vec::new();
    for (i, name) in eligible.iter().enumerate() {
        let one = Simulated { base: fp32, precision: HashMap::from([(name.clone(), Precision::Int8)]), act_scales: &act_scales };
        let alone = score(&one, &cfg, &samples)?;
        log(&format!("  [{}/{}] {name}: {alone:.2} dB alone", i + 1, eligible.len()));
        layers.push(LayerReport { name: name.clone(), psnr_alone: alone, act_scale: act_scales.get(name).copied(), kept_fp16: false });
    }
    // Worst (lowest PSNR alone) first.
    let mut order: Vec<usize> = (0..layers.len()).collect();
    order.sort_by(|&a, &b| layers[a].psnr_alone.total_cmp(&layers[b].psnr_alone).then(a.cmp(&b)));
    let goal = opts.target_psnr + opts.margin_db;
    let mut current = policy.clone();
    let all_int8 = score(&Simulated { base: fp32, precision: current.clone(), act_scales: &act_scales }, &cfg, &samples)?;
    let mut now = all_int8;
    let mut decisions = Calibrated::default();
    for &i in &order {
        if now >= goal {
            break;
        }
        let name = layers[i].name.clone();
        // First remedy: a dynamic (per call) activation scale instead of the calibrated static one,
        // which clips or wastes range on frames unlike the calibration's; then fp16.
        if let Some(s) = act_scales.remove(&name) {
            let after = score(&Simulated { base: fp32, precision: current.clone(), act_scales: &act_scales }, &cfg, &samples)?;
            if after > now {
                let why = format!(
                    "{:.2} dB alone; whole refiner {now:.2} -> {after:.2} dB with a dynamic activation scale (goal {goal:.1} dB)",
                    layers[i].psnr_alone
                );
                log(&format!("  dynamic {name}: {why}"));
                decisions.dynamic.push((name.clone(), why));
                layers[i].act_scale = None;
                now = after;
                continue;
            }
            act_scales.insert(name.clone(), s);
        }
        current.insert(name.clone(), Precision::Fp16);
        let after = score(&Simulated { base: fp32, precision: current.clone(), act_scales: &act_scales }, &cfg, &samples)?;
        if after <= now {
            // Errors of different layers partly cancel: a promotion that does not help is undone.
            current.insert(layers[i].name.clone(), Precision::Int8);
            log(&format!("  {} stays int8: fp16 would give {after:.2} dB, not above {now:.2} dB", layers[i].name));
            continue;
        }
        let why = format!(
            "{:.2} dB with only this layer int8; whole refiner {now:.2} -> {after:.2} dB keeping it fp16 (goal {goal:.1} dB)",
            layers[i].psnr_alone
        );
        log(&format!("  keep fp16 {}: {why}", layers[i].name));
        decisions.fp16.push((layers[i].name.clone(), why));
        layers[i].kept_fp16 = true;
        now = after;
    }
    decisions.act_scales = layers.iter().filter(|l| !l.kept_fp16).filter_map(|l| l.act_scale.map(|s| (l.name.clone(), s))).collect();
    log(&format!(
        "calibration: all int8 {all_int8:.2} dB, calibrated {now:.2} dB min; {} layers kept fp16, {} with dynamic activation scales",
        decisions.fp16.len(),
        decisions.dynamic.len()
    ));
    Ok(CalibrationReport {
        portraits: inputs.portraits.len(),
        frames: samples.len(),
        layers,
        psnr_all_int8: all_int8,
        psnr_final: now,
        decisions,
    })
}

/// Removes the intermediate fp32 file however calibration ends.
struct Remove(PathBuf);
impl Drop for Remove {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The whole `--calibrate` conversion: fp32 aside, calibrate on it, then `opts` (int8) with the decisions.
pub fn convert_calibrated(
    opts: &ConvertOptions,
    copts: &CalibrateOptions,
    progress: &mut dyn FnMut(&Progress),
    log: &mut dyn FnMut(&str),
) -> Result<(Summary, CalibrationReport)> {
    if opts.precision != Precision::Int8 {
        return Err(Error::Config(format!(
            "--calibrate sets int8 activation scales and decisions: it needs --precision int8, found {}",
            opts.precision.name()
        )));
    }
    let name = opts.output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = opts.output.with_file_name(format!(".{name}.calibration-fp32-{}", std::process::id()));
    let _remove = Remove(tmp.clone());
    let fp32_opts = ConvertOptions { output: tmp.clone(), precision: Precision::Fp32, ..opts.clone() };
    log("calibration: converting at fp32 first");
    convert(&fp32_opts, &mut |_| {})?;
    let model = Model::open(&tmp)?;
    let inputs = load_inputs(&copts.dir, model.config().image_size)?;
    let report = calibrate(&model, &inputs, copts, &opts.keep, log)?;
    drop(model);
    let summary = convert_with(opts, &report.decisions, progress)?;
    Ok((summary, report))
}

/// Applies the calibration to one planned entry: a kept layer becomes fp16 (no scale entry), a
/// calibrated int8 conv gets its `@act_scale` entry. Returns the scale entry and the act entry.
pub(crate) fn apply(
    job: &mut Job,
    entry: &mut TensorEntry,
    scale: Option<TensorEntry>,
    cal: &Calibrated,
) -> (Option<TensorEntry>, Option<(TensorEntry, f32)>) {
    if entry.dtype != DType::I8 {
        return (scale, None);
    }
    if cal.fp16.iter().any(|(n, _)| *n == entry.name) {
        job.precision = Some(Precision::Fp16);
        entry.dtype = DType::F16;
        entry.quant_axis = None;
        entry.reason = Reason::Calibrated;
        entry.length = entry.shape.iter().product::<u64>() * 2;
        return (None, None);
    }
    let act = cal.act_scales.iter().find(|(n, _)| *n == entry.name).map(|&(_, s)| {
        let mut a = entry.clone();
        a.name = format!("{}@act_scale", entry.name);
        (a.dtype, a.layout, a.quant_axis, a.reason, a.shape, a.length) =
            (DType::F32, Layout::RowMajor, None, Reason::Calibrated, vec![1], 4);
        (a, s)
    });
    (scale, act)
}

/// One recorded rule per calibrated decision (exact name, with the measurement): layers kept at fp16,
/// and int8 layers left with a dynamic activation scale (no `@act_scale`).
pub(crate) fn recorded_rules(cal: &Calibrated) -> Vec<PrecisionRule> {
    let rule =
        |n: &String, p: &str, why: &String| PrecisionRule { pattern: n.clone(), precision: p.into(), reason: format!("calibrated: {why}") };
    cal.fp16.iter().map(|(n, why)| rule(n, "fp16", why)).chain(cal.dynamic.iter().map(|(n, why)| rule(n, "int8", why))).collect()
}
