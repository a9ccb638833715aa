#!/usr/bin/env python3
"""Self-checks of the reference against straightforward formulations (run by hand with the venv python:
`/opt/gaga-ref-venv/bin/python reference/tests/check_reference.py`). Each check prints its measured error."""
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from gaga_ref import flame, model, refiner, seeded, splat  # noqa: E402

torch.set_grad_enabled(False)
FRONTAL = torch.tensor([[-1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, -1.0, 9.0144]])


def check(name, ok, detail):
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    if not ok:
        check.failed = True


def random_gaussians(n, gen):
    return {"positions": torch.randn(n, 3, generator=gen) * 0.03, "scales": torch.rand(n, 3, generator=gen) * 0.01,
            "rotations": torch.randn(n, 4, generator=gen) * 0.5, "opacities": 0.3 + 0.7 * torch.rand(n, generator=gen)}


def splat_vectorised_equals_the_literal_loop():
    gen = torch.Generator().manual_seed(3)
    g = random_gaussians(300, gen)
    cols = torch.randn(300, 32, generator=gen)
    w, h = 40, 24  # not multiples of 16: partial tiles
    out, _ = splat.render(g, cols, FRONTAL, 12.0 * 512 / 40, w, h)
    pix = [(x, y) for y in range(h) for x in range(w)]
    ref = splat.render_pixel_loop(g, cols, FRONTAL, 12.0 * 512 / 40, w, h, pix)
    vec = out.permute(1, 2, 0).reshape(-1, 32)
    err = ((vec - ref).abs().max() / ref.abs().max()).item()
    # Channel 0 of all-ones colours is 1 - T: pixels above 1 - 1e-4 stopped early (the T rule ran).
    ones = torch.zeros(300, 32)
    ones[:, 0] = 1.0
    coverage, _ = splat.render(g, ones, FRONTAL, 12.0 * 512 / 40, w, h)
    stopped = int((coverage[0] > 1 - 2e-4).sum())
    check("splat vectorised == per-pixel loop", err < 1e-5 and stopped > 0,
          f"rel err {err:.2e} over {len(pix)} pixels, {stopped} stopped by the T rule")


def zero_gaussians_render_background():
    g = {k: v[:0] for k, v in random_gaussians(1, torch.Generator().manual_seed(0)).items()}
    bg = torch.arange(32, dtype=torch.float32)
    out, _ = splat.render(g, torch.zeros(0, 32), FRONTAL, 12.0, 32, 32, background=bg)
    check("zero Gaussians render the background", torch.equal(out, bg[:, None, None].expand(32, 32, 32)), "exact")


def harmonic_by_hand():
    d = torch.tensor([0.1, -0.2, 0.3])
    e = model.harmonic(d)
    want = [math.sin(d[c].item() * 2 ** f) for c in range(3) for f in range(4)]
    want += [math.cos(d[c].item() * 2 ** f) for c in range(3) for f in range(4)] + d.tolist()
    err = (e - torch.tensor(want)).abs().max().item()
    check("harmonic encoding by hand", err < 1e-6, f"max abs err {err:.2e}")


def plane_worked_example():
    pts, dirs = model.lifting_plane(FRONTAL, 296, 12.0)
    span = pts[:, :2].abs().max().item()
    view, proj, *_ = splat.camera_matrices(FRONTAL, 12.0, 512, 512)
    p = torch.cat([pts[[0, 295]], torch.ones(2, 1)], 1) @ proj
    px = (((p[:, :2] / p[:, 3:]).double() + 1) * 512 - 1) * 0.5
    ok = abs(span - 0.7512) < 1e-3 and (px - torch.tensor([[-0.5, -0.5], [511.5, -0.5]], dtype=torch.float64)).abs().max() < 1e-2
    check("plane worked example (+-0.7512, corners at -0.5 / 511.5)", ok, f"span {span:.4f}, corners {px.tolist()}")


def flame_rest_pose_is_the_scaled_template():
    fl = seeded.seeded_flame()
    v = flame.flame_vertices(fl, torch.zeros(300), torch.zeros(100), torch.zeros(6), torch.zeros(6))
    err = (v - fl["v_template"] * 5).abs().max().item()
    check("FLAME rest pose == template x 5", err < 1e-5, f"max abs err {err:.2e}")


def modulated_conv_equals_conv_of_modulated_input():
    gen = torch.Generator().manual_seed(5)
    sd = {"m.weight": torch.randn(1, 6, 4, 3, 3, generator=gen), "m.modulation.weight": torch.randn(4, 8, generator=gen),
          "m.modulation.bias": torch.ones(4)}
    x, w = torch.randn(1, 4, 9, 9, generator=gen), torch.randn(1, 8, generator=gen)
    got = refiner.modulated_conv(sd, "m", x, w, demodulate=True)
    s = F.linear(w, sd["m.modulation.weight"], sd["m.modulation.bias"])[0]
    base = sd["m.weight"][0]
    demod = torch.rsqrt((base * s[None, :, None, None]).pow(2).sum([1, 2, 3]) + 1e-8)
    want = F.conv2d(x * s[None, :, None, None], base, padding=1) * demod[None, :, None, None]
    err = ((got - want).abs().max() / want.abs().max()).item()
    check("modulated conv == conv(x*s) * demod", err < 1e-5, f"rel err {err:.2e}")


def attention_equals_sdpa():
    gen = torch.Generator().manual_seed(9)
    dim, heads, n = 48, 2, 26
    sd = {"b.attn.qkv.weight": torch.randn(3 * dim, dim, generator=gen) * 0.2, "b.attn.qkv.bias": torch.randn(3 * dim, generator=gen),
          "b.attn.proj.weight": torch.randn(dim, dim, generator=gen) * 0.2, "b.attn.proj.bias": torch.randn(dim, generator=gen)}
    x = torch.randn(1, n, dim, generator=gen)
    got = model._attention(sd, "b.", x, heads)
    q, k, v = F.linear(x, sd["b.attn.qkv.weight"], sd["b.attn.qkv.bias"]).reshape(1, n, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
    o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(1, n, dim)
    want = F.linear(o, sd["b.attn.proj.weight"], sd["b.attn.proj.bias"])
    err = ((got - want).abs().max() / want.abs().max()).item()
    check("attention == torch SDPA", err < 1e-5, f"rel err {err:.2e}")


if __name__ == "__main__":
    check.failed = False
    for fn in (splat_vectorised_equals_the_literal_loop, zero_gaussians_render_background, harmonic_by_hand,
               plane_worked_example, flame_rest_pose_is_the_scaled_template,
               modulated_conv_equals_conv_of_modulated_input, attention_equals_sdpa):
        fn()
    sys.exit(1 if check.failed else 0)
