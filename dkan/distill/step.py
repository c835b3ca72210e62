"""One training step of a detector, with or without a teacher (DKAN's distillation).

Base training, TFA, plain and DKAN all go through ``train_step`` so their costs compare directly.
The teacher is wired in here, not inside the student: it runs in eval mode under no_grad, scores
the student's own sampled RoIs, and with a frozen backbone shares the student's backbone pass.
When only the box predictor trains (TFA), everything before it runs under no_grad: the same
values a naive pass computes (frozen parameters get no gradient either way), without autograd's
bookkeeping. With a ``FeatureCache`` the frozen parts' outputs (the body; the teacher's FPN; TFA's
body + FPN) are computed once per image view and reused (dkan.distill.cache).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import fastrcnn_loss

from dkan.config import DistillConfig
from dkan.distill.cache import FeatureCache, batch_keys
from dkan.distill.losses import fka_loss, lka_loss

DETECTION_LOSSES = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg")


def freeze(module: nn.Module) -> nn.Module:
    """No gradients, eval mode (BatchNorm keeps its running statistics)."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def backbone_is_frozen(model: FasterRCNN) -> bool:
    return not any(p.requires_grad for p in model.backbone.body.parameters())


def only_predictor_trains(model: FasterRCNN) -> bool:
    """True when nothing before ``roi_heads.box_predictor`` has a trainable parameter (TFA)."""
    predictor = {id(p) for p in model.roi_heads.box_predictor.parameters()}
    return not any(p.requires_grad for p in model.parameters() if id(p) not in predictor)


def roi_logits(
    model: FasterRCNN,
    feats: Mapping[str, torch.Tensor],
    proposals: list[torch.Tensor],
    image_sizes: list[tuple[int, int]],
    frozen_head: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class logits [R, C+1] and box deltas of given RoIs through a model's box head
    (RoI pooling and the shared layers under no_grad when ``frozen_head``)."""
    heads = model.roi_heads
    with torch.no_grad() if frozen_head else contextlib.nullcontext():
        box_feats = heads.box_head(heads.box_roi_pool(feats, proposals, image_sizes))  # [R, representation]
    return heads.box_predictor(box_feats)


def train_step(
    student: FasterRCNN,
    images: list[torch.Tensor],
    targets: list[dict[str, torch.Tensor]],
    teacher: FasterRCNN | None = None,
    n_base: int = 0,
    distill: DistillConfig | None = None,
    share_backbone: bool | None = None,
    cache: FeatureCache | None = None,
    keys: Sequence[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Unweighted losses of one batch: the four detection losses, plus loss_fka and loss_lka
    when a teacher is given. ``weighted_total`` applies the weights.

    ``share_backbone`` (default: when the student's backbone is frozen) runs the backbone body
    once for both models; it must stay off for a trainable backbone. ``cache`` with ``keys``
    (``image_key`` of each input image) reuses frozen features (dkan.distill.cache)."""
    images_t, targets_t = student.transform(images, targets)  # resize + normalise once, for both
    frozen = backbone_is_frozen(student)
    if share_backbone and not frozen:
        raise ValueError("share_backbone needs a frozen student backbone (the teacher's pass must equal the student's)")
    shared = teacher is not None and (frozen if share_backbone is None else share_backbone)
    last_layer = only_predictor_trains(student)
    use_cache = cache is not None and keys is not None
    direct = lambda _kind, fn, inputs=None: fn(images_t.tensors if inputs is None else inputs)  # noqa: E731
    cached = _frozen_features(cache, keys, images_t) if use_cache else direct
    cache_body = use_cache and frozen and not student.backbone.body.training  # eval-mode BN: a pure function
    body_from = cached if cache_body else direct
    with torch.no_grad() if last_layer else contextlib.nullcontext():
        if cache_body and last_layer and teacher is None:  # TFA: the FPN is frozen too
            feats = cached("fpn", student.backbone)
        elif shared or cache_body:
            with torch.no_grad():  # identical in teacher and student
                body = body_from("body", student.backbone.body)
            feats = student.backbone.fpn(body)
        else:
            feats = student.backbone(images_t.tensors)
    losses, proposals, logits = _detector_losses(student, images_t, targets_t, feats, last_layer)
    if teacher is not None:
        distill = distill or DistillConfig()
        # the teacher is frozen whole: its features are a pure function of the image when its input is
        teacher_from = cached if use_cache and not teacher.backbone.training and (cache_body or not shared) else direct
        with torch.no_grad():
            if shared:
                t_feats = teacher_from("teacher", teacher.backbone.fpn, body)
            else:
                t_feats = teacher_from("teacher", teacher.backbone)
            t_logits, _ = roi_logits(teacher, t_feats, proposals, images_t.image_sizes)
        levels = [k for k in feats if k != "pool"]  # P2-P5, not the pooled level
        losses["loss_fka"] = fka_loss([feats[k] for k in levels], [t_feats[k] for k in levels], distill.fka_tau)
        s_logits = logits[:, 1 : n_base + 1]
        if distill.lka_student == "raw":  # the authors': the cosines before the head's scale
            s_logits = s_logits / student.roi_heads.box_predictor.scale
        losses["loss_lka"] = lka_loss(s_logits, t_logits[:, 1 : n_base + 1], distill.lka_tau)
    return losses


def _frozen_features(cache: FeatureCache, keys: Sequence[str], images_t: ImageList):
    """``(kind, fn, inputs=padded batch) -> fn(inputs)`` through the cache, for a frozen ``fn``;
    ``inputs`` (a tensor or a dict of tensors) is indexed per image like the batch."""

    def run(kind: str, fn, inputs=None) -> OrderedDict[str, torch.Tensor]:
        batch_ks = batch_keys(kind, keys, images_t.image_sizes, images_t.tensors.shape)
        return cache.batch(batch_ks, images_t.tensors if inputs is None else inputs, fn)

    return run


def _detector_losses(
    model: FasterRCNN, images: ImageList, targets: list[dict], feats: Mapping[str, torch.Tensor], frozen: bool = False
):
    """The four detection losses; ``frozen``: all but the box predictor under no_grad. The RPN still
    computes its (then constant) losses: its anchor sampling draws from the global generator, and the
    RoI sampling after it must draw the same numbers as a naive run."""
    with torch.no_grad() if frozen else contextlib.nullcontext():
        proposals, rpn_losses = model.rpn(images, feats, targets)
        proposals, _, labels, regression_targets = model.roi_heads.select_training_samples(proposals, targets)
    logits, deltas = roi_logits(model, feats, proposals, images.image_sizes, frozen_head=frozen)
    loss_cls, loss_box = fastrcnn_loss(logits, deltas, labels, regression_targets)
    return {**rpn_losses, "loss_classifier": loss_cls, "loss_box_reg": loss_box}, proposals, logits


def weighted_total(losses: Mapping[str, torch.Tensor], distill: DistillConfig | None) -> torch.Tensor:
    """The one place loss weights are applied."""
    weights = {"loss_fka": distill.fka_weight, "loss_lka": distill.lka_weight} if distill else {}
    return sum(v * weights.get(k, 1.0) for k, v in losses.items())
