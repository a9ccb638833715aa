#!/usr/bin/env python3
"""Write the golden tensors of the PyTorch reference for gaga's Rust parity test.

    make_goldens.py --checkpoint ckpt.pt --flame flame.pt --image photo.png --out tests/golden/small

writes `<out>.safetensors` (keys of the shared golden contract, all f32 row-major) and `<out>.json`
(provenance: sha256 of every file read, the commands that made them, torch version, configuration, inputs,
per-key summaries; no timings, so the same inputs give the same files). Run through `reference/goldens.sh`, which also builds the input files.
"""
import argparse
import hashlib
import json
import math
import os
import platform
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gaga_ref import flame as flame_mod  # noqa: E402
from gaga_ref import load, model, refiner, splat  # noqa: E402

FRAMES = 2


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_image(path, size):
    """RGB in [0,1], [3,size,size]; resized with antialiased bilinear in torch when the side differs."""
    img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    x = torch.from_numpy(img).permute(2, 0, 1).contiguous()
    if x.shape[1:] != (size, size):
        x = F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
    return x.clamp(0.0, 1.0)


def rotation(axis, degrees):
    """Proper rotation matrix about a world axis ('x' or 'y')."""
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    if axis == "y":
        return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def source_params():
    """The frontal tracked camera of spec §3.3 (R = diag(-1, 1, -1), T = (0, 0, 9.0144)) and zero shape."""
    transform = torch.tensor([[-1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, -1.0, 9.0144]])
    return torch.zeros(300), transform


def driving_frames(source_transform):
    """Two clearly different frames: expression, jaw, eyes, and a camera turned a few degrees."""
    gen = torch.Generator().manual_seed(7)
    expr = torch.randn(FRAMES, 100, generator=gen) * torch.linspace(1.5, 0.2, 100)
    expr[1] = -0.8 * expr[1]
    pose = torch.tensor([[0.0, 0.0, 0.0, 0.25, 0.0, 0.0], [0.0, 0.0, 0.0, 0.05, 0.02, 0.0]])
    eyes = torch.tensor([[0.0, 0.15, 0.0, 0.0, 0.15, 0.0], [0.08, -0.12, 0.0, 0.08, -0.12, 0.0]])
    transforms = source_transform.repeat(FRAMES, 1, 1)
    for f, (yaw, pitch) in enumerate([(6.0, 0.0), (-5.0, 4.0)]):
        turn = rotation("y", yaw) @ rotation("x", pitch)
        # x_view = x_world R + T: turning the head by Q in world is R' = Q R.
        transforms[f, :, :3] = turn @ source_transform[:, :3]
    return expr, pose, eyes, transforms


def summary(t):
    t = t.double()
    return {"shape": list(t.shape), "min": t.min().item(), "max": t.max().item(), "mean": t.mean().item(),
            "std": t.std().item() if t.numel() > 1 else 0.0}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--flame", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--out", required=True, help="output prefix: writes <out>.safetensors and <out>.json")
    ap.add_argument("--heads", type=int, default=None, help="DINO attention heads (default: inferred)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--command", action="append", default=[], help="provenance: a command that made an input")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    torch.set_float32_matmul_precision("highest")
    if args.threads:
        torch.set_num_threads(args.threads)

    sd, meta, cfg = load.load_checkpoint(args.checkpoint, heads=args.heads)
    fl = load.load_flame(args.flame)
    image = load_image(args.image, cfg.image_size)
    shape, src_transform = source_params()
    expr, pose, eyes, transforms = driving_frames(src_transform)

    t0 = time.time()
    lifted = model.lift(sd, cfg, image, src_transform)
    times = {"lift_s": time.time() - t0}
    gauss = lifted.pop("gaussians")
    verts, splats, rgbs = [], [], []
    t0 = time.time()
    for f in range(FRAMES):
        v = flame_mod.flame_vertices(fl, shape, expr[f], pose[f], eyes[f], cfg.flame_scale)
        g = dict(gauss)
        g["positions"] = torch.cat([v, gauss["positions"][v.shape[0]:]])
        feat, _ = splat.render(g, g["colors"], transforms[f], cfg.focal, cfg.image_size, cfg.image_size)
        verts.append(v)
        splats.append(feat)
        rgbs.append(refiner.refine(sd, feat[None])[0])
    times["frames_s"] = time.time() - t0

    tensors = {
        "input.image": image, "input.source_shapecode": shape, "input.source_transform": src_transform,
        "input.frames.expcode": expr, "input.frames.posecode": pose, "input.frames.eyecode": eyes,
        "input.frames.transform": transforms,
    }
    tensors.update({f"lift.{k}": v for k, v in lifted.items()})
    tensors.update({f"lift.gaussians.{k}": v for k, v in gauss.items()})
    tensors.update({"frame.flame_vertices": torch.stack(verts), "frame.splat": torch.stack(splats),
                    "frame.rgb": torch.stack(rgbs)})
    tensors = {k: v.float().contiguous() for k, v in tensors.items()}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_file(tensors, args.out + ".safetensors")

    provenance = {
        "what": "gaga golden tensors from the PyTorch reference (reference/gaga_ref)",
        "checkpoint": {"path": os.path.basename(args.checkpoint), "sha256": sha256(args.checkpoint)},
        "flame": {"path": os.path.basename(args.flame), "sha256": sha256(args.flame)},
        "image": {"path": os.path.basename(args.image), "sha256": sha256(args.image)},
        "commands": args.command,
        "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "config": vars(cfg),
        "frames": FRAMES,
        "driving": "seeded torch.Generator(7) expressions, jaw/eye poses and camera turns in make_goldens.py",
        "noise": "stored buffers upsampler.stylegan_decoder.noises.noiseK (randomize_noise=False)",
        "goldens_sha256": sha256(args.out + ".safetensors"),
        "tensors": {k: summary(v) for k, v in tensors.items()},
    }
    with open(args.out + ".json", "w") as f:
        json.dump(provenance, f, indent=1)
    print(json.dumps({"out": args.out, "times": times, "bytes": os.path.getsize(args.out + ".safetensors")}))


if __name__ == "__main__":
    main()
