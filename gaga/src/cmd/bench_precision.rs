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
        let png = chart(&rows, b.frames);
        gaga_runtime::write_aside::write_aside(path, |out| {
            png.write_to(out, gaga_boards::image::ImageFormat::Png)
                .map_err(|e| gaga_runtime::Error::Other(format!("{}: cannot write PNG: {e}", path.display())))
        })?;
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
    // The label column fits the longest label (calibrated files' names run long).
    let lw = rows.iter().map(|r| r.label.len()).max().unwrap_or(0).max(22);
    println!("{:<lw$} {}{:>10} {:>14}", "model", FrameTimes::STAGES.map(|s| format!("{s:>10}")).join(""), "frame", "+resident MiB");
    for r in &rows {
        let mib = r.resident_added.map(|b| format!("{:.1}", b as f64 / 1048576.0)).unwrap_or_else(|| "-".into());
        println!("{:<lw$} {}{:>10.1} {mib:>14}", r.label, r.medians.map(|m| format!("{m:>10.1}")).join(""), r.medians.iter().sum::<f64>());
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
const COLOURS: [[u8; 3]; 5] = [[66, 115, 178], [230, 140, 51], [76, 166, 89], [191, 76, 76], [140, 115, 178]];

/// A grouped bar chart: one group per stage plus the whole frame, one bar per model with its median in ms
/// above it, heights relative to the tallest bar; a title and a legend of the model labels. Drawn with
/// `embedded-graphics` (as the kiosk's status line) and written as PNG aside, then renamed into place.
fn chart(rows: &[Row], frames: usize) -> gaga_boards::RgbImage {
    use embedded_graphics::mono_font::{ascii::FONT_6X10, MonoTextStyle};
    use embedded_graphics::pixelcolor::Rgb888;
    use embedded_graphics::prelude::*;
    use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};
    use embedded_graphics::text::{Alignment, Baseline, Text, TextStyleBuilder};
    use gaga_boards::overlay::RgbTarget;

    const GROUPS: [&str; 4] = ["flame", "splat", "refine", "frame"];
    let (w, h) = (720u32, 400u32);
    let (left, right, top, bottom) = (20i32, 20i32, 40 + 14 * rows.len() as i32, 30i32);
    let mut img = gaga_boards::RgbImage::from_pixel(w, h, gaga_boards::image::Rgb([255, 255, 255]));
    let mut t = RgbTarget(&mut img);
    let ink = MonoTextStyle::new(&FONT_6X10, Rgb888::BLACK);
    let centred = TextStyleBuilder::new().alignment(Alignment::Center).baseline(Baseline::Bottom).build();
    let colour = |m: usize| {
        let [r, g, b] = COLOURS[m % COLOURS.len()];
        Rgb888::new(r, g, b)
    };
    let fill = |c: Rgb888| PrimitiveStyle::with_fill(c);
    // Drawing into an in-memory image cannot fail (`RgbTarget`'s error type is `Infallible`).
    let title = format!("gaga bench: median ms per stage, {frames} frames per model, alternating");
    let Ok(_) = Text::with_baseline(&title, Point::new(left, 8), ink, Baseline::Top).draw(&mut t);
    for (m, r) in rows.iter().enumerate() {
        let y = 24 + 14 * m as i32;
        let Ok(()) = Rectangle::new(Point::new(left, y), Size::new(10, 10)).into_styled(fill(colour(m))).draw(&mut t);
        let label = format!("{}: {:.1} ms a frame", r.label, r.medians.iter().sum::<f64>());
        let Ok(_) = Text::with_baseline(&label, Point::new(left + 16, y), ink, Baseline::Top).draw(&mut t);
    }
    let values: Vec<Vec<f64>> =
        (0..GROUPS.len()).map(|g| rows.iter().map(|r| if g < 3 { r.medians[g] } else { r.medians.iter().sum() }).collect()).collect();
    let tallest = values.iter().flatten().copied().fold(0.0, f64::max).max(1e-9);
    let base = h as i32 - bottom;
    let plot_h = (base - top - 14).max(1) as f64;
    let group_w = (w as i32 - left - right) / GROUPS.len() as i32;
    let bar_w = (group_w * 3 / 4 / rows.len().max(1) as i32).max(1);
    for (g, (name, vals)) in GROUPS.iter().zip(&values).enumerate() {
        let x_group = left + g as i32 * group_w + group_w / 8;
        for (m, &v) in vals.iter().enumerate() {
            let x0 = x_group + m as i32 * bar_w;
            let bar_h = ((v / tallest) * plot_h).round() as i32;
            let size = Size::new((bar_w - 2).max(1) as u32, bar_h.max(0) as u32);
            let Ok(()) = Rectangle::new(Point::new(x0, base - bar_h), size).into_styled(fill(colour(m))).draw(&mut t);
            // The value above the bar, when it fits (6 px a character).
            let text = format!("{v:.1}");
            if text.len() as i32 * 6 <= bar_w + 4 {
                let at = Point::new(x0 + bar_w / 2, base - bar_h - 2);
                let Ok(_) = Text::with_text_style(&text, at, ink, centred).draw(&mut t);
            }
        }
        let at = Point::new(x_group + bar_w * rows.len() as i32 / 2, base + 16);
        let Ok(_) = Text::with_text_style(name, at, ink, centred).draw(&mut t);
    }
    let axis = Rectangle::new(Point::new(left / 2, base), Size::new(w - left as u32, 2));
    let Ok(()) = axis.into_styled(fill(Rgb888::new(128, 128, 128))).draw(&mut t);
    img
}
