"""Run a detector over a dataset and score it with the AP50 evaluator."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.models.detection import FasterRCNN

from dkan.data.coco import CocoDict, ImageRecord
from dkan.distill.cache import FeatureCache
from dkan.engine.evaluate_many import Evaluand, evaluate_many


def evaluate(
    model: FasterRCNN, records: list[ImageRecord], gt: CocoDict, base: Sequence[str], novel: Sequence[str],
    device: torch.device, batch_size: int = 8, progress=None, cache: FeatureCache | None = None,
    precision: str = "fp32",
) -> dict[str, float]:
    """AP_base / AP_novel / AP_all and per-class AP. ``gt`` category ids must equal the model's labels.
    Leaves the model in eval mode. ``cache``: body features (``dkan.distill.cache.eval_cache`` for this
    model's body) reused across calls; the caller makes sure it belongs to this body's weights. ``precision``:
    the forward passes under autocast (``dkan.engine.precision``; the detections are scored in fp32)."""
    one = Evaluand(model, records, gt, base, novel, precision, body_cache=cache)
    return evaluate_many([one], device, batch_size, progress)[0]
