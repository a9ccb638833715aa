//! Golden parity: the Rust pipeline against the PyTorch reference (`reference/gaga_ref`), stage by stage.
//!
//! The goldens (`tests/golden/small.{safetensors,json}`) were made by `reference/goldens.sh` from the seeded
//! files of `gaga dev make-checkpoint --config small --seed 7` and `gaga dev make-flame --seed 7`. This test
//! regenerates both files in-process with the same dev API, checks their sha256 against the provenance (so
//! stale goldens fail loudly), converts them to a `.gaga` model at fp32 with the converter, then runs the lift
//! and two frames and compares every traced intermediate.
//!
//! Limits (the issue's): every stage within 1e-4 relative error (max |rust - ref| / max |ref|); both sides are
//! f32 and differ only in summation order and library exp/erf, which stays ~1e-6..1e-5 of a tensor's range, so
//! 1e-4 leaves margin yet catches any wrong rule (those show at 1e-2 and above). Final RGB PSNR >= 60 dB.
//! The splat may instead have at most 1e-4 of its elements beyond the limit (`SPLAT_FLIPS`: single pixels
//! flipped by ulp-level margins at the rasteriser's hard rules, seen at official size only).
//!
//! The official-size run (`reference/goldens.sh --official`) uses the same code with goldens in
//! `$GAGA_GOLDEN_DIR` and its input files taken from `$GAGA_GOLDEN_INPUTS`; it is ignored by default (747 MB
//! checkpoint, minutes of compute):
//! `GAGA_GOLDEN_DIR=/tmp/x cargo test --release -p gaga-tests --test golden_parity -- --ignored official`.

use std::path::{Path, PathBuf};

use gaga_converter::{convert, ConvertOptions, Precision};
use gaga_runtime::lift::lift_traced;
use gaga_runtime::model::Model;
use gaga_runtime::render::{FrameRenderer, RenderOptions};
use gaga_runtime::{DrivingFrame, Image, ModelConfig, SourceParams, Transform};
use gaga_tests::{
    golden_dir, read_provenance, sha256_file, test_dir, worst_elements, Criterion, Golden, GoldenError, Report, Result, Tensor,
};

/// Relative-error limit of every stage (see the module docs for why).
const REL_LIMIT: f64 = 1e-4;
/// The splat also passes when at most this fraction of its elements exceeds `REL_LIMIT`: hard rules
/// (alpha at least 1/255, T at least 1e-4, the order of equal-depth Gaussians) flip single pixels whenever two f32
/// implementations round a margin of a few ulps differently. Measured at official size: 7e-7 of the elements
/// (one pixel) in one frame, none in the other; the small goldens pass the strict limit.
const SPLAT_FLIPS: f64 = 1e-4;
/// PSNR floor of the final RGB against the reference, in dB (the final-image criterion of the issue; the RGB
/// relative error is printed too, but a flipped splat pixel legitimately moves it).
const PSNR_FLOOR: f64 = 60.0;
const STRICT: Criterion = Criterion::Relative(REL_LIMIT);
/// The seed of the golden contract (`gaga dev ... --seed 7`).
const SEED: u64 = 7;

fn fail<T>(msg: impl Into<String>) -> Result<T> {
    Err(GoldenError(msg.into()))
}

fn ctx<T, E: std::fmt::Display>(r: std::result::Result<T, E>, what: &str) -> Result<T> {
    r.map_err(|e| GoldenError(format!("{what}: {e}")))
}

/// Regenerates the seeded inputs (or takes `ckpt.pt` and `flame.pt` from `$GAGA_GOLDEN_INPUTS`, which
/// `goldens.sh --official` sets to spare a second 747 MB write), checks them against the provenance, converts
/// them: returns the model path.
fn rebuild_model(name: &str, cfg: &ModelConfig, provenance: &serde_json::Value, dir: &Path) -> Result<PathBuf> {
    let model = dir.join("model.gaga");
    let (ckpt, flame) = match std::env::var_os("GAGA_GOLDEN_INPUTS") {
        Some(inputs) => (Path::new(&inputs).join("ckpt.pt"), Path::new(&inputs).join("flame.pt")),
        None => {
            let (ckpt, flame) = (dir.join("ckpt.pt"), dir.join("flame.pt"));
            ctx(gaga_converter::dev::write_checkpoint_file(&ckpt, cfg, name, SEED), "writing the seeded checkpoint")?;
            ctx(gaga_converter::dev::flame::build(SEED).write_file(&flame), "writing the seeded FLAME")?;
            (ckpt, flame)
        }
    };
    for (key, path) in [("checkpoint", &ckpt), ("flame", &flame)] {
        let recorded = provenance[key]["sha256"].as_str().unwrap_or("<missing>");
        let found = sha256_file(path)?;
        if found != recorded {
            return fail(format!(
                "goldens are stale: run reference/goldens.sh (the regenerated {key} has sha256 {found}, \
                 the goldens were made from {recorded})"
            ));
        }
    }
    let opts = ConvertOptions {
        checkpoint: ckpt,
        flame,
        output: model.clone(),
        precision: Precision::Fp32,
        keep: Vec::new(),
        created_by: "golden_parity".into(),
    };
    ctx(convert(&opts, &mut |_| {}), "converting the seeded checkpoint")?;
    Ok(model)
}

fn transform_of(t: &Tensor) -> Result<Transform> {
    if t.data.len() != 12 {
        return fail(format!("a transform needs 12 values, found {}", t.data.len()));
    }
    let mut m = [[0f32; 4]; 3];
    for (i, v) in t.data.iter().enumerate() {
        m[i / 4][i % 4] = *v;
    }
    Ok(m)
}

fn six(t: &Tensor) -> Result<[f32; 6]> {
    t.data.as_slice().try_into().map_err(|_| GoldenError(format!("expected 6 values, found {}", t.data.len())))
}

/// The golden inputs as runtime types: source image, source parameters, driving frames.
fn inputs(g: &Golden, cfg: &ModelConfig, frames: usize) -> Result<(Image, SourceParams, Vec<DrivingFrame>)> {
    let s = cfg.image_size;
    let image = Image { width: s, height: s, data: g.get("input.image", &[3, s, s])?.data.clone() };
    let source = SourceParams {
        shapecode: g.get("input.source_shapecode", &[cfg.flame.shape_params])?.data.clone(),
        transform: transform_of(g.get("input.source_transform", &[3, 4])?)?,
    };
    let (exp, pose) = (g.get("input.frames.expcode", &[frames, 100])?, g.get("input.frames.posecode", &[frames, 6])?);
    let (eyes, cams) = (g.get("input.frames.eyecode", &[frames, 6])?, g.get("input.frames.transform", &[frames, 3, 4])?);
    let mut out = Vec::new();
    for f in 0..frames {
        out.push(DrivingFrame {
            key: format!("golden_{f}"),
            expcode: exp.index(f)?.data,
            posecode: six(&pose.index(f)?)?,
            eyecode: six(&eyes.index(f)?)?,
            transform: transform_of(&cams.index(f)?)?,
            shapecode: None,
            face: true,
        });
    }
    Ok((image, source, out))
}

/// Runs the whole comparison for goldens `<dir>/<name>.{json,safetensors}` made at configuration `cfg`.
fn run_parity(name: &str, cfg: ModelConfig) -> Result<Report> {
    let dir = golden_dir();
    let provenance = read_provenance(&dir.join(format!("{name}.json")))?;
    let golden_path = dir.join(format!("{name}.safetensors"));
    let recorded = provenance["goldens_sha256"].as_str().unwrap_or("<missing>");
    if sha256_file(&golden_path)? != recorded {
        return fail(format!("{}: sha256 differs from {name}.json: regenerate with reference/goldens.sh", golden_path.display()));
    }
    let g = Golden::open(&golden_path)?;
    let frames = provenance["frames"].as_u64().unwrap_or(0) as usize;
    if frames == 0 {
        return fail(format!("{name}.json: `frames` missing or zero"));
    }
    let scratch = test_dir(&format!("golden-{name}"));
    let model = Model::open(rebuild_model(name, &cfg, &provenance, scratch.path())?)
        .map_err(|e| GoldenError(format!("opening the converted model: {e}")))?;
    let mcfg = model.config().clone();
    if mcfg != cfg {
        return fail(format!("the converter inferred {mcfg:?}, the goldens were made at {cfg:?}"));
    }
    let (image, source, driving) = inputs(&g, &cfg, frames)?;
    let mut report = Report::default();

    let (avatar, trace) = ctx(lift_traced(&model, &cfg, &image, &source), "lift")?;
    let (din, gg, dim, p) = (cfg.dino.input_size, cfg.dino.grid() * cfg.dino.grid(), cfg.dino.dim, cfg.plane_size);
    report.compare("lift.dino_input", &trace.dino_input, g.get("lift.dino_input", &[3, din, din])?, STRICT);
    let layers: Vec<f32> = trace.dino_layers.concat();
    report.compare("lift.dino_layers", &layers, g.get("lift.dino_layers", &[4, gg, dim])?, STRICT);
    for l in 0..4 {
        let golden_layer = g.get("lift.dino_layers", &[4, gg, dim])?.index(l)?;
        let ours = trace.dino_layers.get(l).map(|v| v.as_slice()).unwrap_or(&[]);
        report.compare(&format!("lift.dino_layers[{l}]"), ours, &golden_layer, STRICT);
    }
    report.compare("lift.global_feature", &trace.global_feature, g.get("lift.global_feature", &[dim])?, STRICT);
    report.compare("lift.feature_map", &trace.feature_map, g.get("lift.feature_map", &[cfg.feature_dim, p, p])?, STRICT);
    report.compare("lift.plane_points", &trace.plane_points, g.get("lift.plane_points", &[p * p, 3])?, STRICT);
    report.compare("lift.plane_dirs", &trace.plane_dirs, g.get("lift.plane_dirs", &[3])?, STRICT);
    report.compare("lift.direnc", &trace.direnc, g.get("lift.direnc", &[cfg.direnc_dim()])?, STRICT);
    let n = cfg.gaussians();
    let ch = cfg.gaussian_channels;
    report.compare("lift.gaussians.positions", &avatar.positions, g.get("lift.gaussians.positions", &[n, 3])?, STRICT);
    report.compare("lift.gaussians.colors", &avatar.colors.to_f32(), g.get("lift.gaussians.colors", &[n, ch])?, STRICT);
    report.compare("lift.gaussians.opacities", &avatar.opacities, g.get("lift.gaussians.opacities", &[n])?, STRICT);
    report.compare("lift.gaussians.scales", &avatar.scales, g.get("lift.gaussians.scales", &[n, 3])?, STRICT);
    report.compare("lift.gaussians.rotations", &avatar.rotations, g.get("lift.gaussians.rotations", &[n, 4])?, STRICT);

    // Frames start from the golden lift, so a lift mismatch is not counted again in every frame stage.
    let golden_avatar = gaga_runtime::Avatar {
        count: n,
        channels: ch,
        positions: g.get("lift.gaussians.positions", &[n, 3])?.data.clone(),
        colors: g.get("lift.gaussians.colors", &[n, ch])?.data.clone().into(),
        opacities: g.get("lift.gaussians.opacities", &[n])?.data.clone(),
        scales: g.get("lift.gaussians.scales", &[n, 3])?.data.clone(),
        rotations: g.get("lift.gaussians.rotations", &[n, 4])?.data.clone(),
        covariances: Vec::new(),
        shapecode: source.shapecode.clone(),
    };
    let mut renderer = ctx(FrameRenderer::new(&model, &cfg, RenderOptions::default()), "frame renderer")?;
    let (s, v) = (cfg.image_size, cfg.flame.vertices);
    let mut out = Image::new(s, s);
    for (f, frame) in driving.iter().enumerate() {
        let t = ctx(renderer.render_traced(&golden_avatar, frame, &mut out), &format!("frame {f}"))?;
        let want = |key: &str, shape: &[usize]| -> Result<Tensor> { g.any(key)?.index(f).and_then(|t| check_shape(key, t, shape)) };
        report.compare(&format!("frame[{f}].flame_vertices"), &t.flame_vertices, &want("frame.flame_vertices", &[v, 3])?, STRICT);
        let splat = want("frame.splat", &[ch, s, s])?;
        report.compare(
            &format!("frame[{f}].splat"),
            &t.splat,
            &splat,
            Criterion::RelativeWithFlips { limit: REL_LIMIT, allowed: SPLAT_FLIPS },
        );
        // Where the splats differ most: hard thresholds (alpha 1/255, T 1e-4) flip single pixels.
        for (i, ours, golden) in worst_elements(&t.splat, &splat.data, 3) {
            println!(
                "frame[{f}].splat worst: channel {} pixel (x {}, y {}): rust {ours} reference {golden}",
                i / (s * s),
                i % s,
                (i / s) % s
            );
        }
        let rgb = want("frame.rgb", &[3, s, s])?;
        report.compare(&format!("frame[{f}].rgb"), &t.rgb, &rgb, Criterion::Psnr(PSNR_FLOOR));
    }
    Ok(report)
}

fn check_shape(key: &str, t: Tensor, shape: &[usize]) -> Result<Tensor> {
    if t.shape != shape {
        return fail(format!("golden `{key}` per frame: expected {shape:?}, found {:?}", t.shape));
    }
    Ok(t)
}

/// Prints the table (CI logs show the measured figures) and fails on any stage over its limit.
fn verdict(name: &str, report: Result<Report>) {
    let report = match report {
        Ok(r) => r,
        Err(e) => panic!("{name} golden parity could not run: {e}"),
    };
    println!("golden parity ({name})\n{}", report.table());
    let problems: Vec<String> =
        report.failures().iter().map(|s| format!("{} (rel.error {:.3e}, PSNR {:.1} dB)", s.name, s.rel_error, s.psnr)).collect();
    assert!(problems.is_empty(), "{name} golden parity failed: {}", problems.join("; "));
}

#[test]
fn small_model_matches_the_pytorch_reference_at_every_stage() {
    verdict("small", run_parity("small", ModelConfig::small()));
}

/// Needs `reference/goldens.sh --official` (goldens in `$GAGA_GOLDEN_DIR`) and minutes of compute.
#[test]
#[ignore = "official size: run through reference/goldens.sh --official"]
fn official_model_matches_the_pytorch_reference_at_every_stage() {
    verdict("official", run_parity("official", ModelConfig::official()));
}
