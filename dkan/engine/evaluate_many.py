"""Evaluate many models of one base model in one pass over the images: what they share runs once.

The checkpoints of a study (base model, TFA, plain, DKAN defaults and tuned, every seed) all keep the
base model's frozen body; TFA also keeps its FPN, RPN and the RoI head's shared layers, so a TFA
student and the base model differ only in the last layer. For each batch of images, each stage of
torchvision's Faster R-CNN forward (eval mode)

  transform -> body -> FPN -> RPN proposals -> RoI pooling + box head -> box predictor -> decoding

runs once per distinct *prefix*: the stage's weights and settings together with everything before it
(a chain of digests). Two models whose prefixes match take the stage's output from the first one. The
predictor and the decoding run for every model. Each model's detections are those of ``model(images)``
on the same batch: bit for bit the same AP as evaluating it alone (the same batches, the same ops).

Memory: every model of a call is held at once, plus one batch's stage outputs per distinct prefix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torchvision.models.detection import FasterRCNN

from dkan.data.coco import CocoDict, ImageRecord
from dkan.data.dataset import DetectionDataset, collate
from dkan.distill.cache import FeatureCache, batch_keys, image_key, module_digest
from dkan.engine.precision import autocast
from dkan.evaluation.coco_ap import APEvaluator


@dataclass
class Evaluand:
    """One model to score: its ground truth (category ids = its labels), class split and precision.
    ``body_cache``: its body's features by image, kept across calls (``dkan.distill.cache.eval_cache``: a
    fine-tune's val evaluations, seed after seed, of students that share the base model's body)."""

    model: FasterRCNN
    records: list[ImageRecord]
    gt: CocoDict
    base: Sequence[str]
    novel: Sequence[str]
    precision: str = "fp32"
    body_cache: FeatureCache | None = None
    prefixes: tuple[str, ...] = field(default=(), init=False)


STAGES = ("transform", "body", "fpn", "rpn", "box_head")


def stage_prefixes(model: FasterRCNN, precision: str, variant: str = "") -> tuple[str, ...]:
    """One digest per stage of ``STAGES``: its weights and settings and those of every stage before it
    (``variant``: anything else that changes the stages' outputs)."""
    t, rpn, heads = model.transform, model.rpn, model.roi_heads
    parts = [
        _settings(t, "min_size", "max_size", "image_mean", "image_std", "size_divisible", "fixed_size") + precision
        + variant,
        module_digest(model.backbone.body),
        module_digest(model.backbone.fpn),
        module_digest(rpn) + _settings(rpn, "_pre_nms_top_n", "_post_nms_top_n", "nms_thresh", "score_thresh",
                                       "min_size") + _settings(rpn.anchor_generator, "sizes", "aspect_ratios"),
        module_digest(heads.box_head) + _settings(heads.box_roi_pool, "featmap_names", "output_size",
                                                  "sampling_ratio"),
    ]
    out, h = [], hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(p.encode())
        out.append(h.copy().hexdigest())
    return tuple(out)


def _prefixes(e: Evaluand) -> tuple[str, ...]:
    # a cached body's features are computed one image at a time: floating-point noise away from a batch's
    return stage_prefixes(e.model, e.precision, "body-cache" if e.body_cache is not None else "")


def _settings(obj: object, *names: str) -> str:
    return "|".join(f"{n}={getattr(obj, n, None)!r}" for n in names)


@torch.no_grad()
def evaluate_many(
    evaluands: Sequence[Evaluand], device: torch.device, batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, float]]:
    """AP metrics of each evaluand (as ``dkan.engine.evaluate.evaluate`` gives them), in order. Evaluands
    over the same images share one pass; ``progress(n)`` after each batch of each pass."""
    groups: dict[tuple, list[int]] = {}
    for i, e in enumerate(evaluands):
        e.model.eval()
        e.prefixes = _prefixes(e)
        groups.setdefault(tuple((r.image_id, str(r.path)) for r in e.records), []).append(i)
    results: list[dict[str, float]] = [{} for _ in evaluands]
    for members in groups.values():
        for i, m in zip(members, _one_pass([evaluands[i] for i in members], device, batch_size, progress)):
            results[i] = m
    return results


def _one_pass(group: list[Evaluand], device: torch.device, batch_size: int, progress) -> list[dict[str, float]]:
    first = group[0]
    ds = DetectionDataset(first.records, [c["name"] for c in sorted(first.gt["categories"], key=lambda c: c["id"])])
    evaluators = [APEvaluator(e.gt, e.base, e.novel) for e in group]
    for start in range(0, len(ds), batch_size):
        images, targets = collate([ds[i] for i in range(start, min(start + batch_size, len(ds)))])
        keys = [image_key(im) for im in images] if any(e.body_cache is not None for e in group) else None
        images = [im.to(device) for im in images]
        ids = [t["image_id"] for t in targets]
        shared: dict[str, object] = {}  # this batch's stage outputs by prefix
        for e, ev in zip(group, evaluators):
            with autocast(e.precision, device):
                outputs = forward_shared(e, images, shared, keys)
            ev.process(ids, [{k: _fp32(v.cpu()) for k, v in o.items()} for o in outputs])
        if progress:
            progress(len(images))
    return [ev.evaluate() for ev in evaluators]


def forward_shared(
    e: Evaluand, images: list[torch.Tensor], shared: dict[str, object], keys: Sequence[str] | None = None
) -> list[dict[str, torch.Tensor]]:
    """``e.model(images)`` in eval mode (torchvision's GeneralizedRCNN and RoIHeads forward), each stage
    taken from ``shared`` when a model with the same prefix ran it on this batch, the body's output from
    ``e.body_cache`` where it holds it (``keys``: ``image_key`` of each image)."""
    m, (p_in, p_body, p_fpn, p_rpn, p_box) = e.model, e.prefixes or _prefixes(e)

    def stage(prefix: str, fn: Callable[[], object]):
        if prefix not in shared:
            shared[prefix] = fn()
        return shared[prefix]

    original_sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
    images_t = stage(p_in, lambda: m.transform(images)[0])
    if e.body_cache is None:
        body = stage(p_body, lambda: m.backbone.body(images_t.tensors))
    else:
        canvas = batch_keys("eval", keys, images_t.image_sizes, images_t.tensors.shape)
        body = stage(p_body, lambda: e.body_cache.batch(canvas, images_t.tensors, m.backbone.body))
    feats = stage(p_fpn, lambda: m.backbone.fpn(body))
    proposals = stage(p_rpn, lambda: m.rpn(images_t, feats)[0])
    heads = m.roi_heads
    box_features = stage(p_box, lambda: heads.box_head(heads.box_roi_pool(feats, proposals, images_t.image_sizes)))
    class_logits, box_regression = heads.box_predictor(box_features)
    boxes, scores, labels = heads.postprocess_detections(class_logits, box_regression, proposals,
                                                         images_t.image_sizes)
    detections = [{"boxes": b, "labels": lab, "scores": s} for b, s, lab in zip(boxes, scores, labels)]
    return m.transform.postprocess(detections, images_t.image_sizes, original_sizes)


def _fp32(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.is_floating_point() else t
