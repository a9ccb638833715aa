"""Seeded official-layout state dicts made in torch, for developing the reference without the Rust
`gaga dev` commands (the goldens themselves are always made from the `gaga dev` files). `SMALL` and
`OFFICIAL` mirror `ModelConfig::small()` / `::official()` in runtime/src/config.rs."""
import math

import torch

SMALL = dict(image=64, din=70, patch=14, dim=48, depth=5, mlp=192, proj=(8, 16, 24, 24), feat=16, fdim=16,
             head_base=16, trunk=16, vhid=24, lhid=8, style=32, mlp_layers=8,
             unet=(16, 16, 16, 8, 4), dec=(32, 32, 32, 16, 8), vertices=5023)
OFFICIAL = dict(image=512, din=518, patch=14, dim=768, depth=12, mlp=3072, proj=(256, 512, 1024, 1024), feat=256,
                fdim=256, head_base=256, trunk=256, vhid=128, lhid=128, style=512, mlp_layers=8,
                unet=(256, 256, 256, 256, 128, 64, 32, 16), dec=(512, 512, 512, 512, 256, 128, 64, 32), vertices=5023)


def state_dict_shapes(c):
    """Every inference tensor's official name and shape for config `c` (percep_loss excluded)."""
    s, d, g = {}, c["dim"], (c["din"] // c["patch"])
    dn = "base_model.dino_model."
    s.update({"head_base": [c["vertices"], c["head_base"]], dn + "cls_token": [1, 1, d],
              dn + "pos_embed": [1, g * g + 1, d], dn + "mask_token": [1, d],
              dn + "patch_embed.proj.weight": [d, 3, c["patch"], c["patch"]], dn + "patch_embed.proj.bias": [d],
              dn + "norm.weight": [d], dn + "norm.bias": [d]})
    for i in range(c["depth"]):
        p = f"{dn}blocks.{i}."
        for n, sh in [("norm1.weight", [d]), ("norm1.bias", [d]), ("attn.qkv.weight", [3 * d, d]), ("attn.qkv.bias", [3 * d]),
                      ("attn.proj.weight", [d, d]), ("attn.proj.bias", [d]), ("ls1.gamma", [d]), ("norm2.weight", [d]),
                      ("norm2.bias", [d]), ("mlp.fc1.weight", [c["mlp"], d]), ("mlp.fc1.bias", [c["mlp"]]),
                      ("mlp.fc2.weight", [d, c["mlp"]]), ("mlp.fc2.bias", [d]), ("ls2.gamma", [d])]:
            s[p + n] = sh
    pc, f = c["proj"], c["feat"]
    for i in range(4):
        s[f"base_model.projects.{i}.weight"], s[f"base_model.projects.{i}.bias"] = [pc[i], d, 1, 1], [pc[i]]
        s[f"base_model.layer_rn.{i}.weight"] = [f, pc[i] + 3, 3, 3]
    for i, k in ((0, 4), (1, 2), (3, 3)):
        s[f"base_model.resize_layers.{i}.weight"], s[f"base_model.resize_layers.{i}.bias"] = [pc[i], pc[i], k, k], [pc[i]]
    for i in range(4):
        for u in ("resConfUnit1", "resConfUnit2"):
            for cv in ("conv1", "conv2"):
                s[f"base_model.refinenet.{i}.{u}.{cv}.weight"] = [f, f, 3, 3]
                s[f"base_model.refinenet.{i}.{u}.{cv}.bias"] = [f]
        s[f"base_model.refinenet.{i}.out_conv.weight"], s[f"base_model.refinenet.{i}.out_conv.bias"] = [f, f, 1, 1], [f]
    s["base_model.output_conv.weight"], s["base_model.output_conv.bias"] = [c["fdim"], f, 3, 3], [c["fdim"]]
    t, de = c["trunk"], 27
    for i, (o, n) in enumerate([(t, c["head_base"] + d), (t, t), (t, t), (t, t)]):
        s[f"gs_generator_g.feature_layers.{2 * i}.weight"], s[f"gs_generator_g.feature_layers.{2 * i}.bias"] = [o, n], [o]
    for h, k in (("color", 32), ("opacity", 1), ("scale", 3), ("rotation", 4)):
        s[f"gs_generator_g.{h}_layers.0.weight"], s[f"gs_generator_g.{h}_layers.0.bias"] = [c["vhid"], t + de], [c["vhid"]]
        s[f"gs_generator_g.{h}_layers.2.weight"], s[f"gs_generator_g.{h}_layers.2.bias"] = [k, c["vhid"]], [k]
    lh = c["lhid"]
    for gname in ("gs_generator_l0", "gs_generator_l1"):
        for i, (o, n, k) in enumerate([(lh, c["fdim"] + de, 3), (lh, lh, 3), (lh, lh, 3), (41, lh, 1)]):
            s[f"{gname}.gaussian_conv.{2 * i}.weight"], s[f"{gname}.gaussian_conv.{2 * i}.bias"] = [o, n, k, k], [o]
    _refiner_shapes(s, c)
    return s


def _refiner_shapes(s, c):
    u, dc, sd = c["unet"], c["dec"], c["style"]
    levels = len(u) - 1
    s["upsampler.conv_body_first.weight"], s["upsampler.conv_body_first.bias"] = [u[-1], 32, 1, 1], [u[-1]]
    rev = list(reversed(u))
    for i in range(levels):
        for name, a, b in (("conv_body_down", rev[i], rev[i + 1]), ("conv_body_up", u[i], u[i + 1])):
            p = f"upsampler.{name}.{i}."
            s[p + "conv1.weight"], s[p + "conv1.bias"] = [a, a, 3, 3], [a]
            s[p + "conv2.weight"], s[p + "conv2.bias"] = [b, a, 3, 3], [b]
            s[p + "skip.weight"] = [b, a, 1, 1]
        s[f"upsampler.toRGB.{i}.weight"], s[f"upsampler.toRGB.{i}.bias"] = [3, u[i + 1], 1, 1], [3]
        ch = u[i + 1]
        for br in ("condition_scale", "condition_shift"):
            s[f"upsampler.{br}.{i}.0.weight"], s[f"upsampler.{br}.{i}.0.bias"] = [ch, ch, 3, 3], [ch]
            s[f"upsampler.{br}.{i}.2.weight"], s[f"upsampler.{br}.{i}.2.bias"] = [2 * ch, ch, 3, 3], [2 * ch]
    s["upsampler.final_conv.weight"], s["upsampler.final_conv.bias"] = [u[0], u[0], 3, 3], [u[0]]
    s["upsampler.final_linear.weight"], s["upsampler.final_linear.bias"] = [sd, u[0] * 16], [sd]
    dn = "upsampler.stylegan_decoder."
    for j in range(c["mlp_layers"]):
        s[f"{dn}style_mlp.{2 * j + 1}.weight"], s[f"{dn}style_mlp.{2 * j + 1}.bias"] = [sd, sd], [sd]
    s[dn + "constant_input.weight"] = [1, dc[0], 4, 4]

    def conv(p, a, b, k):
        s[p + "modulated_conv.weight"] = [1, b, a, k, k]
        s[p + "modulated_conv.modulation.weight"], s[p + "modulated_conv.modulation.bias"] = [a, sd], [a]
        s[p + "bias"] = [1, b, 1, 1]
        if k == 3:
            s[p + "weight"] = [1]
    conv(dn + "style_conv1.", dc[0], dc[0], 3)
    conv(dn + "to_rgb1.", dc[0], 3, 1)
    for k in range(levels):
        conv(f"{dn}style_convs.{2 * k}.", dc[k], dc[k + 1], 3)
        conv(f"{dn}style_convs.{2 * k + 1}.", dc[k + 1], dc[k + 1], 3)
        conv(f"{dn}to_rgbs.{k}.", dc[k + 1], 3, 1)
    for i in range(2 * levels + 1):
        r = 2 ** ((i + 5) // 2)
        s[f"{dn}noises.noise{i}"] = [1, 1, r, r]


def seeded_state_dict(c, seed=7):
    """Roughly calibrated random values: fan-in scaled weights, LayerNorm gammas 1, LayerScale 0.3,
    modulation biases 1, small noise strengths. Good enough to exercise every stage; not the Rust values."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for name, shape in state_dict_shapes(c).items():
        leaf = name.rsplit(".", 1)[-1]
        if "norm" in name and leaf == "weight" and len(shape) == 1:
            v = torch.ones(shape)
        elif leaf == "gamma":
            v = torch.full(shape, 0.3)
        elif name.endswith("modulation.bias"):
            v = torch.ones(shape)
        elif leaf == "bias" or (leaf == "weight" and shape == [1]):
            v = torch.randn(shape, generator=gen) * 0.05
        elif "noise" in leaf or "constant_input" in name or leaf in ("cls_token", "mask_token", "head_base"):
            v = torch.randn(shape, generator=gen)
        elif leaf == "pos_embed":
            v = torch.randn(shape, generator=gen) * 0.02
        else:
            fan_in = math.prod(shape[1:]) if "modulated_conv" not in name else math.prod(shape[2:])
            if "resize_layers.0" in name or "resize_layers.1" in name:
                fan_in = shape[0]
            v = torch.randn(shape, generator=gen) * math.sqrt(2.0 / fan_in)
        sd[name] = v
    for gname in ("gs_generator_l0", "gs_generator_l1"):
        sd[f"{gname}.gaussian_conv.6.bias"][32] = 1.0      # opacity around 0.7
        sd[f"{gname}.gaussian_conv.6.bias"][33:36] = -2.5  # scale around 0.004
    sd["gs_generator_g.scale_layers.2.bias"][:] = -2.5
    return sd


def seeded_flame(seed=7, vertices=5023):
    """A structurally valid stand-in FLAME: points on a 0.2 m sphere, smooth-ish bases, normalised weights."""
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(vertices, 3, generator=gen)
    v = v / v.norm(dim=1, keepdim=True) * 0.1
    jr = torch.rand(5, vertices, generator=gen)
    w = torch.rand(vertices, 5, generator=gen) ** 4
    return {
        "v_template": v, "f": torch.randint(0, vertices, (9976, 3), generator=gen),
        "shapedirs": torch.randn(vertices, 3, 400, generator=gen) * 1e-3,
        "posedirs": torch.randn(vertices, 3, 36, generator=gen) * 1e-3,
        "J_regressor": jr / jr.sum(1, keepdim=True),
        "kintree_table": torch.tensor([[-1, 0, 1, 1, 1], [0, 1, 2, 3, 4]]),
        "weights": w / w.sum(1, keepdim=True),
    }
