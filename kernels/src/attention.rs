//! Multi-head self-attention from a packed qkv projection (timm/DINOv2 layout).

/// `qkv` is `[n, 3 * heads * head_dim]` laid out as `[3][heads][head_dim]` per token (the order of a
/// `(N, 3, heads, head_dim)` reshape). Computes `softmax(q k^T * head_dim^-0.5) v` per head and writes
/// `out` as `[n, heads * head_dim]` with heads concatenated (the `transpose(1, 2).reshape` order).
pub fn self_attention(qkv: &[f32], n: usize, heads: usize, head_dim: usize, out: &mut [f32]) {
    let dim = heads * head_dim;
    assert_eq!(qkv.len(), n * 3 * dim, "attention qkv length");
    assert_eq!(out.len(), n * dim, "attention output length");
    crate::reference::self_attention(qkv, n, heads, head_dim, out);
}
