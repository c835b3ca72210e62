"""Run a detector over a dataset and score it with the AP50 evaluator."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.models.detection import FasterRCNN

from dkan.data.coco import CocoDict, ImageRecord
from dkan.data.dataset import DetectionDataset, collate
from dkan.distill.cache import FeatureCache, batch_keys, image_key
from dkan.engine.precision import autocast
from dkan.evaluation.coco_ap import APEvaluator


@torch.no_grad()
def evaluate(
    model: FasterRCNN, records: list[ImageRecord], gt: CocoDict, base: Sequence[str], novel: Sequence[str],
    device: torch.device, batch_size: int = 8, progress=None, cache: FeatureCache | None = None,
    precision: str = "fp32",
) -> dict[str, float]:
    """AP_base / AP_novel / AP_all and per-class AP. ``gt`` category ids must equal the model's labels.
    Leaves the model in eval mode. ``cache``: body features (``dkan.distill.cache.eval_cache`` for this
    model's body) reused across calls; the caller makes sure it belongs to this body's weights. ``precision``:
    the forward passes under autocast (``dkan.engine.precision``; the detections are scored in fp32)."""
    model.eval()
    ds = DetectionDataset(records, [c["name"] for c in sorted(gt["categories"], key=lambda c: c["id"])])
    ev = APEvaluator(gt, base, novel)
    for start in range(0, len(ds), batch_size):
        images, targets = collate([ds[i] for i in range(start, min(start + batch_size, len(ds)))])
        keys = [image_key(im) for im in images] if cache is not None else None
        images = [im.to(device) for im in images]
        with autocast(precision, device):
            outputs = model(images) if cache is None else predict_cached(model, images, keys, cache)
        ev.process([t["image_id"] for t in targets], [{k: _fp32(v.cpu()) for k, v in o.items()} for o in outputs])
        if progress:
            progress(len(images))
    return ev.evaluate()


def _fp32(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.is_floating_point() else t


def predict_cached(
    model: FasterRCNN, images: list[torch.Tensor], keys: Sequence[str], cache: FeatureCache
) -> list[dict[str, torch.Tensor]]:
    """``model(images)`` in eval mode (torchvision's GeneralizedRCNN.forward) with the body's output
    taken from ``cache`` where it holds it."""
    original_sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
    images_t, _ = model.transform(images)
    body = cache.batch(batch_keys("eval", keys, images_t.image_sizes, images_t.tensors.shape), images_t.tensors,
                       model.backbone.body)
    feats = model.backbone.fpn(body)
    proposals, _ = model.rpn(images_t, feats)
    detections, _ = model.roi_heads(feats, proposals, images_t.image_sizes)
    return model.transform.postprocess(detections, images_t.image_sizes, original_sizes)
