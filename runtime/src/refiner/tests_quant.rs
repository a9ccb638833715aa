//! The refiner on fp16 / int8 conv weights (stored as the converter stores them) against the fp32 refiner
//! on the same dequantised weights, and the observation hook.

use std::borrow::Cow;
use std::collections::BTreeMap;

use gaga_kernels::qgemm::{quantise_rows, ActQuant};
use gaga_kernels::testing::{assert_close, seeded, Tolerance};
use half::f16;

use super::packed::Precision;
use super::testing::insert_seeded_refiner;
use super::*;
use crate::eval::psnr;
use crate::format::{DType, Layout};
use crate::weights::{Stored, WeightMap};

/// Conv weights (rank >= 4, not the constant input) of the refiner.
fn is_conv_weight(name: &str, shape: &[usize]) -> bool {
    shape.len() >= 4 && name.ends_with(".weight") && !name.contains("constant_input")
}

/// A model whose conv weights are stored at `dtype` (int8 per output channel along axis `rank - 4`);
/// `f32()` dequantises like `Model` does. `plain` holds the dequantised values for the fp32 refiner.
pub(super) struct Quantised {
    pub(super) plain: WeightMap,
    stored: BTreeMap<String, StoredAs>,
}

/// dtype, element bytes and (int8) per-channel scales of one tensor.
type StoredAs = (DType, Vec<u8>, Option<Vec<f32>>);

impl Quantised {
    pub(super) fn new(cfg: &ModelConfig, dtype: DType) -> Quantised {
        let mut plain = WeightMap::default();
        insert_seeded_refiner(&mut plain, cfg, 3);
        let mut stored = BTreeMap::new();
        for (name, (shape, values)) in plain.tensors.iter_mut() {
            if !is_conv_weight(name, shape) {
                continue;
            }
            let rows = shape[shape.len() - 4];
            let entry = match dtype {
                DType::F16 => {
                    let h: Vec<f16> = values.iter().map(|&v| f16::from_f32(v)).collect();
                    *values = h.iter().map(|v| v.to_f32()).collect();
                    (dtype, h.iter().flat_map(|v| v.to_le_bytes()).collect(), None)
                }
                _ => {
                    let row_len = values.len() / rows;
                    let (q, scales) = quantise_rows(values, rows, row_len).expect("quantise");
                    *values = q.iter().enumerate().map(|(i, &v)| v as f32 * scales[i / row_len]).collect();
                    (DType::I8, q.iter().map(|&v| v as u8).collect(), Some(scales))
                }
            };
            stored.insert(name.clone(), entry);
        }
        Quantised { plain, stored }
    }
}

impl Weights for Quantised {
    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        self.plain.shape(name)
    }
    fn f32(&self, name: &str) -> Result<Cow<'_, [f32]>> {
        self.plain.f32(name)
    }
    fn stored(&self, name: &str) -> Result<Stored<'_>> {
        let Some((dtype, bytes, scales)) = self.stored.get(name) else {
            return self.plain.stored(name);
        };
        let shape = self.shape(name)?;
        let quant_axis = scales.as_ref().map(|_| shape.len() - 4);
        Ok(Stored {
            dtype: *dtype,
            layout: Layout::RowMajor,
            shape,
            bytes: Cow::Borrowed(bytes),
            scales: scales.as_deref().map(Cow::Borrowed),
            quant_axis,
        })
    }
}

fn frames(w: &dyn Weights, cfg: &ModelConfig, n: usize) -> Vec<Vec<f32>> {
    let s = cfg.refiner.size;
    let mut r = Refiner::new(w, cfg, NoiseMode::Stored).expect("refiner loads");
    (0..n)
        .map(|i| {
            let x = seeded(40 + i as u64, cfg.refiner.in_channels * s * s);
            let mut out = vec![0f32; cfg.refiner.out_channels * s * s];
            r.run(&x, &mut out).expect("refiner runs");
            out
        })
        .collect()
}

#[test]
fn fp16_refiner_matches_the_fp32_refiner_on_the_f16_rounded_weights() {
    let cfg = ModelConfig::small();
    let q = Quantised::new(&cfg, DType::F16);
    let r = Refiner::new(&q, &cfg, NoiseMode::Stored).expect("fp16 refiner loads");
    assert!(r.conv_precisions().iter().all(|(_, p)| *p == Precision::Fp16), "every conv runs the fp16 kernels");
    let (got, want) = (frames(&q, &cfg, 1), frames(&q.plain, &cfg, 1));
    // Same weights, both fp32 arithmetic; only the two kernels' summation and padding paths differ:
    // the fp32 chained-layer bound of the reference test.
    assert_close("fp16 vs fp32 refiner", &got[0], &want[0], Tolerance::Custom { abs: 1e-5, rel: 1e-4 });
}

#[test]
fn int8_refiner_stays_close_to_the_fp32_refiner_on_the_dequantised_weights() {
    let cfg = ModelConfig::small();
    let q = Quantised::new(&cfg, DType::I8);
    let r = Refiner::new(&q, &cfg, NoiseMode::Stored).expect("int8 refiner loads");
    assert!(r.conv_precisions().iter().all(|(_, p)| *p == Precision::Int8), "every conv runs the int8 kernels");
    let (got, want) = (frames(&q, &cfg, 2), frames(&q.plain, &cfg, 2));
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let db = psnr(g, w).expect("same length");
        println!("int8 vs fp32 refiner (small config, same dequantised weights), frame {i}: PSNR {db:.1} dB");
        // Only the activations' 8-bit rounding (dynamic per-tensor min-max quantisers) separates the two:
        // measured 51.7-51.8 dB. The bound also catches a return to symmetric quantisers (48.4-48.5 dB).
        assert!(db > 50.0, "frame {i}: int8 refiner PSNR {db:.1} dB against fp32, expected > 50");
    }
}

/// Every int8 conv on maps of side `FINE_MAX_SIDE` and below, and only those, runs with fine activations.
#[test]
fn int8_convs_on_maps_of_side_16_and_below_run_with_fine_activations() {
    let cfg = ModelConfig::small();
    let levels = cfg.refiner.levels();
    let q = Quantised::new(&cfg, DType::I8);
    let r = Refiner::new(&q, &cfg, NoiseMode::Stored).expect("int8 refiner loads");
    // The side of the map a conv runs on, from its name (the refiner's level indexing; a ResBlock's conv1
    // runs at its input side, conv2 and the skip at its output side).
    let out_side = |name: &str| -> usize {
        let index = |p: &str| name.strip_prefix(p).and_then(|t| t.split('.').next()).and_then(|i| i.parse::<usize>().ok());
        let first = name.ends_with(".conv1.weight");
        let level = index("upsampler.condition_scale.").or(index("upsampler.condition_shift."));
        if let Some(i) = index("upsampler.conv_body_down.") {
            side(levels - i - !first as usize)
        } else if let Some(k) = index("upsampler.conv_body_up.") {
            side(k + !first as usize)
        } else if let Some(k) = level {
            side(k + 1)
        } else if let Some(c) = index("upsampler.stylegan_decoder.style_convs.") {
            side(c / 2 + 1)
        } else if let Some(k) = index("upsampler.stylegan_decoder.to_rgbs.") {
            side(k + 1)
        } else if name.contains("conv_body_first") {
            cfg.refiner.size
        } else {
            4 // final_conv, style_conv1, to_rgb1
        }
    };
    let mut fine = 0;
    for (name, k) in r.conv_kernels() {
        let want = out_side(name) <= FINE_MAX_SIDE && k.precision() == Precision::Int8;
        assert_eq!(k.is_fine(), want, "{name} (side {})", out_side(name));
        fine += want as usize;
    }
    assert!(fine >= 10, "{fine} fine convs");
}

#[test]
fn observed_run_reports_every_conv_input_once_and_gives_the_same_frame() {
    let cfg = ModelConfig::small();
    let mut w = WeightMap::default();
    insert_seeded_refiner(&mut w, &cfg, 3);
    let s = cfg.refiner.size;
    let x = seeded(7, cfg.refiner.in_channels * s * s);
    let mut r = Refiner::new(&w, &cfg, NoiseMode::Stored).expect("refiner loads");
    let (mut plain, mut observed) = (vec![0f32; 3 * s * s], vec![0f32; 3 * s * s]);
    r.run(&x, &mut plain).expect("runs");
    let mut seen: Vec<(String, usize)> = Vec::new();
    r.run_observed(&x, &mut observed, &mut |name, act| seen.push((name.to_string(), act.len()))).expect("runs");
    assert_eq!(plain, observed, "observing changes the frame");
    let names: Vec<String> = r.conv_precisions().into_iter().map(|(n, _)| n).collect();
    let mut got: Vec<String> = seen.iter().map(|(n, _)| n.clone()).collect();
    let mut want = names.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "each conv weight reported exactly once");
    for (name, len) in &seen {
        assert!(w.tensors.contains_key(name), "`{name}` is not a weight name");
        let c_in = w.tensors[name].0[w.tensors[name].0.len() - 3];
        assert_eq!(len % c_in, 0, "`{name}`: activation of {len} floats is not [c_in = {c_in}, h, w]");
    }
    assert_eq!(seen[0], ("upsampler.conv_body_first.weight".to_string(), x.len()), "the first conv sees the splat");
}

#[test]
fn a_calibrated_activation_quantiser_is_used_when_present_and_checked() {
    let cfg = ModelConfig::small();
    let mut q = Quantised::new(&cfg, DType::I8);
    let name = "upsampler.final_conv.weight";
    let tensor = format!("{name}@act_scale");
    q.plain.insert(tensor.clone(), vec![1], vec![0.05]);
    let r = Refiner::new(&q, &cfg, NoiseMode::Stored).expect("loads");
    assert_eq!(r.final_conv.kernel.act_quant(), Some(ActQuant::symmetric(0.05)), "[scale]: symmetric");
    q.plain.insert(tensor.clone(), vec![2], vec![0.05, -90.0]);
    let r = Refiner::new(&q, &cfg, NoiseMode::Stored).expect("loads");
    assert_eq!(r.final_conv.kernel.act_quant(), Some(ActQuant { scale: 0.05, zero: -90 }), "[scale, zero]: affine");
    for (shape, values, what) in [
        (vec![1], vec![-1.0], "activation scale -1"),
        (vec![2], vec![0.05, 0.5], "zero point 0.5"),
        (vec![2], vec![0.05, 128.0], "zero point 128"),
        (vec![3], vec![0.05, 1.0, 2.0], "[3]"),
    ] {
        q.plain.insert(tensor.clone(), shape, values);
        let err = Refiner::new(&q, &cfg, NoiseMode::Stored).err().expect(what);
        let msg = err.to_string();
        assert!(msg.contains(&tensor) && msg.contains(what), "{what}: {msg}");
    }
}
