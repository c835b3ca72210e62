"""``build_detector(cfg, num_classes)``: torchvision Faster R-CNN + FPN from a ModelConfig."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn
from torchvision.models import get_weight, mobilenet_v3_large, resnet18, resnet50, resnet101
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops.misc import FrozenBatchNorm2d

from dkan.config import ConfigError, ModelConfig
from dkan.model.cosine import CosineBoxPredictor
from dkan.model.cosine_inplace import InplaceCosineBoxPredictor

log = logging.getLogger(__name__)
RESNETS = {"resnet18": resnet18, "resnet50": resnet50, "resnet101": resnet101}
BACKBONES = (*RESNETS, "mobilenet_v3_large")
COSINE_NORMS = {"graph": CosineBoxPredictor, "inplace": InplaceCosineBoxPredictor}
SCRATCH = ("", "none")  # model.weights values meaning "from scratch, on purpose" (case-insensitive)


def build_detector(cfg: ModelConfig, num_classes: int, pretrained: bool = True) -> FasterRCNN:
    """Faster R-CNN + FPN for ``num_classes`` foreground classes (labels 1..num_classes).

    ``pretrained=False`` builds the same architecture (norm layers, frozen stages) without loading
    ``cfg.weights``: for models whose state comes from a checkpoint (no download needed)."""
    min_size = _min_sizes(cfg)
    backbone = build_backbone(cfg, pretrained)
    n_maps = len(backbone.fpn.inner_blocks) + 1  # FPN levels + the max-pooled extra level
    if len(cfg.anchor_sizes) != n_maps:
        raise ConfigError(
            f"model.anchor_sizes: {cfg.anchor_sizes} gives {len(cfg.anchor_sizes)} sizes but {cfg.backbone} makes "
            f"{n_maps} feature maps; give one size per map"
        )
    anchors = AnchorGenerator(
        sizes=tuple((s,) for s in cfg.anchor_sizes), aspect_ratios=(tuple(cfg.aspect_ratios),) * n_maps
    )
    box_head = TwoMLPHead(backbone.out_channels * 7 * 7, cfg.representation_size)
    if cfg.box_head == "cosine":
        if cfg.cosine_norm not in COSINE_NORMS:
            raise ConfigError(f"model.cosine_norm: {cfg.cosine_norm!r}. Fix: use one of {tuple(COSINE_NORMS)}")
        predictor: nn.Module = COSINE_NORMS[cfg.cosine_norm](cfg.representation_size, num_classes + 1, cfg.cosine_scale)
    elif cfg.box_head == "fc":
        predictor = FastRCNNPredictor(cfg.representation_size, num_classes + 1)
    else:
        raise ConfigError(f"model.box_head: {cfg.box_head!r} is not one of 'fc', 'cosine'")
    return FasterRCNN(
        backbone,
        num_classes=None,
        rpn_anchor_generator=anchors,
        box_head=box_head,
        box_predictor=predictor,
        min_size=min_size,
        max_size=cfg.max_size,
        rpn_pre_nms_top_n_train=cfg.rpn_pre_nms_top_n_train,
        rpn_post_nms_top_n_train=cfg.rpn_post_nms_top_n_train,
        rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_test=cfg.rpn_post_nms_top_n_test,
        rpn_batch_size_per_image=cfg.rpn_batch_size_per_image,
        box_batch_size_per_image=cfg.box_batch_size_per_image,
        box_score_thresh=cfg.box_score_thresh,
        box_nms_thresh=cfg.box_nms_thresh,
        box_detections_per_img=cfg.box_detections_per_img,
    )


def _min_sizes(cfg: ModelConfig) -> int | tuple[int, ...]:
    """torchvision's transform draws a training size from a tuple and tests at its last element."""
    if not cfg.train_min_sizes:
        return cfg.min_size
    if cfg.train_min_sizes[-1] != cfg.min_size:
        raise ConfigError(
            f"model.train_min_sizes: {cfg.train_min_sizes} must end with model.min_size ({cfg.min_size}), "
            "the test size. "
            "Fix: end the list with model.min_size or leave it empty for one size"
        )
    return tuple(cfg.train_min_sizes)


def build_backbone(cfg: ModelConfig, pretrained: bool = True) -> BackboneWithFPN:
    """ResNet or MobileNetV3 body + FPN. ImageNet weights keep torchvision's frozen BatchNorm
    (statistics and affine frozen: the authors' norm_eval=True, requires_grad=False) and freeze the
    stem and the first ``cfg.frozen_stages`` stages; from scratch uses trainable BatchNorm
    (FrozenBatchNorm would mean no normalisation at all) and freezes nothing."""
    enum_weights, file_weights = _resolve_weights(cfg.weights)
    with_weights = bool(enum_weights or file_weights)
    norm = FrozenBatchNorm2d if with_weights else nn.BatchNorm2d
    if not pretrained:
        enum_weights, file_weights = None, None
    if cfg.backbone in RESNETS:
        body = _construct(RESNETS[cfg.backbone], enum_weights, norm)
        _load_file(body, file_weights)
        if with_weights:
            _freeze_stages(body, cfg.frozen_stages)
        widths = [64, 128, 256, 512] if cfg.backbone == "resnet18" else [256, 512, 1024, 2048]
        layers = {f"layer{i}": str(i - 1) for i in range(1, 5)}
        return BackboneWithFPN(body, layers, widths, cfg.fpn_channels)
    if cfg.backbone == "mobilenet_v3_large":
        net = _construct(mobilenet_v3_large, enum_weights, norm)
        _load_file(net, file_weights)
        feats = net.features
        # the last block of each stride (4, 8, 16, 32): torchvision's own FPN variant keeps only 16 and 32
        stage_ends = [i - 1 for i, b in enumerate(feats) if getattr(b, "_is_cn", False)][1:] + [len(feats) - 1]
        stage_ends = stage_ends[-4:]
        return BackboneWithFPN(
            feats,
            {str(i): str(k) for k, i in enumerate(stage_ends)},
            [_out_channels(feats[i]) for i in stage_ends],
            cfg.fpn_channels,
        )
    raise ConfigError(f"model.backbone: {cfg.backbone!r} is not one of {BACKBONES}")


def _freeze_stages(body: nn.Module, stages: int) -> None:
    """mmdet's ``frozen_stages``: 0 freezes nothing, N >= 1 the stem and layer1..layerN."""
    if not 0 <= stages <= 4:
        raise ConfigError(
            f"model.frozen_stages: {stages} is not in 0..4. Fix: 1 freezes the stem and layer1 (the authors')"
        )
    parts = ([body.conv1, body.bn1] if stages else []) + [getattr(body, f"layer{i}") for i in range(1, stages + 1)]
    for part in parts:
        for p in part.parameters():
            p.requires_grad_(False)


def _construct(builder, weights, norm) -> nn.Module:
    try:
        return builder(weights=weights, norm_layer=norm)
    except OSError as e:  # enum weights are downloaded on first use; offline that fails
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise ConfigError(
            f"model.weights: cannot get {weights} ({e}). Fix: download {weights.url} where you have internet and pass "
            f"--backbone-weights PATH (or set model.weights: PATH), or put the file in {cache} so the torchvision enum "
            "loads offline; or pass --backbone-weights none to train from scratch on purpose"
        ) from e


def _out_channels(block: nn.Module) -> int:
    return (
        getattr(block, "out_channels", None)
        or [m for m in block.modules() if isinstance(m, nn.Conv2d)][-1].out_channels
    )


def _resolve_weights(spec: str | None):
    """None -> from scratch; an existing file -> its state dict; else a torchvision weights enum name."""
    if spec is None or spec.strip().lower() in SCRATCH:
        return None, None
    if Path(spec).expanduser().is_file():
        return None, Path(spec).expanduser()
    try:
        return get_weight(spec), None
    except (ValueError, KeyError, AttributeError) as e:
        raise ConfigError(
            f"model.weights: {spec!r} is neither a file nor a torchvision weights name such as "
            "'ResNet50_Weights.IMAGENET1K_V2'. Fix: give an existing file, a torchvision enum, or none (from scratch)"
        ) from e


def _load_file(net: nn.Module, path: Path | None) -> None:
    if path is None:
        return
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    missing, unexpected = net.load_state_dict(state, strict=False)
    if len(missing) > len(net.state_dict()) // 2:
        raise ConfigError(
            f"model.weights: {path} does not fit the {type(net).__name__} backbone "
            f"({len(missing)} of {len(net.state_dict())} tensors missing). Fix: pass weights of model.backbone's net"
        )
    log.info(
        "loaded backbone weights from %s (%d missing, %d unexpected keys: classifier layers are expected)",
        path,
        len(missing),
        len(unexpected),
    )
