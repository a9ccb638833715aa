//! Calibrated int8 (`gaga convert --precision int8 --calibrate DIR`). Convert at fp32 first, lift the
//! portraits in DIR with it and render its driving frames, then start from the default int8 conversion
//! (the policy, every int8 conv with a dynamic activation scale) and
//! 1. if its smallest PSNR over the calibration frames is below the target plus a margin, move the
//!    refiner layers int8 hurts most (measured one at a time) to fp16, worst first, while a promotion
//!    helps and keeps the per-frame session within a memory budget (an fp16 conv can cost a level its
//!    low-memory plan: tens of MiB at official size);
//! 2. give static activation quantisers (`<weight>@act_scale`, which skip the per-call range pass) to the
//!    int8 convs whose ranges transfer: scales fitted on some calibration groups (portraits, or halves
//!    of the frames when there is one portrait) are scored on the others, and static scales are
//!    adopted, most stable layers first, only while that held-out PSNR stays within a small cost of
//!    the dynamic one. Static scales fitted on one avatar lost 3-4 dB on another at official size
//!    (docs/performance.md), so dynamic stays the default;
//!
//! and convert again at int8 with those decisions (`Reason::Calibrated` in the directory, one recorded
//! rule per fp16 or dynamic layer with its measurement in the meta section). Only the per-frame refiner
//! is calibrated: the lift runs once per person and its int8 layers follow the policy.
//!
//! Every measurement renders through [`Simulated`], a `Weights` view of the fp32 model in which chosen
//! tensors are replaced by exactly what the int8 (or fp16) file will hold, made by the same `quant`
//! functions as the writer, so the refiner runs the same code on the same values as it will on the file.

mod bench;
mod inputs;
mod simulated;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use gaga_kernels::qgemm::ActQuant;
use gaga_runtime::format::{DType, Layout, PrecisionRule, Reason, Stage, TensorEntry};
use gaga_runtime::model::Model;
use gaga_runtime::refiner::packed::act_quant_values;
use gaga_runtime::{Error, Result, Weights};

use crate::convert::{convert, convert_with, Calibrated, ConvertOptions, Job, Progress, Summary};
use crate::policy::{decide, default_rules, output_axis, Precision};
pub use bench::robust_range;
use bench::{fitted_quant, transfer_error, Bench, Scored};
pub use inputs::{load_inputs, Inputs, Portrait};
pub use simulated::Simulated;

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
    /// Held-out PSNR (dB) static activation scales may cost against dynamic ones.
    pub static_cost_db: f64,
    /// Bytes fp16 promotions may add to a per-frame session (weights, activation arena and kernel
    /// scratch) over the default int8 conversion.
    pub memory_growth: u64,
    /// Smallest rise (dB) of the calibration frames' smallest PSNR that pays for an fp16 promotion's memory.
    pub min_gain_db: f64,
}

impl CalibrateOptions {
    /// The int8 target (35 dB) with a 2 dB margin, 8 frames per portrait, static scales at
    /// most 0.25 dB worse on held-out frames, 3 MiB for fp16 promotions (the official int8 session is
    /// 149 MiB of a 160 MB budget), each raising the PSNR by at least 0.05 dB.
    pub fn new(dir: PathBuf) -> Self {
        CalibrateOptions {
            dir,
            target_psnr: 35.0,
            margin_db: 2.0,
            frames_per_portrait: 8,
            static_cost_db: 0.25,
            memory_growth: 3 << 20,
            min_gain_db: 0.05,
        }
    }
}

/// One int8-eligible refiner layer and what calibration decided for it.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerReport {
    pub name: String,
    /// Smallest PSNR over the calibration frames with only this layer at int8 (dynamic scale),
    /// measured only when promotions were needed.
    pub psnr_alone: Option<f64>,
    /// The static activation quantiser adopted, if any.
    pub act: Option<ActQuant>,
    pub kept_fp16: bool,
}

/// What calibration measured and decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CalibrationReport {
    pub portraits: usize,
    pub frames: usize,
    /// Groups the held-out check rotates through (portraits, or two halves of one portrait's frames).
    pub groups: usize,
    pub layers: Vec<LayerReport>,
    /// Smallest PSNR of the default int8 conversion (policy, dynamic scales) over the calibration frames.
    pub psnr_default: f64,
    /// The same after the fp16 promotions.
    pub psnr_promoted: f64,
    /// Smallest PSNR with the adopted static scales, held out (each group scored with scales fitted on
    /// the others) and in sample; `psnr_promoted` when none were adopted.
    pub psnr_static: f64,
    /// Smallest PSNR of the calibrated file over the calibration frames.
    pub psnr_final: f64,
    /// Promotions refused for memory: layer and the bytes the session would have grown by.
    pub refused_for_memory: Vec<(String, u64)>,
    /// Bytes the promotions add to a per-frame session (weights, arena, kernel scratch).
    pub memory_growth: u64,
    pub decisions: Calibrated,
}

/// Bytes an int8 weight grows by at fp16 (two bytes per value instead of one plus a scale per channel).
fn fp16_growth(w: &dyn Weights, name: &str) -> Result<u64> {
    let shape = w.shape(name)?;
    let n: u64 = shape.iter().map(|&d| d as u64).product();
    let channels = shape.get(output_axis(name) as usize).copied().unwrap_or(1) as u64;
    Ok((2 * n).saturating_sub(n + 4 * channels))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

/// What the fp16 promotions reached.
struct Promotions {
    psnr: f64,
    /// Bytes they add to a session.
    grown: u64,
    refused: Vec<(String, u64)>,
}

/// Step 5 of the module comment: from `base` (the default file's score), promotes `layers` to fp16 in
/// `current`, worst alone first, until `goal`; records each kept one in `decisions.fp16`.
fn promote(
    bench: &Bench,
    layers: &mut [LayerReport],
    current: &mut HashMap<String, Precision>,
    base: &Scored,
    opts: &CalibrateOptions,
    decisions: &mut Calibrated,
    log: &mut dyn FnMut(&str),
) -> Result<Promotions> {
    let goal = opts.target_psnr + opts.margin_db;
    let mut done = Promotions { psnr: base.psnr, grown: 0, refused: Vec::new() };
    if done.psnr >= goal {
        return Ok(done);
    }
    let dynamic = BTreeMap::new();
    let count = layers.len();
    for (i, l) in layers.iter_mut().enumerate() {
        let alone = bench.score(&HashMap::from([(l.name.clone(), Precision::Int8)]), &dynamic, None)?.psnr;
        log(&format!("  [{}/{count}] {}: {alone:.2} dB alone", i + 1, l.name));
        l.psnr_alone = Some(alone);
    }
    let mut order: Vec<usize> = (0..count).collect();
    order.sort_by(|&a, &b| layers[a].psnr_alone.unwrap_or(0.0).total_cmp(&layers[b].psnr_alone.unwrap_or(0.0)).then(a.cmp(&b)));
    let mut weights_grown = 0;
    for i in order {
        if done.psnr >= goal {
            break;
        }
        let (name, now) = (layers[i].name.clone(), done.psnr);
        current.insert(name.clone(), Precision::Fp16);
        let after = bench.score(current, &dynamic, None)?;
        let weights = weights_grown + fp16_growth(bench.fp32, &name)?;
        let total = weights + after.working.saturating_sub(base.working);
        if total > opts.memory_growth {
            current.insert(name.clone(), Precision::Int8);
            log(&format!(
                "  {name} stays int8: fp16 would grow a session by {:.2} MiB (budget {:.2})",
                mib(total),
                mib(opts.memory_growth)
            ));
            done.refused.push((name, total));
            continue;
        }
        if after.psnr < now + opts.min_gain_db {
            // Errors of different layers partly cancel: a promotion that does not help is undone.
            current.insert(name.clone(), Precision::Int8);
            log(&format!(
                "  {name} stays int8: fp16 would give {:.2} dB, less than {:.2} dB above {now:.2} dB",
                after.psnr, opts.min_gain_db
            ));
            continue;
        }
        let why = format!(
            "{:.2} dB with only this layer int8; whole refiner {now:.2} -> {:.2} dB keeping it fp16 (goal {goal:.1} dB; session +{:.2} MiB)",
            layers[i].psnr_alone.unwrap_or(f64::NAN),
            after.psnr,
            mib(total)
        );
        log(&format!("  keep fp16 {name}: {why}"));
        decisions.fp16.push((name, why));
        layers[i].kept_fp16 = true;
        (done.psnr, done.grown, weights_grown) = (after.psnr, total, weights);
    }
    Ok(done)
}

/// Step 6 of the module comment: static scales for the steadiest int8 layers while the PSNR (held out
/// and in sample) stays above the threshold set from `now`, the score after promotions. Fills
/// `decisions.act_scales` and `decisions.dynamic`; returns the PSNR the adopted scales reached.
fn adopt_static(
    bench: &Bench,
    layers: &mut [LayerReport],
    current: &HashMap<String, Precision>,
    now: f64,
    opts: &CalibrateOptions,
    decisions: &mut Calibrated,
    log: &mut dyn FnMut(&str),
) -> Result<f64> {
    let goal = opts.target_psnr + opts.margin_db;
    let ranges = bench.ranges()?;
    // One portrait's even and odd frames are too alike to show that a range does not transfer: static
    // quantisers they passed (85 of 94 layers at official size) lost 3.6 dB on another clip, those held
    // out by portrait 0.25 dB (docs/performance.md, session 11). So statics need two or more portraits.
    let mut steady: Vec<(f64, usize)> = layers
        .iter()
        .enumerate()
        .filter(|(_, l)| bench.by_portrait && !l.kept_fp16)
        .filter_map(|(i, l)| Some((transfer_error(ranges.get(&l.name)?)?, i)))
        .collect();
    steady.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let threshold = if now >= goal { (now - opts.static_cost_db).max(goal) } else { now - opts.static_cost_db };
    let held = |k: usize| {
        let names: Vec<&str> = steady[..k].iter().map(|&(_, i)| layers[i].name.as_str()).collect();
        bench.static_psnr(current, &ranges, &names)
    };
    let (mut adopted, mut reached) = (0, now);
    if steady.is_empty() {
        log("  no held-out portrait to test static quantisers on: every int8 conv keeps a dynamic one");
    } else {
        let all = held(steady.len())?;
        log(&format!("  static scales on all {} steady layers: {all:.2} dB (threshold {threshold:.2})", steady.len()));
        if all >= threshold {
            (adopted, reached) = (steady.len(), all);
        } else {
            // `lo` static layers pass (0 always does: dynamic scales need no fitting), `hi` do not.
            let (mut lo, mut hi) = (0, steady.len());
            while hi - lo > 1 {
                let mid = (lo + hi) / 2;
                let s = held(mid)?;
                log(&format!("  static scales on the {mid} steadiest layers: {s:.2} dB"));
                if s >= threshold {
                    (lo, reached) = (mid, s);
                } else {
                    hi = mid;
                }
            }
            adopted = lo;
        }
    }
    for &(_, i) in &steady[..adopted] {
        let s = fitted_quant(&ranges[&layers[i].name], None);
        layers[i].act = Some(s);
        decisions.act_scales.push((layers[i].name.clone(), s));
    }
    decisions.act_scales.sort_by(|a, b| a.0.cmp(&b.0));
    for (k, &(e, i)) in steady.iter().enumerate().skip(adopted) {
        let why = format!(
            "dynamic activation scale: its range moves by {:.0}% between calibration groups (rank {} of {} by steadiness; static scales on more than the {adopted} steadiest layers fall below {threshold:.2} dB, held out or in sample)",
            (e.exp() - 1.0) * 100.0,
            k + 1,
            steady.len()
        );
        decisions.dynamic.push((layers[i].name.clone(), why));
    }
    let ranked: Vec<usize> = steady.iter().map(|&(_, i)| i).collect();
    for (_, l) in layers.iter().enumerate().filter(|&(i, l)| !l.kept_fp16 && !ranked.contains(&i)) {
        decisions
            .dynamic
            .push((l.name.clone(), "dynamic activation scale: no held-out portrait or no activation seen to test a static one".into()));
    }
    Ok(reached)
}

/// Measures and decides on the fp32 model `fp32` (see the module comment).
pub fn calibrate(
    fp32: &Model,
    inputs: &Inputs,
    opts: &CalibrateOptions,
    keep: &[crate::Keep],
    log: &mut dyn FnMut(&str),
) -> Result<CalibrationReport> {
    let rules = default_rules();
    let mut current = HashMap::new();
    for e in fp32.tensors().iter().filter(|e| e.stage == Stage::Frame && e.dtype == DType::F32 && !e.name.contains('@')) {
        let p = decide(&e.name, e.shape.len(), Precision::Int8, &rules, keep).precision;
        if p != Precision::Fp32 {
            current.insert(e.name.clone(), p);
        }
    }
    let mut eligible: Vec<&String> = current.iter().filter(|(_, p)| **p == Precision::Int8).map(|(n, _)| n).collect();
    eligible.sort();
    let mut layers: Vec<LayerReport> =
        eligible.iter().map(|&n| LayerReport { name: n.clone(), psnr_alone: None, act: None, kept_fp16: false }).collect();
    let bench = Bench::new(fp32, fp32.config(), inputs, opts.frames_per_portrait)?;
    log(&format!(
        "calibration: {} portraits, {} frames in {} held-out groups, {} int8 layers in the refiner",
        inputs.portraits.len(),
        bench.samples.len(),
        bench.groups,
        layers.len()
    ));
    let base = bench.score(&current, &BTreeMap::new(), None)?;
    log(&format!("  default int8 (dynamic scales): {:.2} dB min (goal {:.1} dB)", base.psnr, opts.target_psnr + opts.margin_db));
    let mut decisions = Calibrated::default();
    let promoted = promote(&bench, &mut layers, &mut current, &base, opts, &mut decisions, log)?;
    let with_static = adopt_static(&bench, &mut layers, &current, promoted.psnr, opts, &mut decisions, log)?;
    let scales: BTreeMap<String, ActQuant> = decisions.act_scales.iter().cloned().collect();
    let last = bench.score(&current, &scales, None)?;
    log(&format!(
        "calibration: default {:.2} dB, {} layers fp16 -> {:.2} dB (+{:.2} MiB), {} static scales ({with_static:.2} dB), calibrated {:.2} dB min",
        base.psnr,
        decisions.fp16.len(),
        promoted.psnr,
        mib(promoted.grown),
        scales.len(),
        last.psnr
    ));
    Ok(CalibrationReport {
        portraits: inputs.portraits.len(),
        frames: bench.samples.len(),
        groups: bench.groups,
        layers,
        psnr_default: base.psnr,
        psnr_promoted: promoted.psnr,
        psnr_static: with_static,
        psnr_final: last.psnr,
        refused_for_memory: promoted.refused,
        memory_growth: promoted.grown,
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
) -> (Option<TensorEntry>, Option<(TensorEntry, Vec<f32>)>) {
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
        let values = act_quant_values(s);
        a.name = format!("{}@act_scale", entry.name);
        (a.dtype, a.layout, a.quant_axis, a.reason, a.shape, a.length) =
            (DType::F32, Layout::RowMajor, None, Reason::Calibrated, vec![values.len() as u64], 4 * values.len() as u64);
        (a, values)
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
