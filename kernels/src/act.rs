//! Element-wise activations, in place: vectorised (see `vmath`) and split over rayon's pool when large.

use rayon::prelude::*;

use crate::vmath;

/// Elements per parallel chunk: below this, waking the pool costs more than the work.
const CHUNK: usize = 1 << 16;

/// Applies `f` to `x` in chunks, in parallel when there is more than one chunk. Each element's result
/// does not depend on the chunking.
fn chunked(x: &mut [f32], f: impl Fn(&mut [f32]) + Sync + Send) {
    if x.len() <= CHUNK {
        f(x);
    } else {
        x.par_chunks_mut(CHUNK).for_each(f);
    }
}

/// `max(x, 0)`.
pub fn relu(x: &mut [f32]) {
    chunked(x, |c| c.iter_mut().for_each(|v| *v = v.max(0.0)));
}

/// LeakyReLU with the given negative slope (0.2 throughout the refiner).
pub fn leaky_relu(x: &mut [f32], slope: f32) {
    chunked(x, |c| c.iter_mut().for_each(|v| *v = if *v < 0.0 { *v * slope } else { *v }));
}

/// Logistic sigmoid, `1 / (1 + exp(-x))`.
#[inline]
pub fn sigmoid_scalar(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

/// Sigmoid over a slice; within 2e-7 of [`sigmoid_scalar`] (vectorised exp, see `vmath`).
pub fn sigmoid(x: &mut [f32]) {
    chunked(x, vmath::sigmoid_slice);
}

/// Exact (erf-based) GELU, PyTorch's default `nn.GELU()`: `0.5 x (1 + erf(x / sqrt 2))`.
#[inline]
pub fn gelu_scalar(v: f32) -> f32 {
    0.5 * v * (1.0 + libm::erff(v * std::f32::consts::FRAC_1_SQRT_2))
}

/// GELU over a slice; within `2e-7 |x| + 1e-7` of [`gelu_scalar`] (polynomial erf, see `vmath`).
pub fn gelu(x: &mut [f32]) {
    chunked(x, vmath::gelu_slice);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::seeded;

    fn inputs() -> Vec<f32> {
        // More than one chunk, an odd tail, values in [-8, 8).
        seeded(5, 3 * CHUNK + 13).iter().map(|v| v * 8.0).collect()
    }

    #[test]
    fn relu_and_leaky_relu_are_exact() {
        let x = inputs();
        let mut r = x.clone();
        relu(&mut r);
        let mut l = x.clone();
        leaky_relu(&mut l, 0.2);
        for (i, &v) in x.iter().enumerate() {
            assert_eq!(r[i], v.max(0.0));
            assert_eq!(l[i], if v < 0.0 { v * 0.2 } else { v });
        }
    }

    #[test]
    fn sigmoid_and_gelu_slices_match_the_scalar_forms() {
        let x = inputs();
        let mut s = x.clone();
        sigmoid(&mut s);
        let mut g = x.clone();
        gelu(&mut g);
        for (i, &v) in x.iter().enumerate() {
            assert!((s[i] - sigmoid_scalar(v)).abs() <= 2e-7, "sigmoid({v}): {} vs {}", s[i], sigmoid_scalar(v));
            let bound = 2e-7 * v.abs() + 1e-7 + gelu_scalar(v).abs() * f32::EPSILON;
            assert!((g[i] - gelu_scalar(v)).abs() <= bound, "gelu({v}): {} vs {}", g[i], gelu_scalar(v));
        }
    }
}
