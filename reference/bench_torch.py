#!/usr/bin/env python3
"""Time the PyTorch reference at official size, to put beside `gaga bench` (the ratio is what matters).

    bench_torch.py [--threads 2] [--frames 5] [--lifts 1] [--checkpoint GAGAvatar.pt] [--splat]

Prints one JSON object of medians in milliseconds: `refiner_ms` (the per-frame StyleUNet, what dominates a
frame), `flame_ms`, `lift_ms` (DINOv2 + DPT + generators, once per source) and, with --splat, `splat_ms`
(the torch rasteriser here is a correctness oracle, not a fast path: compare it with care). Weights are
seeded in torch (timings do not depend on the values) unless --checkpoint is given.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gaga_ref import flame as flame_mod  # noqa: E402
from gaga_ref import load, model, refiner, seeded, splat  # noqa: E402


def timed(fn, runs, warmup=1):
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples), samples


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--frames", type=int, default=5, help="timed refiner runs")
    ap.add_argument("--lifts", type=int, default=1, help="timed lifts (each takes tens of seconds)")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--config", choices=["official", "small"], default="official")
    ap.add_argument("--splat", action="store_true", help="also time the (slow) torch rasteriser once")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    torch.set_float32_matmul_precision("highest")

    if args.checkpoint:
        sd, _, cfg = load.load_checkpoint(args.checkpoint)
    else:
        sd = seeded.seeded_state_dict(seeded.OFFICIAL if args.config == "official" else seeded.SMALL)
        cfg = load.infer_config(sd)
    s = cfg.image_size
    image = torch.rand(3, s, s, generator=torch.Generator().manual_seed(1))
    transform = torch.tensor([[-1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, -1.0, 9.0144]])
    feat = torch.randn(1, 32, s, s, generator=torch.Generator().manual_seed(2))
    fl = seeded.seeded_flame()

    result = {"threads": torch.get_num_threads(), "torch": torch.__version__, "image_size": s}
    result["refiner_ms"], result["refiner_samples_ms"] = timed(lambda: refiner.refine(sd, feat), args.frames)
    result["flame_ms"], _ = timed(
        lambda: flame_mod.flame_vertices(fl, torch.zeros(300), torch.zeros(100), torch.zeros(6), torch.zeros(6)), 5)
    lifted = {}
    result["lift_ms"], result["lift_samples_ms"] = timed(
        lambda: lifted.update(model.lift(sd, cfg, image, transform)), args.lifts, warmup=0)
    if args.splat:
        g = lifted["gaussians"]
        result["splat_ms"], _ = timed(
            lambda: splat.render(g, g["colors"], transform, cfg.focal, s, s), 1, warmup=0)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
