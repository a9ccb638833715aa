"""gaga_ref: a from-spec PyTorch reference of GAGAvatar inference, the oracle for gaga's golden tests.

Written by the gaga team from docs/spec (gagavatar-inference.md), in plain functional torch: every stage reads
parameters by their official state-dict names from a dict of tensors, and every size is inferred from the
tensor shapes, so the official checkpoint and the small seeded ones (`gaga dev make-checkpoint`) both run.

Modules: load (checkpoint, FLAME, config inference), model (lift: DINOv2, DPT head, plane, generators),
refiner (StyleUNet), flame (LBS), splat (the 32-channel rasteriser forward pass), seeded (a torch-side
seeded state dict for development without the Rust tools).
"""
