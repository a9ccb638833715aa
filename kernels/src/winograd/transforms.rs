//! The F(4x4, 3x3) transforms of Lavin & Gray (2015), interpolation points 0, +-1, +-2 and infinity:
//! weights `U = G g G^T` (6x6 from 3x3), input tiles `V = B^T d B` (6x6 from a 6x6 patch at stride 4) and
//! outputs `Y = A^T M A` (4x4 from 6x6).
//!
//! The input and output transforms work on [`L`] tiles at once (`[f32; L]` lanes, one tile per lane), so
//! each line below is one vector operation; the functions are `#[inline(always)]` bodies that `mod.rs`
//! compiles once per ISA (AVX-512F, AVX2+FMA, baseline: NEON on aarch64, SSE2 elsewhere).

/// Tiles per lane group (one AVX-512 vector, two AVX2 vectors, four NEON vectors).
pub const L: usize = 16;

/// Transformed tile side (`4 + 3 - 1`) and the number of independent products per tile.
pub const T: usize = 6;
pub const XI: usize = T * T;

/// One value per tile of a lane group.
pub type Lanes = [f32; L];

/// `G`, 6x3, in f64 so the weight transform rounds once.
const G: [[f64; 3]; 6] = [
    [0.25, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// `U = G g G^T` for one row-major 3x3 kernel `g`, row-major 6x6 (computed in f64, rounded once).
pub fn weight_tile(g: &[f32]) -> [f32; XI] {
    let mut gg = [[0f64; 3]; T]; // G g
    for (r, row) in gg.iter_mut().enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| G[r][k] * g[k * 3 + c] as f64).sum();
        }
    }
    let mut u = [0f32; XI];
    for r in 0..T {
        for c in 0..T {
            u[r * T + c] = (0..3).map(|k| gg[r][k] * G[c][k]).sum::<f64>() as f32;
        }
    }
    u
}

/// `B^T d` for one column of six lane vectors.
#[inline(always)]
pub fn bt(d: &[Lanes; T]) -> [Lanes; T] {
    let mut o = [[0f32; L]; T];
    for l in 0..L {
        let (d0, d1, d2, d3, d4, d5) = (d[0][l], d[1][l], d[2][l], d[3][l], d[4][l], d[5][l]);
        // Shared terms as in ncnn/Lavin: rows 1-2 and 3-4 differ only in sign.
        let (a, b) = (d4 - 4.0 * d2, d3 - 4.0 * d1);
        let (c, e) = (d4 - d2, 2.0 * (d3 - d1));
        o[0][l] = 4.0 * d0 - 5.0 * d2 + d4;
        o[1][l] = a + b;
        o[2][l] = a - b;
        o[3][l] = c + e;
        o[4][l] = c - e;
        o[5][l] = 4.0 * d1 - 5.0 * d3 + d5;
    }
    o
}

/// `A^T m` for one column of six lane vectors (four outputs).
#[inline(always)]
pub fn at(m: &[Lanes; T]) -> [Lanes; 4] {
    let mut o = [[0f32; L]; 4];
    for l in 0..L {
        let (m0, m1, m2, m3, m4, m5) = (m[0][l], m[1][l], m[2][l], m[3][l], m[4][l], m[5][l]);
        let (s12, d12, s34, d34) = (m1 + m2, m1 - m2, m3 + m4, m3 - m4);
        o[0][l] = m0 + s12 + s34;
        o[1][l] = d12 + 2.0 * d34;
        o[2][l] = s12 + 4.0 * s34;
        o[3][l] = d12 + 8.0 * d34 + m5;
    }
    o
}

/// Input row floats one lane group reads: columns `4 tx - 1 .. 4 (tx + L) + 1`.
pub const W: usize = 4 * L + 2;

/// Input transform of one lane group: `rows[k]` is input row `4 * ty - 1 + k` cut to this group
/// (`rows[k][x]` = column `4 * tx0 - 1 + x`, zeros in the padding), and `v[xi]` receives tile `l`'s
/// product `xi` at `v[xi][l]`.
#[inline(always)]
pub fn input_group(rows: [&[f32; W]; T], v: &mut [Lanes; XI]) {
    // De-interleave each row into columns: d[k][c][l] = rows[k][4 l + c].
    let mut e = [[[0f32; L]; T]; T]; // e[c][r]: B^T applied down column c
    for c in 0..T {
        let mut col = [[0f32; L]; T];
        for (k, row) in rows.iter().enumerate() {
            for l in 0..L {
                col[k][l] = row[4 * l + c];
            }
        }
        e[c] = bt(&col);
    }
    for r in 0..T {
        let row = [e[0][r], e[1][r], e[2][r], e[3][r], e[4][r], e[5][r]];
        let o = bt(&row);
        for c in 0..T {
            v[r * T + c] = o[c];
        }
    }
}

/// Output transform of one lane group: `m[xi][l]` for tile `l`, plus `bias`; `y[r][4 l + c]` receives
/// output row `r`, column `c` of tile `l` (the four output rows of the group, interleaved back).
#[inline(always)]
pub fn output_group(m: &[Lanes; XI], bias: f32, y: &mut [[f32; 4 * L]; 4]) {
    let mut s = [[[0f32; L]; T]; 4]; // s[r][c]: A^T applied down column c
    for c in 0..T {
        let col = [m[c], m[T + c], m[2 * T + c], m[3 * T + c], m[4 * T + c], m[5 * T + c]];
        let o = at(&col);
        for r in 0..4 {
            s[r][c] = o[r];
        }
    }
    for r in 0..4 {
        let o = at(&s[r]);
        for c in 0..4 {
            for l in 0..L {
                y[r][4 * l + c] = o[c][l] + bias;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 1-D transforms must satisfy Y = A^T[(G g) . (B^T d)] = correlation of d with g (4 outputs).
    #[test]
    fn one_dimensional_transforms_compute_a_correlation() {
        let g = [0.3f32, -1.2, 0.7];
        let d: [f32; 6] = [1.0, -2.0, 0.5, 3.0, -0.25, 2.0];
        let gg: Vec<f64> = (0..6).map(|r| (0..3).map(|k| G[r][k] * g[k] as f64).sum()).collect();
        let mut col = [[0f32; L]; T];
        for k in 0..T {
            col[k][0] = d[k];
        }
        let v = bt(&col);
        let mut m = [[0f32; L]; T];
        for k in 0..T {
            m[k][0] = (v[k][0] as f64 * gg[k]) as f32;
        }
        let y = at(&m);
        for i in 0..4 {
            let want: f32 = (0..3).map(|k| d[i + k] * g[k]).sum();
            // A handful of roundings on values of size ~10: 1e-5 absolute is a few ulps.
            assert!((y[i][0] - want).abs() < 1e-5, "output {i}: {} vs {want}", y[i][0]);
        }
    }

    #[test]
    fn weight_tile_of_a_delta_kernel_is_the_outer_product_of_g_columns() {
        let mut g = [0f32; 9];
        g[4] = 1.0; // centre tap
        let u = weight_tile(&g);
        for r in 0..T {
            for c in 0..T {
                let want = (G[r][1] * G[c][1]) as f32;
                assert!((u[r * T + c] - want).abs() < 1e-7, "U[{r}][{c}] = {} vs {want}", u[r * T + c]);
            }
        }
    }
}
