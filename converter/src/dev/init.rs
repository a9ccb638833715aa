//! How one seeded tensor's values are drawn, and the shared initialisation rules (gains, default biases)
//! the layout uses. The reasons for each choice are in `docs/seeded-models.md`.

use super::rng::TensorRng;

/// Variance gain of a layer followed by ReLU (He).
pub const RELU: f32 = 2.0;
/// Variance gain of a layer followed by LeakyReLU(0.2): 2 / (1 + 0.2^2).
pub const LRELU: f32 = 2.0 / 1.04;
/// Variance gain of a layer with no activation after it.
pub const LINEAR: f32 = 1.0;

/// The distribution of a tensor's values.
#[derive(Clone, Debug, PartialEq)]
pub enum Init {
    /// Every element uniform with this mean and standard deviation.
    Uniform { mean: f32, std: f32 },
    /// Every element (approximately) normal with this mean and standard deviation.
    Normal { mean: f32, std: f32 },
    /// Uniform in `[lo, hi)`.
    Range { lo: f32, hi: f32 },
    /// Dimension-0 slice `r` uniform with `(mean, std) = rows[r]` (per-output-channel calibration).
    Rows(Vec<(f32, f32)>),
}

impl Init {
    /// Weights of a layer with `fan_in` inputs per output, variance `gain / fan_in`.
    pub fn fan_in(fan_in: usize, gain: f32) -> Init {
        Init::Uniform { mean: 0.0, std: (gain / fan_in as f32).sqrt() }
    }

    /// PyTorch's default bias, `U(+-1/sqrt(fan_in))`: small, and not all equal.
    pub fn default_bias(fan_in: usize) -> Init {
        Init::Uniform { mean: 0.0, std: 1.0 / (3.0 * fan_in as f32).sqrt() }
    }

    /// A constant (a zero-width uniform: the stream is still consumed, which keeps the rule uniform).
    pub fn constant(value: f32) -> Init {
        Init::Uniform { mean: value, std: 0.0 }
    }

    /// Fills `out` with elements `start..start + out.len()` of a tensor with `numel` elements.
    /// Calls must walk the tensor in order with the same `rng` (the values are one stream).
    pub fn fill(&self, rng: &mut TensorRng, numel: usize, start: usize, out: &mut [f32]) {
        match self {
            Init::Uniform { mean, std } => out.iter_mut().for_each(|v| *v = rng.uniform(*mean, *std)),
            Init::Normal { mean, std } => out.iter_mut().for_each(|v| *v = rng.normal(*mean, *std)),
            Init::Range { lo, hi } => out.iter_mut().for_each(|v| *v = lo + (hi - lo) * rng.unit()),
            Init::Rows(rows) => {
                let row_len = (numel / rows.len().max(1)).max(1);
                for (i, v) in out.iter_mut().enumerate() {
                    let (mean, std) = rows[((start + i) / row_len).min(rows.len() - 1)];
                    *v = rng.uniform(mean, std);
                }
            }
        }
    }
}

/// One tensor of a seeded checkpoint: official name, shape and value distribution.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub init: Init,
}

impl ParamSpec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// All values at once (for in-memory weights; files stream with `fill` instead).
    pub fn values(&self, seed: u64) -> Vec<f32> {
        let mut out = vec![0.0; self.numel()];
        let mut rng = TensorRng::new(seed, &self.name);
        self.init.fill(&mut rng, out.len(), 0, &mut out);
        out
    }
}

/// Collects specs under a name prefix; the helpers name the usual PyTorch layers.
pub struct Specs {
    pub list: Vec<ParamSpec>,
}

impl Specs {
    pub fn new() -> Self {
        Specs { list: Vec::new() }
    }

    pub fn push(&mut self, name: impl Into<String>, shape: &[usize], init: Init) {
        self.list.push(ParamSpec { name: name.into(), shape: shape.to_vec(), init });
    }

    /// `nn.Linear(inp, out)` with weight variance `gain / inp` and the default bias.
    pub fn linear(&mut self, name: &str, out: usize, inp: usize, gain: f32) {
        self.push(format!("{name}.weight"), &[out, inp], Init::fan_in(inp, gain));
        self.push(format!("{name}.bias"), &[out], Init::default_bias(inp));
    }

    /// `nn.Conv2d(inp, out, k)` with weight variance `gain / (inp k k)`; `bias` adds the default bias.
    pub fn conv(&mut self, name: &str, out: usize, inp: usize, k: usize, gain: f32, bias: bool) {
        self.push(format!("{name}.weight"), &[out, inp, k, k], Init::fan_in(inp * k * k, gain));
        if bias {
            self.push(format!("{name}.bias"), &[out], Init::default_bias(inp * k * k));
        }
    }

    /// A LayerNorm: gamma near one, beta near zero.
    pub fn layer_norm(&mut self, name: &str, dim: usize) {
        self.push(format!("{name}.weight"), &[dim], Init::Uniform { mean: 1.0, std: 0.05 });
        self.push(format!("{name}.bias"), &[dim], Init::Uniform { mean: 0.0, std: 0.02 });
    }
}

impl Default for Specs {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_fill_equals_one_shot_fill() {
        let init = Init::Rows(vec![(0.0, 1.0), (5.0, 0.1), (-3.0, 0.0)]);
        let spec = ParamSpec { name: "t".into(), shape: vec![3, 7], init: init.clone() };
        let whole = spec.values(9);
        let mut rng = TensorRng::new(9, "t");
        let mut pieces = vec![0.0; 21];
        for (i, chunk) in pieces.chunks_mut(4).enumerate() {
            init.fill(&mut rng, 21, i * 4, chunk);
        }
        assert_eq!(whole, pieces);
        assert!(whole[14..].iter().all(|&v| v == -3.0), "third row is the constant -3");
        assert!(whole[7..14].iter().all(|&v| (v - 5.0).abs() <= 0.18), "second row within mean +- sqrt(3) std");
    }
}
