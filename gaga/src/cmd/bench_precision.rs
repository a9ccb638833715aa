//! `gaga bench --model a.gaga --models b.gaga,c.gaga [--chart out.png]`: the per-frame stages of several
//! conversions (fp32, fp16, int8, calibrated int8, ...) side by side in one run. Frames alternate between
//! the models (frame i of every model, then frame i + 1), so the drift of a shared or throttling machine
//! hits them all alike. Reports per-stage medians, the resident memory each model's session added, a
//! table, `--json`, and a grouped bar chart PNG.

use std::path::{Path, PathBuf};

use gaga_runtime::model::{resident, Model};
use gaga_runtime::render::{FrameRenderer, FrameTimes, RenderOptions};
use gaga_runtime::Image;
use serde_json::json;

use super::reenact::medians_ms;
use super::CmdResult;

/// What to compare (taken from `gaga bench`'s arguments).
pub struct PrecisionBench<'a> {
    pub models: Vec<PathBuf>,
    pub avatar: Option<&'a Path>,
    pub driver: Option<&'a Path>,
    pub frames: usize,
    pub json: bool,
    pub chart: Option<&'a Path>,
}

/// One model's results.
struct Row {
    label: String,
    path: PathBuf,
    medians: [f64; 3],
    /// Resident bytes added by opening the model, building its renderer and rendering one frame.
    resident_added: Option<u64>,
}

pub fn run(b: &PrecisionBench) -> CmdResult {
    let models = b.models.iter().map(Model::open).collect::<Result<Vec<_>, _>>()?;
    let cfg = models[0].config().clone();
    if let Some((m, p)) = models.iter().zip(&b.models).find(|(m, _)| m.config() != &cfg) {
        let _ = m;
        return Err(format!(
            "{}: configuration differs from {} (compare conversions of one checkpoint)",
            p.display(),
            b.models[0].display()
        )
        .into());
    }
    let avatar = super::bench::bench_avatar(&cfg, b.avatar)?;
    let driver = super::bench::bench_driver(&cfg, b.driver, b.frames)?;
    let mut image = Image::new(cfg.image_size, cfg.image_size);
    let mut renderers = Vec::new();
    let mut avatars = Vec::new();
    let mut added = Vec::new();
    for m in &models {
        let copy = avatar.clone();
        let before = resident().map(|r| r.now);
        let mut r = FrameRenderer::new(m, &cfg, RenderOptions::default())?;
        // Each model renders the avatar as its session keeps it (f16 colours with an int8 refiner).
        let prepared = r.prepare_avatar(copy);
        r.render(&prepared, &driver[0], &mut image)?; // warm-up: buffers grow, weights fault in
        added.push(before.zip(resident()).map(|(a, r)| r.now.saturating_sub(a)));
        renderers.push(r);
        avatars.push(prepared);
    }
    let mut times: Vec<Vec<FrameTimes>> = vec![Vec::with_capacity(b.frames); models.len()];
    let bar = indicatif::ProgressBar::new((b.frames * models.len()) as u64);
    for i in 1..=b.frames {
        for ((r, t), avatar) in renderers.iter_mut().zip(&mut times).zip(&avatars) {
            r.render(avatar, &driver[i % driver.len()], &mut image)?;
            t.push(r.times());
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let rows: Vec<Row> = models
        .iter()
        .zip(&b.models)
        .zip(times.iter().zip(added))
        .map(|((m, p), (t, a))| Row { label: label(m, p), path: p.clone(), medians: medians_ms(t), resident_added: a })
        .collect();
    let peak = resident().map(|r| r.peak);
    if let Some(path) = b.chart {
        gaga_runtime::image_io::save_png(path, &chart(&rows))?;
    }
    if b.json {
        let out = json!({
            "frames": b.frames,
            "order": "alternating: frame i of every model, then frame i + 1",
            "peak_resident_bytes": peak,
            "models": rows.iter().map(|r| json!({
                "label": r.label, "path": r.path.display().to_string(),
                "stages": FrameTimes::STAGES.iter().zip(r.medians).map(|(s, ms)| (s.to_string(), json!(ms))).collect::<serde_json::Map<_, _>>(),
                "frame_median_ms": r.medians.iter().sum::<f64>(),
                "resident_added_bytes": r.resident_added,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("gaga bench: {} models side by side, {} frames each (alternating), median ms", rows.len(), b.frames);
    println!("{:<22} {}{:>10} {:>14}", "model", FrameTimes::STAGES.map(|s| format!("{s:>10}")).join(""), "frame", "+resident MiB");
    for r in &rows {
        let mib = r.resident_added.map(|b| format!("{:.1}", b as f64 / 1048576.0)).unwrap_or_else(|| "-".into());
        println!("{:<22} {}{:>10.1} {mib:>14}", r.label, r.medians.map(|m| format!("{m:>10.1}")).join(""), r.medians.iter().sum::<f64>());
    }
    if let Some(p) = peak {
        println!("peak resident (whole run, all models loaded): {:.1} MiB", p as f64 / 1048576.0);
    }
    if let Some(path) = b.chart {
        println!("chart: {} (groups: {}, frame; bars in model order)", path.display(), FrameTimes::STAGES.join(", "));
    }
    Ok(())
}

/// `int8 (m.gaga)`: the precision the file was converted at, and its name.
fn label(m: &Model, p: &Path) -> String {
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let calibrated = m.tensors().iter().any(|e| e.reason == gaga_runtime::format::Reason::Calibrated);
    format!("{}{} ({name})", m.meta().precision.requested, if calibrated { "c" } else { "" })
}

/// Bar colours per model, in order (cycled).
const COLOURS: [[f32; 3]; 5] = [[0.26, 0.45, 0.70], [0.90, 0.55, 0.20], [0.30, 0.65, 0.35], [0.75, 0.30, 0.30], [0.55, 0.45, 0.70]];

/// A grouped bar chart: one group per stage plus the whole frame, one bar per model, heights relative
/// to the tallest bar, on white with a grey baseline. Deliberately plain: the numbers are in the table.
fn chart(rows: &[Row]) -> Image {
    let (w, h, margin) = (640usize, 360usize, 20usize);
    let mut img = Image { width: w, height: h, data: vec![1.0; 3 * w * h] };
    let groups: Vec<Vec<f64>> =
        (0..4).map(|g| rows.iter().map(|r| if g < 3 { r.medians[g] } else { r.medians.iter().sum() }).collect()).collect();
    let top = groups.iter().flatten().copied().fold(0.0, f64::max).max(1e-9);
    let group_w = (w - 2 * margin) / groups.len();
    let bar_w = (group_w * 3 / 4 / rows.len().max(1)).max(1);
    let base = h - margin;
    let mut fill = |x0: usize, x1: usize, y0: usize, y1: usize, c: [f32; 3]| {
        for y in y0..y1.min(h) {
            for x in x0..x1.min(w) {
                for (k, v) in c.iter().enumerate() {
                    img.data[k * w * h + y * w + x] = *v;
                }
            }
        }
    };
    for (g, values) in groups.iter().enumerate() {
        for (m, v) in values.iter().enumerate() {
            let x0 = margin + g * group_w + group_w / 8 + m * bar_w;
            let bar_h = ((v / top) * (h - 2 * margin) as f64).round() as usize;
            fill(x0, x0 + bar_w.saturating_sub(2).max(1), base - bar_h.min(base), base, COLOURS[m % COLOURS.len()]);
        }
    }
    fill(margin / 2, w - margin / 2, base, base + 2, [0.5, 0.5, 0.5]);
    img
}
