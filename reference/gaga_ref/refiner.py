"""The neural renderer `upsampler`: a StyleUNet (UNet encoder, SFT condition branch, StyleGAN2 decoder;
spec §6), with the official explicit modulated-weight formulation (W * s, demodulation, grouped conv) and the
noise taken from the stored buffers `noises.noiseK` (randomize_noise=False)."""
import torch
import torch.nn.functional as F

U = "upsampler."
D = "upsampler.stylegan_decoder."


def _conv(sd, name, x, padding=0):
    return F.conv2d(x, sd[name + ".weight"], sd.get(name + ".bias"), padding=padding)


def _lrelu(x):
    return F.leaky_relu(x, 0.2)


def _resample(x, factor):
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


def _resblock(sd, name, x, factor):
    out = _lrelu(_conv(sd, name + ".conv1", x, padding=1))
    out = _lrelu(_conv(sd, name + ".conv2", _resample(out, factor), padding=1))
    return out + F.conv2d(_resample(x, factor), sd[name + ".skip.weight"])


def _count(sd, prefix):
    return len({k[len(prefix):].split(".")[0] for k in sd if k.startswith(prefix)})


def modulated_conv(sd, name, x, w, demodulate, upsample=False):
    """StyleGAN2 ModulatedConv2d: s = modulation(w); W' = W s (per input channel), optionally scaled by
    rsqrt(sum W'^2 + 1e-8) per output channel; grouped conv (one group, batch 1), padding k // 2."""
    weight = sd[name + ".weight"]  # [1, out, in, k, k]
    style = F.linear(w, sd[name + ".modulation.weight"], sd[name + ".modulation.bias"])
    weight = weight * style.view(1, 1, -1, 1, 1)
    if demodulate:
        weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(1, -1, 1, 1, 1)
    k = weight.shape[-1]
    weight = weight.view(-1, weight.shape[2], k, k)
    if upsample:
        x = _resample(x, 2)
    return F.conv2d(x, weight, padding=k // 2, groups=1)


def style_conv(sd, name, x, w, noise, upsample=False):
    out = modulated_conv(sd, name + ".modulated_conv", x, w, True, upsample) * 2 ** 0.5
    out = out + sd[name + ".weight"] * noise
    return _lrelu(out + sd[name + ".bias"])


def to_rgb(sd, name, x, w, skip=None):
    out = modulated_conv(sd, name + ".modulated_conv", x, w, False) + sd[name + ".bias"]
    return out if skip is None else out + _resample(skip, 2)


def refine(sd, x):
    """[1, 32, S, S] splat -> [1, 3, S, S] RGB after the sigmoid (not clamped)."""
    levels = _count(sd, U + "conv_body_down.")
    feat = _lrelu(_conv(sd, U + "conv_body_first", x))
    skips = []
    for i in range(levels):
        feat = _resblock(sd, f"{U}conv_body_down.{i}", feat, 0.5)
        skips.insert(0, feat)
    feat = _lrelu(_conv(sd, U + "final_conv", feat, padding=1))
    style = F.linear(feat.reshape(1, -1), sd[U + "final_linear.weight"], sd[U + "final_linear.bias"])
    conditions = []
    for i in range(levels):
        feat = _resblock(sd, f"{U}conv_body_up.{i}", feat + skips[i], 2)
        for branch in ("condition_scale", "condition_shift"):
            c = _lrelu(_conv(sd, f"{U}{branch}.{i}.0", feat, padding=1))
            conditions.append(_conv(sd, f"{U}{branch}.{i}.2", c, padding=1))

    w = style * torch.rsqrt(torch.mean(style ** 2, dim=1, keepdim=True) + 1e-8)  # NormStyleCode
    for j in range(_count(sd, D + "style_mlp.")):
        w = _lrelu(F.linear(w, sd[f"{D}style_mlp.{2 * j + 1}.weight"], sd[f"{D}style_mlp.{2 * j + 1}.bias"]))
    noise = [sd[f"{D}noises.noise{i}"] for i in range(2 * levels + 1)]
    out = style_conv(sd, D + "style_conv1", sd[D + "constant_input.weight"], w, noise[0])
    skip = to_rgb(sd, D + "to_rgb1", out, w)
    for k in range(levels):
        out = style_conv(sd, f"{D}style_convs.{2 * k}", out, w, noise[2 * k + 1], upsample=True)
        out = out * conditions[2 * k] + conditions[2 * k + 1]  # SFT at every level
        out = style_conv(sd, f"{D}style_convs.{2 * k + 1}", out, w, noise[2 * k + 2])
        skip = to_rgb(sd, f"{D}to_rgbs.{k}", out, w, skip)
    return torch.sigmoid(skip)
