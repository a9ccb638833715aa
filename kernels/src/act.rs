//! Element-wise activations, in place.

pub fn relu(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = v.max(0.0));
}

/// LeakyReLU with the given negative slope (0.2 throughout the refiner).
pub fn leaky_relu(x: &mut [f32], slope: f32) {
    x.iter_mut().for_each(|v| {
        if *v < 0.0 {
            *v *= slope
        }
    });
}

/// Logistic sigmoid, `1 / (1 + exp(-x))`.
#[inline]
pub fn sigmoid_scalar(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

pub fn sigmoid(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = sigmoid_scalar(*v));
}

/// Exact (erf-based) GELU, PyTorch's default `nn.GELU()`: `0.5 x (1 + erf(x / sqrt 2))`.
#[inline]
pub fn gelu_scalar(v: f32) -> f32 {
    0.5 * v * (1.0 + libm::erff(v * std::f32::consts::FRAC_1_SQRT_2))
}

pub fn gelu(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = gelu_scalar(*v));
}
