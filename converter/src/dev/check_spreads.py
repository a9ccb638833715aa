"""Measures activation spreads of a seeded checkpoint, stage by stage, with a plain torch forward pass
written from the spec (docs/seeded-models.md quotes its output). Not part of CI; run by hand:

    gaga dev make-checkpoint --config small --seed 0 -o /tmp/small.pt
    /opt/gaga-ref-venv/bin/python converter/src/dev/check_spreads.py /tmp/small.pt

The splat is not reproduced here: the refiner is fed a stand-in 32-channel image (lifted colours inside
a head-sized ellipse, zero background). The runtime test `seeded_model_stays_healthy` measures the real
pipeline.
"""
import math
import sys

import torch
import torch.nn.functional as F

torch.manual_seed(0)
ck = torch.load(sys.argv[1], weights_only=True)
W = ck["model"]
plane = ck["meta_cfg"]["DATASET"]["POINT_PLANE_SIZE"]


def stats(name, x):
    x = x.float()
    print(f"{name:34s} mean {x.mean():+8.3f}  std {x.std():7.3f}  |max| {x.abs().max():8.3f}")


def conv(x, p, stride=1, pad=None):
    w = W[p + ".weight"]
    b = W.get(p + ".bias")
    return F.conv2d(x, w, b, stride=stride, padding=w.shape[-1] // 2 if pad is None else pad)


lrelu = lambda x: F.leaky_relu(x, 0.2)
dim = W["base_model.dino_model.cls_token"].shape[-1]
patch = W["base_model.dino_model.patch_embed.proj.weight"].shape[-1]
tokens = W["base_model.dino_model.pos_embed"].shape[1]
grid = int(math.isqrt(tokens - 1))
size = grid * patch
depth = 1 + max(int(k.split(".")[3]) for k in W if k.startswith("base_model.dino_model.blocks."))
heads = 12 if dim == 768 else 2

# A smooth stand-in portrait in [0, 1].
img = F.interpolate(torch.rand(1, 3, 6, 6), size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
x_img = (img - mean) / std

p = "base_model.dino_model"
t = conv(x_img, p + ".patch_embed.proj", stride=patch, pad=0).flatten(2).transpose(1, 2)
t = torch.cat([W[p + ".cls_token"], t], 1) + W[p + ".pos_embed"]
stats("dino tokens in", t)
outs = []
for b in range(depth):
    q = f"{p}.blocks.{b}"
    h = F.layer_norm(t, (dim,), W[q + ".norm1.weight"], W[q + ".norm1.bias"], 1e-6)
    qkv = F.linear(h, W[q + ".attn.qkv.weight"], W[q + ".attn.qkv.bias"]).view(1, tokens, 3, heads, dim // heads)
    qq, kk, vv = qkv.permute(2, 0, 3, 1, 4)
    logits = qq @ kk.transpose(-1, -2) / math.sqrt(dim // heads)
    a = (logits.softmax(-1) @ vv).transpose(1, 2).reshape(1, tokens, dim)
    t = t + W[q + ".ls1.gamma"] * F.linear(a, W[q + ".attn.proj.weight"], W[q + ".attn.proj.bias"])
    h = F.layer_norm(t, (dim,), W[q + ".norm2.weight"], W[q + ".norm2.bias"], 1e-6)
    h = F.linear(F.gelu(F.linear(h, W[q + ".mlp.fc1.weight"], W[q + ".mlp.fc1.bias"])), W[q + ".mlp.fc2.weight"], W[q + ".mlp.fc2.bias"])
    t = t + W[q + ".ls2.gamma"] * h
    if b == 0:
        stats("attention logits (block 0)", logits)
    outs.append(t)
stats(f"dino block {depth - 1} residual", t)
layers = [F.layer_norm(o, (dim,), W[p + ".norm.weight"], W[p + ".norm.bias"], 1e-6)[:, 1:] for o in outs[-4:]]
f1 = layers[-1][:, 0]
stats("f_feature1", f1)

q = "base_model"
rn = []
for i, l in enumerate(layers):
    x = l.transpose(1, 2).reshape(1, dim, grid, grid)
    x = conv(x, f"{q}.projects.{i}")
    if i == 0:
        x = F.conv_transpose2d(x, W[f"{q}.resize_layers.0.weight"], W[f"{q}.resize_layers.0.bias"], stride=4)
    elif i == 1:
        x = F.conv_transpose2d(x, W[f"{q}.resize_layers.1.weight"], W[f"{q}.resize_layers.1.bias"], stride=2)
    elif i == 3:
        x = conv(x, f"{q}.resize_layers.3", stride=2)
    im = F.interpolate(x_img, size=x.shape[-2:], mode="bilinear", align_corners=False, antialias=True)
    rn.append(conv(torch.cat([im, x], 1), f"{q}.layer_rn.{i}"))
    stats(f"layer_rn {i}", rn[-1])


def rcu(x, p):
    h = conv(F.relu(x), p + ".conv1")
    return x + conv(F.relu(h), p + ".conv2")


path = None
for r in range(4):
    p = f"{q}.refinenet.{r}"
    src = rn[3 - r]
    x = src if path is None else path + rcu(src, p + ".resConfUnit1")
    x = rcu(x, p + ".resConfUnit2")
    target = [rn[2], rn[1], rn[0]][r].shape[-2:] if r < 3 else (x.shape[-2] * 2, x.shape[-1] * 2)
    x = F.interpolate(x, size=target, mode="bilinear", align_corners=True)
    path = conv(x, p + ".out_conv")
    stats(f"refinenet {r}", path)
f0 = conv(path, f"{q}.output_conv")
stats("f_feature0", f0)

d = torch.tensor([0.0, 0.0, -1.0])
fr = torch.tensor([1.0, 2.0, 4.0, 8.0])
e = (d[:, None] * fr[None, :]).flatten()
direnc = torch.cat([e.sin(), (e + math.pi / 2).sin(), d])

lin = lambda x, p: F.linear(x, W[p + ".weight"], W[p + ".bias"])
g = "gs_generator_g"
hb = W["head_base"]
x = torch.cat([hb, f1.expand(hb.shape[0], -1)], 1)
for i in (0, 2, 4):
    x = F.relu(lin(x, f"{g}.feature_layers.{i}"))
x = lin(x, f"{g}.feature_layers.6")
x = torch.cat([x, direnc.expand(x.shape[0], -1)], 1)
head = lambda n: lin(F.relu(lin(x, f"{g}.{n}_layers.0")), f"{g}.{n}_layers.2")
stats("vertex colours", head("color"))
op = head("opacity").sigmoid()
sc = head("scale").sigmoid() * 0.05
print(f"vertex opacity quantiles 5/50/95%: {op.quantile(0.05):.3f} {op.median():.3f} {op.quantile(0.95):.3f}")
print(f"vertex scale quantiles 5/50/95%:   {sc.quantile(0.05):.4f} {sc.median():.4f} {sc.quantile(0.95):.4f}")

colour_maps = []
for l in ("gs_generator_l0", "gs_generator_l1"):
    x = torch.cat([f0, direnc.view(1, -1, 1, 1).expand(1, -1, *f0.shape[-2:])], 1)
    for i in (0, 2, 4):
        x = F.relu(conv(x, f"{l}.gaussian_conv.{i}"))
    o = conv(x, f"{l}.gaussian_conv.6")
    colour_maps.append(o[:, :32])
    op, sc, dist = o[:, 32].sigmoid(), o[:, 33:36].sigmoid() * 0.05, o[:, 40].sigmoid()
    stats(f"{l} colours", o[:, :32])
    print(f"{l} opacity 5/50/95%: {op.quantile(0.05):.3f} {op.median():.3f} {op.quantile(0.95):.3f}")
    print(f"{l} scale   5/50/95%: {sc.quantile(0.05):.4f} {sc.median():.4f} {sc.quantile(0.95):.4f}")
    print(f"{l} lift    5/50/95%: {dist.quantile(0.05):.3f} {dist.median():.3f} {dist.quantile(0.95):.3f}")

# ---- refiner on a stand-in splat ----
u = "upsampler"
levels = 1 + max(int(k.split(".")[2]) for k in W if k.startswith(u + ".conv_body_down."))
out_size = 4 * 2**levels
yy, xx = torch.meshgrid(torch.linspace(-1, 1, out_size), torch.linspace(-1, 1, out_size), indexing="ij")
mask = ((xx / 0.55) ** 2 + (yy / 0.7) ** 2 < 1).float()
splat = F.interpolate(colour_maps[1], size=(out_size, out_size), mode="bilinear", align_corners=False) * mask


def refine(inp, noise_seed=0):
    gen = torch.Generator().manual_seed(noise_seed)
    feat = lrelu(conv(inp, u + ".conv_body_first"))
    skips = []

    def res(x, p, factor):
        h = lrelu(conv(x, p + ".conv1"))
        h = F.interpolate(h, scale_factor=factor, mode="bilinear", align_corners=False)
        h = lrelu(conv(h, p + ".conv2"))
        s = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
        return h + F.conv2d(s, W[p + ".skip.weight"])

    for i in range(levels):
        feat = res(feat, f"{u}.conv_body_down.{i}", 0.5)
        skips.insert(0, feat)
        if noise_seed == 0:
            stats(f"unet down {i}", feat)
    feat = lrelu(conv(feat, u + ".final_conv"))
    code = lin(feat.flatten(1), u + ".final_linear")
    conds = []
    for k in range(levels):
        feat = res(feat + skips[k], f"{u}.conv_body_up.{k}", 2.0)
        for br in ("condition_scale", "condition_shift"):
            conds.append(conv(lrelu(conv(feat, f"{u}.{br}.{k}.0")), f"{u}.{br}.{k}.2"))
        if noise_seed == 0:
            stats(f"unet up {k}", feat)
            stats(f"  sft shift {k}", conds[-1])
    dcd = u + ".stylegan_decoder"
    w = code * torch.rsqrt((code**2).mean(1, keepdim=True) + 1e-8)
    for i in range(8):
        w = lrelu(lin(w, f"{dcd}.style_mlp.{2 * i + 1}"))

    def modconv(x, p, demod, up):
        s = lin(w, p + ".modulated_conv.modulation")
        wt = W[p + ".modulated_conv.weight"][0] * s.view(1, -1, 1, 1)
        if demod:
            wt = wt * torch.rsqrt((wt**2).sum((1, 2, 3), keepdim=True) + 1e-8)
        if up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return F.conv2d(x, wt, padding=wt.shape[-1] // 2)

    def style_conv(x, p, up):
        o = modconv(x, p, True, up) * math.sqrt(2)
        o = o + W[p + ".weight"] * torch.randn(1, 1, *o.shape[-2:], generator=gen)
        return lrelu(o + W[p + ".bias"])

    out = style_conv(W[dcd + ".constant_input.weight"], dcd + ".style_conv1", False)
    rgb = modconv(out, dcd + ".to_rgb1", False, False) + W[dcd + ".to_rgb1.bias"]
    for k in range(levels):
        out = style_conv(out, f"{dcd}.style_convs.{2 * k}", True)
        out = out * conds[2 * k] + conds[2 * k + 1]
        out = style_conv(out, f"{dcd}.style_convs.{2 * k + 1}", False)
        rgb = F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False)
        rgb = rgb + modconv(out, f"{dcd}.to_rgbs.{k}", False, False) + W[f"{dcd}.to_rgbs.{k}.bias"]
        if noise_seed == 0:
            stats(f"decoder level {k} features", out)
    if noise_seed == 0:
        stats("unet deepest feature", feat)
        stats("sft scale (last)", conds[-2])
        stats("sft shift (last)", conds[-1])
        stats("style w", w)
        stats("pre-sigmoid rgb", rgb)
    return rgb.sigmoid()


stats("stand-in splat", splat)
a = refine(splat)
shifted = splat.clone()
h = out_size
shifted[..., h // 2 : 3 * h // 4, h // 3 : 2 * h // 3] = splat[..., h // 2 - h // 16 : 3 * h // 4 - h // 16, h // 3 : 2 * h // 3]
b = refine(shifted, noise_seed=0)
c = refine(splat, noise_seed=1)
psnr = lambda x, y: 10 * math.log10(1 / F.mse_loss(x, y).item())
print(f"rgb quantiles 5/50/95%: {a.quantile(0.05):.3f} {a.median():.3f} {a.quantile(0.95):.3f}")
print(f"PSNR mouth region moved vs not: {psnr(a, b):.1f} dB; same input, other noise: {psnr(a, c):.1f} dB")
