"""Profiles: ``paper`` (the authors' recipe: R101-FPN, multi-scale 640-800 px, their schedules; for
GPUs) and ``cpu-quick`` (ResNet-18 FPN at native 200 px, fewer proposals and RoIs, short schedules).

Sources of the ``paper`` values, all in the authors' repository Chan-Sun/DKAN (commit 2e995da):
  [train]  configs/_base_/train_settings.py                base-training optimizer and schedule
  [ft]     configs/_base_/fine_tune_settings.py            fine-tuning optimizer and schedule
  [data]   configs/_base_/datasets/fine_tune_based/*.py    resize, flip, batch size
  [model]  configs/distill/tfa_st.py                       backbone, anchors, RPN, RoI sampling
  [distill] configs/distill/split_{1,2,3}/dkan_*shot_fine_tuning.py   loss weights and temperatures
            (``dkan.config.authors_defaults``)
"""

from __future__ import annotations

import sys

from dkan.config import (
    BaseTrainConfig,
    ConfigError,
    DataConfig,
    DistillConfig,
    FinetuneConfig,
    ModelConfig,
    OptimConfig,
    authors_defaults,
)
from dkan.names import PROFILES


def choose_profile(name: str | None) -> str:
    """The named profile, or by hardware (with a printed notice) when none is named."""
    if name is not None:
        if name not in PROFILES:
            raise ConfigError(f"unknown profile {name!r}. Fix: choose one of {PROFILES}")
        return name
    import torch  # lazily: a plan (sweeps.core) reads the profiles without loading torch

    auto = "paper" if torch.cuda.is_available() else "cpu-quick"
    why = "a GPU is" if auto == "paper" else "no GPU is"
    print(f"notice: no --profile given; using {auto!r} ({why} available). Pass --profile to choose.", file=sys.stderr)
    return auto


# [model] pretrained='open-mmlab://detectron2/resnet101_caffe' (Caffe-style MSRA ResNet-101); torchvision's
# ImageNet ResNet-101 is the closest weights torchvision ships
PAPER_WEIGHTS = "ResNet101_Weights.IMAGENET1K_V1"


def model_config(profile: str, box_head: str) -> ModelConfig:
    if profile == "paper":
        return ModelConfig(
            backbone="resnet101",  # [model] depth=101
            weights=PAPER_WEIGHTS,
            frozen_stages=1,  # [model] frozen_stages=1; norm_eval=True, BN requires_grad=False: FrozenBatchNorm
            fpn_channels=256,  # [model] neck out_channels=256
            # [data] img_scale (1333, 640..800 step 32), multiscale_mode='value'; test img_scale=(1333, 800)
            train_min_sizes=[640, 672, 704, 736, 768, 800],
            min_size=800,
            max_size=1333,
            anchor_sizes=[32, 64, 128, 256, 512],  # [model] scales=[8] x strides [4, 8, 16, 32, 64]
            aspect_ratios=[0.5, 1.0, 2.0],  # [model] ratios=[0.5, 1.0, 2.0]
            rpn_pre_nms_top_n_train=2000,
            rpn_post_nms_top_n_train=1000,  # [model] rpn_proposal nms_pre, max_per_img
            rpn_pre_nms_top_n_test=1000,
            rpn_post_nms_top_n_test=1000,  # [model] test_cfg.rpn
            rpn_batch_size_per_image=256,  # [model] rpn sampler num=256, pos_fraction=0.5 (torchvision's default)
            box_batch_size_per_image=512,  # [model] rcnn sampler num=512, pos_fraction=0.25 (torchvision's default)
            representation_size=1024,  # [model] Shared2FCBBoxHead fc_out_channels=1024
            box_head=box_head,
            cosine_scale=20.0,  # [distill] CosineSimBBoxHead scale=20
            box_score_thresh=0.05,
            box_nms_thresh=0.5,
            box_detections_per_img=100,  # [model] test_cfg.rcnn
        )
    return ModelConfig(
        backbone="resnet18",
        fpn_channels=128,
        representation_size=256,
        min_size=200,
        max_size=200,
        rpn_pre_nms_top_n_train=600,
        rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_test=100,
        rpn_batch_size_per_image=128,
        box_batch_size_per_image=64,
        box_head=box_head,
    )


def data_config(profile: str, split: int | None = 1) -> DataConfig:
    if profile == "paper":
        return DataConfig(split=split, hflip=0.5, vflip=0.0)  # [data] RandomFlip flip_ratio=0.5 (horizontal only)
    return DataConfig(split=split)


def base_config(profile: str) -> BaseTrainConfig:
    if profile == "paper":
        optim = OptimConfig(
            lr=0.02,
            momentum=0.9,
            weight_decay=1e-4,  # [train] SGD lr=0.02, momentum=0.9, weight_decay=0.0001
            batch_size=4,  # [data] samples_per_gpu=4
            epochs=24,
            lr_step_epochs=[16, 22],
            gamma=0.1,  # [train] max_epochs=24, step=[16, 22] (mmcv gamma 0.1)
            warmup_iters=140,
            warmup_factor=0.001,  # [train] warmup='linear', warmup_iters=140, warmup_ratio=0.001
            clip_grad_norm=0.0,  # [train] grad_clip=None
        )
    else:
        optim = OptimConfig(
            lr=0.02, batch_size=4, iterations=600, lr_steps=[450, 550], warmup_iters=100, clip_grad_norm=10.0
        )
    return BaseTrainConfig(model=model_config(profile, "fc"), data=data_config(profile), optim=optim)


def finetune_config(profile: str, split: int | None = 1) -> FinetuneConfig:
    """Fine-tuning defaults; the distillation settings are the authors' for ``split``."""
    if profile == "paper":
        optim = OptimConfig(
            lr=0.001,
            momentum=0.9,
            weight_decay=1e-4,  # [ft] SGD lr=0.001, momentum=0.9, weight_decay=0.0001
            batch_size=4,
            iterations=8000,  # [data] samples_per_gpu=4; [ft] IterBasedRunner max_iters=8000
            lr_steps=[7800],
            gamma=0.1,  # [ft] step=[7800]
            warmup_iters=20,
            warmup_factor=0.001,  # [ft] warmup='linear', warmup_iters=20, warmup_ratio=0.001
            clip_grad_norm=0.0,  # [ft] grad_clip=None
        )
    else:
        optim = OptimConfig(lr=0.01, batch_size=4, iterations=200, lr_steps=[160], warmup_iters=10, clip_grad_norm=10.0)
    return FinetuneConfig(
        model=model_config(profile, "cosine"),
        data=data_config(profile, split),
        optim=optim,
        distill=DistillConfig(**authors_defaults(split)),
        freeze_backbone=True,  # [distill] student backbone frozen_stages=4
    )
