"""The lift (once per source photo): preprocessing, DINOv2 ViT, DPT head, lifting plane, direction encoding and
the three Gaussian generators (spec §1.1, §2, §3, §4.2). Functional torch over a state dict `sd` with the
official key names; batch size 1 throughout. The per-frame refiner lives in `refiner.py`.
"""
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DINO = "base_model.dino_model."


def _conv(sd, name, x, stride=1, padding=0):
    return F.conv2d(x, sd[name + ".weight"], sd.get(name + ".bias"), stride=stride, padding=padding)


def _linear(sd, name, x):
    return F.linear(x, sd[name + ".weight"], sd.get(name + ".bias"))


def resize_aa(x, size):
    """torchvision `resize(..., antialias=True)` on a tensor: bilinear, align_corners=False, antialias."""
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def preprocess(image, cfg):
    """[3,S,S] in [0,1] -> [1,3,Din,Din]: the loader's resize to the DINO input, then ImageNet normalisation."""
    x = resize_aa(image[None], cfg.dino_input)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def _attention(sd, p, x, heads):
    n, dim = x.shape[1], x.shape[2]
    hd = dim // heads
    qkv = _linear(sd, p + "attn.qkv", x).reshape(1, n, 3, heads, hd).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0] * hd ** -0.5, qkv[1], qkv[2]
    attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
    out = (attn @ v).transpose(1, 2).reshape(1, n, dim)
    return _linear(sd, p + "attn.proj", out)


def _block(sd, i, x, cfg):
    p = f"{DINO}blocks.{i}."
    ln = lambda name, t: F.layer_norm(t, (cfg.dim,), sd[p + name + ".weight"], sd[p + name + ".bias"], cfg.ln_eps)
    x = x + _attention(sd, p, ln("norm1", x), cfg.heads) * sd[p + "ls1.gamma"]
    h = F.gelu(_linear(sd, p + "mlp.fc1", ln("norm2", x)))  # exact erf GELU
    return x + _linear(sd, p + "mlp.fc2", h) * sd[p + "ls2.gamma"]


def dino(sd, x, cfg):
    """DINOv2 `get_intermediate_layers(x, 4)` with the final norm: returns (4 x [G*G, dim] patch tokens, global).

    The global feature is element 0 of the last returned layer *after* the CLS token was dropped, i.e. the
    top-left patch token (quirk of the official code, spec §2.2)."""
    tok = _conv(sd, DINO + "patch_embed.proj", x, stride=cfg.patch).flatten(2).transpose(1, 2)
    pos = sd[DINO + "pos_embed"]
    if pos.shape[1] != tok.shape[1] + 1:
        raise ValueError(f"pos_embed holds {pos.shape[1]} tokens, input gives {tok.shape[1] + 1}")
    x = torch.cat([sd[DINO + "cls_token"].expand(1, -1, -1), tok], dim=1) + pos
    layers = []
    for i in range(cfg.depth):
        x = _block(sd, i, x, cfg)
        if i in cfg.out_layers:
            normed = F.layer_norm(x, (cfg.dim,), sd[DINO + "norm.weight"], sd[DINO + "norm.bias"], cfg.ln_eps)
            layers.append(normed[0, 1:])
    return layers, layers[-1][0]


def _rcu(sd, p, x):
    """ResidualConvUnit: ReLU (not in place) -> conv3x3 -> ReLU -> conv3x3 -> + input."""
    out = _conv(sd, p + ".conv1", F.relu(x), padding=1)
    out = _conv(sd, p + ".conv2", F.relu(out), padding=1)
    return out + x


def _fusion(sd, i, path, skip, size):
    p = f"base_model.refinenet.{i}"
    out = path if skip is None else path + _rcu(sd, p + ".resConfUnit1", skip)
    out = _rcu(sd, p + ".resConfUnit2", out)
    out = F.interpolate(out, size=size, mode="bilinear", align_corners=True)
    return _conv(sd, p + ".out_conv", out)


def dpt(sd, x, layers, cfg):
    """The DPT-style head: 4 token maps + the normalised input pyramid -> f_feature0 [1, F, P, P]."""
    g = cfg.grid
    rns = []
    for i, tokens in enumerate(layers):
        f = tokens.transpose(0, 1).reshape(1, cfg.dim, g, g)
        f = _conv(sd, f"base_model.projects.{i}", f)
        if i == 0:
            f = F.conv_transpose2d(f, sd["base_model.resize_layers.0.weight"], sd["base_model.resize_layers.0.bias"], stride=4)
        elif i == 1:
            f = F.conv_transpose2d(f, sd["base_model.resize_layers.1.weight"], sd["base_model.resize_layers.1.bias"], stride=2)
        elif i == 3:
            f = _conv(sd, "base_model.resize_layers.3", f, stride=2, padding=1)
        f = torch.cat([resize_aa(x, f.shape[-1]), f], dim=1)
        rns.append(F.conv2d(f, sd[f"base_model.layer_rn.{i}.weight"], None, padding=1))
    path = _fusion(sd, 0, rns[3], None, rns[2].shape[2:])
    path = _fusion(sd, 1, path, rns[2], rns[1].shape[2:])
    path = _fusion(sd, 2, path, rns[1], rns[0].shape[2:])
    path = _fusion(sd, 3, path, rns[0], (2 * rns[0].shape[2], 2 * rns[0].shape[3]))
    return _conv(sd, "base_model.output_conv", path, padding=1)


def lifting_plane(transform, plane_size, focal):
    """`build_points_planes` (§3.3): points [P*P, 3] spanning the source camera's view through the origin,
    and the camera's forward axis [3] in world coordinates."""
    lin = torch.linspace(1, -1, plane_size, dtype=torch.float32)
    u, v = torch.meshgrid(lin, lin, indexing="xy")
    rays = F.pad(torch.stack([u / focal, v / focal], dim=-1), (0, 1), value=1.0).reshape(-1, 3)
    r, t = transform[:3, :3], transform[:3, 3:]
    forward = (r @ torch.tensor([[0.0], [0.0], [1.0]]))[:, 0]
    world_rays = (r @ rays[:, :, None])[..., 0]
    centre = -(r @ t)[:, 0]
    distance = (centre * forward).sum().abs()
    return centre + distance * world_rays, forward


def harmonic(d, n_freq=4):
    """pytorch3d HarmonicEmbedding(n_freq): [sin(d_c 2^f) at c*n+f, then sin(d_c 2^f + pi/2), then d]."""
    freqs = 2.0 ** torch.arange(n_freq, dtype=torch.float32)
    emb = d[:, None] * freqs
    emb = (emb[None] + torch.tensor([0.0, torch.pi / 2])[:, None, None]).sin()
    return torch.cat([emb.reshape(-1), d])


def vertex_generator(sd, global_feature, direnc):
    """`gs_generator_g` on [head_base | global] per vertex. Quirk 2: rotations normalised across vertices."""
    p = "gs_generator_g."
    base = sd["head_base"]
    x = torch.cat([base, global_feature[None].expand(base.shape[0], -1)], dim=-1)[None]
    for i in (0, 2, 4):
        x = F.relu(_linear(sd, f"{p}feature_layers.{i}", x))
    x = _linear(sd, f"{p}feature_layers.6", x)
    x = torch.cat([x, direnc[None, None].expand(1, x.shape[1], -1)], dim=-1)
    head = lambda name: _linear(sd, f"{p}{name}_layers.2", F.relu(_linear(sd, f"{p}{name}_layers.0", x)))
    colors = head("color")
    colors = torch.cat([colors[..., :3].sigmoid(), colors[..., 3:]], dim=-1)
    return {
        "colors": colors[0],
        "opacities": head("opacity").sigmoid()[0, :, 0],
        "scales": (head("scale").sigmoid() * 0.05)[0],
        "rotations": F.normalize(head("rotation"), dim=1)[0],  # dim=1 is the vertex axis: quirk 2
    }


def lift_generator(sd, prefix, feature, direnc, channels=32):
    """`gs_generator_l0/l1` (a ConvGSGenerator): row-major per-pixel Gaussians and lifting distances.
    Quirk 1: the colour sigmoid hits all channels of grid columns 0..2 (it indexes the width axis)."""
    p = prefix + ".gaussian_conv."
    h, w = feature.shape[2:]
    x = torch.cat([feature, direnc[None, :, None, None].expand(1, -1, h, w)], dim=1)
    for i in (0, 2, 4):
        x = F.relu(_conv(sd, f"{p}{i}", x, padding=1))
    out = _conv(sd, f"{p}6", x)
    colors = out[:, :channels].clone()
    colors[..., :3] = colors[..., :3].sigmoid()
    c = channels
    res = {
        "colors": colors,
        "opacities": out[:, c:c + 1].sigmoid(),
        "scales": out[:, c + 1:c + 4].sigmoid() * 0.05,
        "rotations": F.normalize(out[:, c + 4:c + 8], dim=1),
        "positions": out[:, c + 8:c + 9].sigmoid(),
    }
    return {k: v[0].permute(1, 2, 0).reshape(h * w, -1) for k, v in res.items()}


def lift(sd, cfg, image, source_transform):
    """The whole lift. Returns a dict of every traced intermediate and the Gaussians (vertex positions zero)."""
    dino_in = preprocess(image, cfg)
    layers, global_feature = dino(sd, dino_in, cfg)
    feature = dpt(sd, dino_in, layers, cfg)
    points, dirs = lifting_plane(source_transform, cfg.plane_size, cfg.focal)
    direnc = harmonic(dirs)
    g = vertex_generator(sd, global_feature, direnc)
    l0 = lift_generator(sd, "gs_generator_l0", feature, direnc)
    l1 = lift_generator(sd, "gs_generator_l1", feature, direnc)
    g["positions"] = torch.zeros(g["colors"].shape[0], 3)
    l0["positions"] = points + l0["positions"] * dirs
    l1["positions"] = points - l1["positions"] * dirs
    gauss = {k: torch.cat([g[k], l0[k], l1[k]], dim=0) for k in ("positions", "colors", "scales", "rotations")}
    gauss["opacities"] = torch.cat([g["opacities"], l0["opacities"][:, 0], l1["opacities"][:, 0]])
    return {
        "dino_input": dino_in[0], "dino_layers": torch.stack(layers), "global_feature": global_feature,
        "feature_map": feature[0], "plane_points": points, "plane_dirs": dirs, "direnc": direnc,
        "gaussians": gauss,
    }
