"""One training step of a detector, with or without a teacher (DKAN's distillation).

Base training, TFA, plain and DKAN all go through ``train_step`` so their costs compare directly.
The teacher is wired in here, not inside the student: it runs in eval mode under no_grad, scores
the student's own sampled RoIs, and with a frozen backbone shares the student's backbone pass.
When only the box predictor trains (TFA), everything before it runs under no_grad: the same
values a naive pass computes (frozen parameters get no gradient either way), without autograd's
bookkeeping. The frozen parts' outputs (the body; the teacher's FPN; TFA's body + FPN) come from an
injected feature source: computed each step, or once per image view and reused (dkan.distill.features).

The step reads as the method: the student's features, the detector losses, the teacher's features on
the student's own RoIs, FKA and LKA (the pure losses of dkan.distill.losses).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import fastrcnn_loss

from dkan.config import DistillConfig
from dkan.distill.features import DIRECT, FeatureSource
from dkan.distill.losses import fka_loss, lka_loss


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
    features: FeatureSource = DIRECT,
) -> dict[str, torch.Tensor]:
    """Unweighted losses of one batch: the four detection losses, plus loss_fka and loss_lka when a
    teacher is given (``weighted_total`` applies the weights). ``features``: where the frozen parts'
    outputs come from, computed (``DIRECT``) or cached (``dkan.distill.features``)."""
    images_t, targets_t = student.transform(images, targets)  # resize + normalise once, for both
    if backbone_is_frozen(student) and student.backbone.body.training:
        features = DIRECT  # BatchNorm updating its statistics: the body is no pure function of the image
    last_layer = only_predictor_trains(student)
    with torch.no_grad() if last_layer else contextlib.nullcontext():
        feats, body = _student_features(student, images_t, features, keep_body=teacher is not None)
    losses, proposals, logits = _detector_losses(student, images_t, targets_t, feats, last_layer)
    if teacher is None:
        return losses
    distill = distill or DistillConfig()
    with torch.no_grad():
        t_feats = _teacher_features(teacher, images_t, body, features)
        t_logits, _ = roi_logits(teacher, t_feats, proposals, images_t.image_sizes)
    levels = [k for k in feats if k != "pool"]  # P2-P5, not the pooled level
    losses["loss_fka"] = fka_loss([feats[k] for k in levels], [t_feats[k] for k in levels], distill.fka_tau)
    s_logits = logits[:, 1 : n_base + 1]
    if distill.lka_student == "raw":  # the authors': the cosines before the head's scale
        s_logits = s_logits / student.roi_heads.box_predictor.scale
    losses["loss_lka"] = lka_loss(s_logits, t_logits[:, 1 : n_base + 1], distill.lka_tau)
    return losses


def _student_features(student: FasterRCNN, images: ImageList, features: FeatureSource, keep_body: bool
                      ) -> tuple[OrderedDict[str, torch.Tensor], OrderedDict[str, torch.Tensor] | None]:
    """The student's FPN features and its frozen body's output, which the teacher shares (the same frozen
    body: one pass for both). None instead of the body when the body trains, and for TFA without a
    teacher (``keep_body`` False), whose body + FPN are one frozen pass."""
    if not backbone_is_frozen(student):
        return student.backbone(images.tensors), None
    if only_predictor_trains(student) and not keep_body:  # TFA: the FPN is frozen too
        return features.frozen("fpn", student.backbone, images), None
    with torch.no_grad():  # identical in teacher and student
        body = features.frozen("body", student.backbone.body, images)
    return student.backbone.fpn(body), body


def _teacher_features(teacher: FasterRCNN, images: ImageList, body: OrderedDict[str, torch.Tensor] | None,
                      features: FeatureSource) -> OrderedDict[str, torch.Tensor]:
    """The frozen teacher's FPN features: on the student's body output when shared, else its own pass."""
    if teacher.backbone.training:  # not frozen as the teacher should be: computed, never served
        features = DIRECT
    if body is None:
        return features.frozen("teacher", teacher.backbone, images)
    return features.frozen("teacher", teacher.backbone.fpn, images, body)


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
