"""The 32-channel Gaussian rasteriser's forward pass (Inria 3DGS as forked by GAGAvatar; spec §5), in torch.

Rules follow `preprocessCUDA` / `renderCUDA`: near cull at view z <= 0.2; EWA projection with the Jacobian's
x/z, y/z clamped to +-1.3 tanfov and +0.3 on the 2D diagonal; quaternions *not* normalised; radius =
ceil(3 sqrt(lambda_max)) with max(0.1, mid^2 - det); `getRect` over 16x16 tiles; per tile the covering
Gaussians in (depth, index) order (the stable radix sort of |tile|depth| keys); front to back with
alpha = min(0.99, o exp(power)), skipping power > 0 and alpha < 1/255, stopping a pixel when T (1 - alpha)
would fall below 1e-4. `render` is vectorised over each tile's pixels; `render_pixel_loop` is the literal
per-pixel loop, used to check it.
"""
import math

import numpy as np
import torch

BLOCK = 16
NEAR = 0.2
ALPHA_MAX = 0.99
ALPHA_MIN = np.float32(1.0) / np.float32(255.0)
T_MIN = np.float32(0.0001)


def camera_matrices(transform, focal, width, height):
    """What `utils_renderer.build_camera_matrices` hands the rasteriser, in f32 like the official tensors:
    (view [4,4] row-vector form with columns 0 and 1 negated, full projection view @ K^T, tanfovx, tanfovy)."""
    view = torch.eye(4)
    view[:3, :3] = transform[:3, :3]
    view[3, :3] = transform[:3, 3]
    view[:, :2] *= -1.0
    fov = 2 * math.atan(1.0 / focal)
    k = torch.zeros(4, 4)
    k[0, 0] = k[1, 1] = 1.0 / math.tan(fov / 2)
    k[3, 2] = 1.0
    k[2, 2] = 100.0 / (100.0 - 0.01)
    k[2, 3] = -(100.0 * 0.01) / (100.0 - 0.01)
    return view, view @ k.T, 1.0 / focal, 1.0 / focal


def covariance3d(scales, rotations):
    """Sigma = R S S^T R^T from (w, x, y, z) quaternions used as given (the kernel's normalisation is
    commented out)."""
    r, x, y, z = rotations.unbind(-1)
    rot = torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - r * z), 2 * (x * z + r * y),
        2 * (x * y + r * z), 1 - 2 * (x * x + z * z), 2 * (y * z - r * x),
        2 * (x * z - r * y), 2 * (y * z + r * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).view(-1, 3, 3)
    m = rot * scales[:, None, :]  # R diag(s)
    return m @ m.transpose(1, 2)


def _transform_point(p, m):
    """`transformPoint4x4` literally: m[0][j] x + m[1][j] y + m[2][j] z + m[3][j], summed left to right with
    every f32 operation rounded (no fused multiply-add), so near-equal depths order as the C expression says."""
    x, y, z = p[:, 0:1], p[:, 1:2], p[:, 2:3]
    return x * m[0] + y * m[1] + z * m[2] + m[3]


def preprocess(g, view, proj, tanfovx, tanfovy, width, height):
    """Per-Gaussian screen quantities. Returns a dict; `visible` marks Gaussians that reach any tile."""
    p_view = _transform_point(g["positions"], view)
    p_hom = _transform_point(g["positions"], proj)
    p_w = 1.0 / (p_hom[:, 3] + 0.0000001)
    proj_xy = p_hom[:, :2] * p_w[:, None]
    tz = p_view[:, 2]
    visible = tz > NEAR

    fx = np.float32(width) / (np.float32(2.0) * np.float32(tanfovx))
    fy = np.float32(height) / (np.float32(2.0) * np.float32(tanfovy))
    limx, limy = np.float32(1.3) * np.float32(tanfovx), np.float32(1.3) * np.float32(tanfovy)
    tx = (p_view[:, 0] / tz).clamp(-limx, limx) * tz
    ty = (p_view[:, 1] / tz).clamp(-limy, limy) * tz
    zero = torch.zeros_like(tz)
    jac = torch.stack([fx / tz, zero, -(fx * tx) / (tz * tz), zero, fy / tz, -(fy * ty) / (tz * tz)], -1).view(-1, 2, 3)
    t = jac @ view[:3, :3].T  # J W with W the column-form view rotation
    cov = t @ covariance3d(g["scales"], g["rotations"]) @ t.transpose(1, 2)
    a, b, c = cov[:, 0, 0] + 0.3, cov[:, 0, 1], cov[:, 1, 1] + 0.3
    det = a * c - b * b
    visible &= det != 0
    det_inv = 1.0 / det
    conic = torch.stack([c * det_inv, -b * det_inv, a * det_inv], dim=-1)
    mid = 0.5 * (a + c)
    root = torch.sqrt(torch.clamp(mid * mid - det, min=0.1))
    radius = torch.ceil(3.0 * torch.sqrt(torch.maximum(mid + root, mid - root)))
    # ndc2Pix evaluates in double ((v + 1.0) * S - 1.0) * 0.5, stored as float.
    px = (((proj_xy[:, 0].double() + 1.0) * width - 1.0) * 0.5).float()
    py = (((proj_xy[:, 1].double() + 1.0) * height - 1.0) * 0.5).float()
    grid_x, grid_y = (width + BLOCK - 1) // BLOCK, (height + BLOCK - 1) // BLOCK
    r = torch.nan_to_num(radius, nan=0.0).clamp(max=2.0 ** 30).to(torch.int64).float()
    rect = lambda v, lim: torch.trunc(v / BLOCK).nan_to_num(0.0).clamp(-1, lim).to(torch.int64).clamp(0, lim)
    rmin_x, rmin_y = rect(px - r, grid_x), rect(py - r, grid_y)
    rmax_x, rmax_y = rect(px + r + BLOCK - 1, grid_x), rect(py + r + BLOCK - 1, grid_y)
    visible &= (rmax_x - rmin_x) * (rmax_y - rmin_y) != 0
    return {
        "xy": torch.stack([px, py], -1), "depth": tz, "conic": conic, "opacity": g["opacities"],
        "radius": torch.where(visible, radius, torch.zeros_like(radius)), "visible": visible,
        "rect": (rmin_x, rmin_y, rmax_x, rmax_y), "grid": (grid_x, grid_y),
    }


def tile_list(pre, tile_x, tile_y):
    """Indices of the Gaussians whose rectangle covers the tile, sorted by (depth, index)."""
    rmin_x, rmin_y, rmax_x, rmax_y = pre["rect"]
    mask = pre["visible"] & (rmin_x <= tile_x) & (tile_x < rmax_x) & (rmin_y <= tile_y) & (tile_y < rmax_y)
    idx = torch.nonzero(mask)[:, 0]
    order = torch.sort(pre["depth"][idx], stable=True).indices
    return idx[order]


def _tile_pixels(tile_x, tile_y, width, height):
    ys = torch.arange(tile_y * BLOCK, min((tile_y + 1) * BLOCK, height))
    xs = torch.arange(tile_x * BLOCK, min((tile_x + 1) * BLOCK, width))
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return xx.reshape(-1), yy.reshape(-1)


def tile_alphas(pre, idx, xs, ys):
    """Alpha of each listed Gaussian at each pixel [pixels, K], zero where the kernel skips it."""
    d_x = pre["xy"][idx, 0][None] - xs.float()[:, None]
    d_y = pre["xy"][idx, 1][None] - ys.float()[:, None]
    con = pre["conic"][idx]
    power = -0.5 * (con[None, :, 0] * d_x * d_x + con[None, :, 2] * d_y * d_y) - con[None, :, 1] * d_x * d_y
    alpha = torch.clamp(pre["opacity"][idx][None] * torch.exp(power), max=ALPHA_MAX)
    keep = (power <= 0.0) & (alpha >= ALPHA_MIN)
    return torch.where(keep, alpha, torch.zeros_like(alpha))


def render(g, colors, transform, focal, width, height, background=None):
    """Splat: [C, H, W] = sum of colour * alpha * T + T * background, per the rules above."""
    view, proj, tfx, tfy = camera_matrices(transform, focal, width, height)
    pre = preprocess(g, view, proj, tfx, tfy, width, height)
    ch = colors.shape[1]
    out = torch.zeros(ch, height, width)
    bg = torch.zeros(ch) if background is None else background
    grid_x, grid_y = pre["grid"]
    for ty in range(grid_y):
        for tx in range(grid_x):
            xs, ys = _tile_pixels(tx, ty, width, height)
            idx = tile_list(pre, tx, ty)
            alpha = tile_alphas(pre, idx, xs, ys)
            after = torch.cumprod(1.0 - alpha, dim=1)  # T after each Gaussian (inclusive)
            before = torch.cat([torch.ones(len(xs), 1), after[:, :-1]], dim=1)
            # A pixel stops at the first Gaussian whose T(1 - alpha) < 1e-4; T never rises, so every
            # later one is excluded too.
            used = (alpha > 0) & (after >= T_MIN)
            weight = torch.where(used, alpha * before, torch.zeros_like(alpha))
            t_final = torch.where(used, 1.0 - alpha, torch.ones_like(alpha)).prod(dim=1)
            acc = weight @ colors[idx] + t_final[:, None] * bg[None]
            out[:, ys, xs] = acc.T
    return out, pre


def render_pixel_loop(g, colors, transform, focal, width, height, pixels):
    """The kernel's per-pixel loop, written literally with f32 scalars, for `pixels` [(x, y), ...].
    Slow: for checking `render` on a few pixels. Returns [len(pixels), C]."""
    view, proj, tfx, tfy = camera_matrices(transform, focal, width, height)
    pre = preprocess(g, view, proj, tfx, tfy, width, height)
    f32 = np.float32
    xy, con, op = pre["xy"].numpy(), pre["conic"].numpy(), pre["opacity"].numpy()
    cols = colors.numpy()
    out = np.zeros((len(pixels), colors.shape[1]), dtype=np.float32)
    for n, (x, y) in enumerate(pixels):
        idx = tile_list(pre, x // BLOCK, y // BLOCK).numpy()
        t = f32(1.0)
        for j in idx:
            dx, dy = f32(xy[j, 0] - f32(x)), f32(xy[j, 1] - f32(y))
            power = f32(f32(-0.5) * (con[j, 0] * dx * dx + con[j, 2] * dy * dy) - con[j, 1] * dx * dy)
            if power > 0:
                continue
            alpha = min(f32(ALPHA_MAX), f32(op[j] * np.exp(power)))
            if alpha < ALPHA_MIN:
                continue
            test_t = f32(t * (f32(1) - alpha))
            if test_t < T_MIN:
                break
            out[n] += cols[j] * alpha * t
            t = test_t
    return torch.from_numpy(out)
