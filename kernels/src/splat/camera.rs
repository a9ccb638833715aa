//! The render camera exactly as `core/libs/utils_renderer.py::build_camera_matrices` hands it to the CUDA
//! rasteriser: a row-vector 4x4 view matrix with columns 0 and 1 negated (PyTorch3D axes -> 3DGS axes), the
//! full projection `V K^T`, `tanfov = 1 / focal` and the kernel's focal length in pixels.

/// Near plane of the projection matrix (`z_near` in the official code); it only affects the unused z row.
const Z_NEAR: f64 = 0.01;
/// Far plane of the projection matrix (`z_far`).
const Z_FAR: f64 = 100.0;

/// Everything the splatter needs to know about the view. Matrices are stored as PyTorch holds them
/// (row-major, row-vector convention): a world point `p` maps to `[p, 1] . view`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SplatCamera {
    /// World to view, `[[R, 0], [T, 1]]` with columns 0 and 1 negated.
    pub view: [[f32; 4]; 4],
    /// World to clip: `view . K^T` in f32, as `full_proj_matrix`.
    pub proj: [[f32; 4]; 4],
    /// `tanfovx`, `tanfovy`: `1 / focal` rounded to f32 (the Python double goes through a float argument).
    pub tan_fov: [f32; 2],
    /// Focal length in pixels, `width / (2 tanfovx)` and `height / (2 tanfovy)` in f32 (3072 at 512).
    pub focal_px: [f32; 2],
    pub width: usize,
    pub height: usize,
}

impl SplatCamera {
    /// The camera for a 3x4 `[R | T]` transform in PyTorch3D's row-vector convention (`x_view = x R + T`),
    /// a focal length in NDC units (12 for GAGAvatar) and the image size in pixels.
    pub fn from_transform(transform: &[[f32; 4]; 3], focal_ndc: f32, width: usize, height: usize) -> Self {
        let mut view = [[0f32; 4]; 4];
        for i in 0..3 {
            for j in 0..3 {
                view[i][j] = transform[i][j];
            }
            view[3][i] = transform[i][3];
        }
        view[3][3] = 1.0;
        for row in view.iter_mut() {
            row[0] = -row[0];
            row[1] = -row[1];
        }

        // get_projection_matrix: K[0][0] = 1 / tan(fov / 2) with fov = 2 atan(1 / focal), in doubles,
        // stored into a float32 tensor.
        let focal = focal_ndc as f64;
        let fov = 2.0 * (1.0 / focal).atan();
        let k_focal = (1.0 / (fov / 2.0).tan()) as f32;
        let mut k = [[0f32; 4]; 4];
        k[0][0] = k_focal;
        k[1][1] = k_focal;
        k[3][2] = 1.0;
        k[2][2] = (Z_FAR / (Z_FAR - Z_NEAR)) as f32;
        k[2][3] = (-(Z_FAR * Z_NEAR) / (Z_FAR - Z_NEAR)) as f32;

        // full = V . K^T, i.e. full[i][j] = sum_k V[i][k] K[j][k].
        let mut proj = [[0f32; 4]; 4];
        for (i, row) in proj.iter_mut().enumerate() {
            for (j, out) in row.iter_mut().enumerate() {
                *out = (0..4).fold(0f32, |acc, m| acc + view[i][m] * k[j][m]);
            }
        }

        let tan = (1.0 / focal) as f32;
        let tan_fov = [tan, tan];
        // rasterizer_impl.cu: `width / (2.0f * tan_fovx)` in float.
        let focal_px = [width as f32 / (2.0 * tan_fov[0]), height as f32 / (2.0 * tan_fov[1])];
        SplatCamera { view, proj, tan_fov, focal_px, width, height }
    }

    /// `transformPoint4x3(p, viewmatrix)`: the view-space position (x right, y down, z forward).
    #[inline]
    pub fn to_view(&self, p: [f32; 3]) -> [f32; 3] {
        let m = &self.view;
        let f = |j: usize| m[0][j] * p[0] + m[1][j] * p[1] + m[2][j] * p[2] + m[3][j];
        [f(0), f(1), f(2)]
    }

    /// `transformPoint4x4(p, projmatrix)`: homogeneous clip coordinates.
    #[inline]
    pub fn to_clip(&self, p: [f32; 3]) -> [f32; 4] {
        let m = &self.proj;
        let f = |j: usize| m[0][j] * p[0] + m[1][j] * p[1] + m[2][j] * p[2] + m[3][j];
        [f(0), f(1), f(2), f(3)]
    }

    /// Pixel position of a world point as the kernel computes it (pixel centres at integers), or `None`
    /// when the point is culled by the near test (view z <= 0.2) or is not finite.
    pub fn project_point(&self, p: [f32; 3]) -> Option<[f32; 2]> {
        let z = self.to_view(p)[2];
        if z.is_nan() || z <= super::project::NEAR_Z {
            return None;
        }
        let xy = super::project::clip_to_pixel(self.to_clip(p), self.width, self.height);
        (xy[0].is_finite() && xy[1].is_finite()).then_some(xy)
    }

    /// Tiles across and down (16x16 tiles, partial tiles at the right and bottom edges).
    pub fn tile_grid(&self) -> (usize, usize) {
        let b = super::project::BLOCK;
        (self.width.div_ceil(b), self.height.div_ceil(b))
    }
}
