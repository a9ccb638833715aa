//! Normalisation layers.

/// LayerNorm over the last axis of `[n, dim]` rows (biased variance, as PyTorch): `out = (x - mean) / sqrt(var + eps) * gamma + beta`.
pub fn layer_norm(x: &[f32], n: usize, dim: usize, gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
    assert_eq!(x.len(), n * dim, "layer_norm input length");
    assert_eq!(gamma.len(), dim, "layer_norm gamma length");
    assert_eq!(beta.len(), dim, "layer_norm beta length");
    assert_eq!(out.len(), n * dim, "layer_norm output length");
    crate::reference::layer_norm(x, n, dim, gamma, beta, eps, out);
}
