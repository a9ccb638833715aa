"""Loading the checkpoint and the FLAME asset, and inferring every size from the tensor shapes.

Both files are opened with `torch.load(..., weights_only=True)`, as the official code (and ARTalk) do, which
also proves that files written by `gaga dev` are loadable by PyTorch's restricted unpickler.
"""
from dataclasses import dataclass, field
import math
import re

import torch


@dataclass
class RefConfig:
    """The sizes the reference needs that are not read directly off a tensor at the point of use."""
    image_size: int          # source crop, splat and output side (512 official)
    dino_input: int          # DINO input side (518)
    patch: int               # 14
    grid: int                # patches per side (37)
    dim: int                 # ViT width (768)
    depth: int               # number of blocks (12)
    heads: int               # attention heads (12)
    out_layers: list = field(default_factory=list)  # last four blocks
    ln_eps: float = 1e-6
    plane_size: int = 296
    focal: float = 12.0      # NDC focal length
    flame_scale: float = 5.0
    vertices: int = 5023


def _count(sd, pattern):
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd for m in [rx.match(k)] if m})


def infer_config(sd, meta=None, heads=None):
    """Infer a RefConfig from the state dict `sd` (and `meta_cfg` when present).

    The number of attention heads is the one size no tensor shape carries: it comes from `heads`, else from
    `meta_cfg['GAGA']['DINO_HEADS']` when the file has it, else width / 64 (DINOv2's head width), else the
    known small configuration (width 48 -> 2 heads, `ModelConfig::small()`).
    """
    meta = meta or {}
    pos = sd["base_model.dino_model.pos_embed"]
    patch = sd["base_model.dino_model.patch_embed.proj.weight"].shape[-1]
    dim = pos.shape[2]
    grid = math.isqrt(pos.shape[1] - 1)
    if grid * grid != pos.shape[1] - 1:
        raise ValueError(f"pos_embed has {pos.shape[1] - 1} patch tokens, not a square grid")
    depth = _count(sd, r"base_model\.dino_model\.blocks\.(\d+)\.norm1\.weight$")
    if heads is None:
        heads = (meta.get("GAGA") or {}).get("DINO_HEADS")
    if heads is None:
        heads = dim // 64 if dim % 64 == 0 else {48: 2}.get(dim)
    if heads is None or dim % heads:
        raise ValueError(f"cannot infer the attention heads for width {dim}; pass heads=")
    downs = _count(sd, r"upsampler\.conv_body_down\.(\d+)\.conv1\.weight$")
    image_size = 2 ** (downs + 2)
    dataset = meta.get("DATASET") or {}
    plane = int(dataset.get("POINT_PLANE_SIZE", grid * 8))
    if plane != grid * 8:
        raise ValueError(f"meta_cfg POINT_PLANE_SIZE {plane} but the DPT head yields {grid * 8}")
    return RefConfig(
        image_size=image_size, dino_input=grid * patch, patch=patch, grid=grid, dim=dim, depth=depth,
        heads=int(heads), out_layers=list(range(depth - 4, depth)), plane_size=plane,
        focal=float(dataset.get("FOCAL_LENGTH", 12.0)), flame_scale=float(dataset.get("FLAME_SCALE", 5.0)),
        vertices=sd["head_base"].shape[0],
    )


def load_checkpoint(path, heads=None):
    """Load `GAGAvatar.pt` (or a seeded one): returns (state dict of f32 tensors, meta_cfg dict, RefConfig)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(ckpt, dict) and "model" in ckpt:
        sd, meta = ckpt["model"], ckpt.get("meta_cfg") or {}
    else:
        sd, meta = ckpt, {}
    sd = {k: v.float() for k, v in sd.items() if not k.startswith("percep_loss.")}
    return sd, meta, infer_config(sd, meta, heads)


FLAME_ARRAYS = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "kintree_table", "weights")


def load_flame(path):
    """Load `FLAME_with_eye.pt`: returns a dict of the arrays LBS needs (`v_template`, `shapedirs`, ...).

    The official file nests dicts (`ckpt['flame_model']['v_template']`); flat keys
    (`'flame_model.v_template'`) are accepted as well.
    """
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if "flame_model" in ckpt and isinstance(ckpt["flame_model"], dict):
        model = ckpt["flame_model"]
    else:
        model = {k[len("flame_model."):]: v for k, v in ckpt.items() if k.startswith("flame_model.")}
    missing = [k for k in FLAME_ARRAYS if k not in model]
    if missing:
        raise KeyError(f"{path}: FLAME arrays missing: {missing}")
    out = {k: model[k] for k in FLAME_ARRAYS}
    for k in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights"):
        out[k] = out[k].float()
    return out
