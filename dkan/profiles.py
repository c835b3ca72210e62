"""Profiles: ``paper`` (the authors' R101-FPN at ~800 px and schedules; for GPUs) and
``cpu-quick`` (ResNet-18 FPN at native 200 px, fewer proposals and RoIs, short schedules)."""

from __future__ import annotations

import sys

import torch

from dkan.config import BaseTrainConfig, DistillConfig, FinetuneConfig, ModelConfig, OptimConfig

PROFILES = ("paper", "cpu-quick")


def choose_profile(name: str | None) -> str:
    """The named profile, or by hardware (with a printed notice) when none is named."""
    if name is not None:
        if name not in PROFILES:
            raise SystemExit(f"error: unknown profile {name!r}; choose one of {PROFILES}")
        return name
    auto = "paper" if torch.cuda.is_available() else "cpu-quick"
    print(f"notice: no --profile given; using {auto!r} ({'a GPU is' if auto == 'paper' else 'no GPU is'} available). Pass --profile to choose.", file=sys.stderr)
    return auto


def model_config(profile: str, box_head: str) -> ModelConfig:
    if profile == "paper":  # 200 px images upscaled x4: torchvision's usual anchors fit again
        return ModelConfig(backbone="resnet101", min_size=800, max_size=1333, anchor_sizes=[32, 64, 128, 256, 512], box_head=box_head)
    return ModelConfig(
        backbone="resnet18", fpn_channels=128, representation_size=256, min_size=200, max_size=200,
        rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300, rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=100,
        rpn_batch_size_per_image=128, box_batch_size_per_image=64, box_head=box_head,
    )


def base_config(profile: str) -> BaseTrainConfig:
    if profile == "paper":  # SGD 0.02, 24 epochs, steps at 16 and 22, linear warm-up
        optim = OptimConfig(lr=0.02, batch_size=16, epochs=24, lr_step_epochs=[16, 22], warmup_iters=500)
    else:
        optim = OptimConfig(lr=0.02, batch_size=4, iterations=600, lr_steps=[450, 550], warmup_iters=100, clip_grad_norm=10.0)
    return BaseTrainConfig(model=model_config(profile, "fc"), optim=optim)


def finetune_config(profile: str) -> FinetuneConfig:
    if profile == "paper":  # SGD 0.001, 4,000 iterations, batch 8, step at 3,600, 20 warm-up iterations
        optim = OptimConfig(lr=0.001, batch_size=8, iterations=4000, lr_steps=[3600], warmup_iters=20)
    else:
        optim = OptimConfig(lr=0.01, batch_size=4, iterations=200, lr_steps=[160], warmup_iters=10, clip_grad_norm=10.0)
    return FinetuneConfig(model=model_config(profile, "cosine"), optim=optim, distill=DistillConfig())
