//! The StyleConvs' noise inputs: the checkpoint's fixed buffers (deterministic), or fresh N(0, 1)
//! maps per call like the official `randomize_noise=True` path (not bit-comparable with torch's RNG).

use std::borrow::Cow;

use crate::config::{ModelConfig, RefinerConfig};
use crate::error::Result;
use crate::weights::Weights;

/// Where the StyleGAN2 noise comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NoiseMode {
    /// The stored buffers `upsampler.stylegan_decoder.noises.noise{i}`: every frame is reproducible.
    #[default]
    Stored,
    /// Standard normal noise drawn per call from a generator seeded once with `seed`.
    Random { seed: u64 },
}

pub(super) struct Noise<'w> {
    maps: Vec<Cow<'w, [f32]>>,
    rng: Option<SplitMix>,
}

impl<'w> Noise<'w> {
    pub fn new(w: &'w dyn Weights, cfg: &ModelConfig, mode: NoiseMode) -> Result<Self> {
        let n = cfg.refiner.style_convs();
        let side = RefinerConfig::noise_size;
        Ok(match mode {
            NoiseMode::Stored => Noise {
                maps: (0..n)
                    .map(|i| w.f32_shaped(&format!("upsampler.stylegan_decoder.noises.noise{i}"), &[1, 1, side(i), side(i)]))
                    .collect::<Result<_>>()?,
                rng: None,
            },
            NoiseMode::Random { seed } => {
                Noise { maps: (0..n).map(|i| Cow::Owned(vec![0.0; side(i) * side(i)])).collect(), rng: Some(SplitMix(seed)) }
            }
        })
    }

    /// Draws this call's maps (random mode only).
    pub fn next_frame(&mut self) {
        if let Some(rng) = &mut self.rng {
            for map in &mut self.maps {
                rng.fill_normal(map.to_mut());
            }
        }
    }

    /// Noise map of StyleConv `i` in execution order.
    pub fn get(&self, i: usize) -> &[f32] {
        &self.maps[i]
    }
}

/// SplitMix64 with Box-Muller: small, allocation-free, good enough for noise injection. Shared with the
/// Vulkan refiner so `NoiseMode::Random` draws the same maps on both backends.
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1], never 0 so the logarithm stays finite.
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal values, drawn in pairs (so a map of even length takes whole pairs).
    pub(crate) fn fill_normal(&mut self, out: &mut [f32]) {
        for pair in out.chunks_mut(2) {
            let (r, t) = ((-2.0 * self.unit().ln()).sqrt(), std::f64::consts::TAU * self.unit());
            pair[0] = (r * t.cos()) as f32;
            if let Some(second) = pair.get_mut(1) {
                *second = (r * t.sin()) as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SplitMix;

    #[test]
    fn random_noise_has_zero_mean_and_unit_variance() {
        let mut v = vec![0f32; 1 << 16];
        SplitMix(42).fill_normal(&mut v);
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        // 65536 samples: the standard error of the mean is 0.004 and of the variance about 0.006.
        assert!(mean.abs() < 0.02 && (var - 1.0).abs() < 0.03, "mean {mean}, variance {var}");
    }
}
