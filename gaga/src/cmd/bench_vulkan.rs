//! `gaga bench --backend vulkan`: the per-frame path replayed on a Vulkan device, per-stage medians from
//! GPU timestamps, the session's device memory by name; and `gaga bench --predict BOARD`: the cost
//! model's predicted per-stage times on the target boards (`gaga_runtime::predict`).

use std::path::Path;

use gaga_runtime::backend::vulkan::cache::default_cache_dir;
use gaga_runtime::backend::vulkan::{ContextOptions, VulkanBackend};
use gaga_runtime::backend::{Budget, Session};
use gaga_runtime::model::Model;
use gaga_runtime::predict::{boards, frame_costs, predict_frame, Storage, BOARDS};
use gaga_runtime::{Image, ModelConfig};
use serde_json::json;

use super::CmdResult;

/// Parses `--memory-budget`: plain bytes, or a number with `KiB`, `MiB` or `GiB` (case-insensitive).
pub fn parse_budget(text: &str) -> Result<Budget, String> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    let (number, unit) = match ["gib", "mib", "kib"].iter().find(|u| lower.ends_with(*u)) {
        Some(u) => (
            &t[..t.len() - 3],
            match *u {
                "gib" => 1u64 << 30,
                "mib" => 1 << 20,
                _ => 1 << 10,
            },
        ),
        None => (t, 1),
    };
    let n: u64 = number.trim().parse().map_err(|_| format!("--memory-budget: expected BYTES, N KiB, N MiB or N GiB, found `{text}`"))?;
    let bytes = n.checked_mul(unit).ok_or_else(|| format!("--memory-budget: `{text}` overflows 64 bits"))?;
    Ok(Budget { bytes })
}

/// The Vulkan options of `gaga bench` in one place.
pub struct VulkanBench<'a> {
    pub model: &'a Path,
    pub avatar: Option<&'a Path>,
    pub driver: Option<&'a Path>,
    pub frames: usize,
    pub device: Option<usize>,
    pub budget: Option<&'a str>,
    pub json: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

/// Renders one warm-up frame and `frames` timed ones on the Vulkan backend.
pub fn run(b: &VulkanBench<'_>) -> CmdResult {
    let budget = b.budget.map(parse_budget).transpose()?.unwrap_or(Budget::UNLIMITED);
    let model = Model::open(b.model)?;
    let cfg = model.config().clone();
    let avatar = super::bench::bench_avatar(&cfg, b.avatar)?;
    let driver = super::bench::bench_driver(&cfg, b.driver, b.frames)?;
    let backend = VulkanBackend {
        options: ContextOptions { device: b.device, ..Default::default() },
        cache_dir: default_cache_dir(),
        copy_weights: false,
    };
    let mut session = backend.open_session(&model, &cfg, budget)?;
    if let Err(e) = session.gpu().cache.save() {
        log::warn!("saving the pipeline cache: {e}");
    }
    let avatar = session.prepare_avatar(avatar);
    let mut image = Image::new(cfg.image_size, cfg.image_size);
    let mut per_stage: Vec<(&'static str, Vec<f64>)> = Vec::new();
    for i in 0..=b.frames {
        session.render(&avatar, &driver[i % driver.len()], &mut image)?;
        if i == 0 {
            continue;
        }
        for (name, s) in session.stage_times() {
            match per_stage.iter_mut().find(|(n, _)| *n == name) {
                Some((_, v)) => v.push(s * 1e3),
                None => per_stage.push((name, vec![s * 1e3])),
            }
        }
    }
    let rows: Vec<(&str, f64)> = per_stage.into_iter().map(|(n, v)| (n, median(v))).collect();
    let device = session.gpu().ctx.probe().summary();
    let report = session.memory_report();
    if b.json {
        let stages: Vec<_> = rows.iter().map(|(n, ms)| json!({"stage": n, "median_ms": ms})).collect();
        let memory: Vec<_> = report.holders.iter().map(|(n, bytes)| json!({"name": n, "bytes": bytes})).collect();
        let out = json!({
            "model": b.model.display().to_string(), "backend": "vulkan", "device": device, "frames": b.frames,
            "stages": stages, "weights_imported": session.weights_imported(), "planned_bytes": session.planned_bytes(),
            "memory_used_bytes": report.used, "memory_reserved_bytes": report.reserved, "memory": memory,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("gaga bench: {} on {device}, {} frames (GPU timestamps, medians)", b.model.display(), b.frames);
    println!("{:<34} {:>12}", "stage", "median ms");
    for (n, ms) in &rows {
        println!("{n:<34} {ms:>12.2}");
    }
    println!("weights imported from the mapped file: {}; planned {} bytes", session.weights_imported(), session.planned_bytes());
    let budget = if report.budget == u64::MAX { "unlimited".to_string() } else { format!("{} bytes", report.budget) };
    println!("device memory: {} bytes used of {budget} ({} reserved in blocks); largest holders:", report.used, report.reserved);
    for (name, bytes) in report.holders.iter().take(10) {
        println!("  {bytes:>12}  {name}");
    }
    Ok(())
}

/// `--predict BOARD|all`: the cost model for `model`'s configuration (the official one without a model).
pub fn predict(board: &str, model: Option<&Path>, json_out: bool) -> CmdResult {
    let names: Vec<&str> = BOARDS.iter().map(|b| b.name).collect();
    let list = boards(board).ok_or_else(|| format!("--predict: unknown board `{board}`; expected one of {} or all", names.join(", ")))?;
    let (cfg, what) = match model {
        Some(p) => (Model::open(p)?.config().clone(), p.display().to_string()),
        None => (ModelConfig::official(), "the official configuration".to_string()),
    };
    let costs = frame_costs(&cfg);
    if json_out {
        let mut out = Vec::new();
        for b in &list {
            let storages: Vec<_> = [Storage::Fp32, Storage::Fp16]
                .iter()
                .map(|&st| {
                    let (rows, total) = predict_frame(&costs, b, st);
                    let stages: Vec<_> = rows
                        .iter()
                        .zip(&costs)
                        .map(|(p, c)| json!({"stage": p.stage, "gflop": c.flops / 1e9, "mbytes": c.bytes(st) / 1e6, "compute_ms": p.compute_ms, "memory_ms": p.memory_ms, "ms": p.ms, "mature_ms": p.mature_ms}))
                        .collect();
                    json!({"storage": format!("{st:?}").to_lowercase(), "frame_ms": total, "fps": 1e3 / total, "stages": stages})
                })
                .collect();
            out.push(json!({"board": b.name, "description": b.description, "peak_tflops": b.peak_tflops, "bandwidth_gbs": b.bandwidth_gbs, "efficiency": b.efficiency, "mature_tflops": b.mature_tflops, "predictions": storages}));
        }
        println!("{}", serde_json::to_string_pretty(&json!({"model": what, "boards": out}))?);
        return Ok(());
    }
    println!("gaga bench --predict: {what}; time = max(FLOP / (peak x efficiency), bytes / bandwidth) per stage");
    for b in &list {
        println!("\n{} — {}; efficiency {:.0} %", b.name, b.description, 100.0 * b.efficiency);
        println!(
            "{:<16} {:>8} {:>9} {:>11} {:>10} {:>9} {:>10}",
            "stage", "GFLOP", "MB fp32", "compute ms", "memory ms", "ms fp32", "ms fp16"
        );
        let (rows32, total32) = predict_frame(&costs, b, Storage::Fp32);
        let (rows16, total16) = predict_frame(&costs, b, Storage::Fp16);
        for ((p, q), c) in rows32.iter().zip(&rows16).zip(&costs) {
            println!(
                "{:<16} {:>8.3} {:>9.1} {:>11.2} {:>10.2} {:>9.2} {:>10.2}",
                p.stage,
                c.flops / 1e9,
                c.bytes(Storage::Fp32) / 1e6,
                p.compute_ms,
                p.memory_ms,
                p.ms,
                q.ms
            );
        }
        println!("{:<16} {:>51.1} {:>10.1}   ({:.1} / {:.1} frames/s)", "frame", total32, total16, 1e3 / total32, 1e3 / total16);
        if b.mature_tflops.is_some() {
            let mature: f64 = rows16.iter().map(|p| p.mature_ms.unwrap_or(p.ms)).sum();
            println!(
                "at the mature runtime's {:.1} TFLOPS effective (fp16 storage): {mature:.1} ms ({:.1} frames/s)",
                b.mature_tflops.unwrap_or(0.0),
                1e3 / mature
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_budgets_parse_in_bytes_and_binary_units() {
        assert_eq!(parse_budget("1048576").map(|b| b.bytes), Ok(1 << 20));
        assert_eq!(parse_budget("3072MiB").map(|b| b.bytes), Ok(3072 << 20));
        assert_eq!(parse_budget("2 GiB").map(|b| b.bytes), Ok(2 << 30));
        assert_eq!(parse_budget("64kib").map(|b| b.bytes), Ok(64 << 10));
        assert!(parse_budget("lots").expect_err("not a number").contains("`lots`"));
        assert!(parse_budget("99999999999999GiB").expect_err("too big").contains("overflows"));
    }
}
