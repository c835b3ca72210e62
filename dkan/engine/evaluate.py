"""Run a detector over a dataset and score it with the AP50 evaluator."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.models.detection import FasterRCNN

from dkan.data.coco import CocoDict, ImageRecord
from dkan.data.dataset import DetectionDataset, collate
from dkan.evaluation.coco_ap import APEvaluator


@torch.no_grad()
def evaluate(
    model: FasterRCNN, records: list[ImageRecord], gt: CocoDict, base: Sequence[str], novel: Sequence[str],
    device: torch.device, batch_size: int = 8, progress=None,
) -> dict[str, float]:
    """AP_base / AP_novel / AP_all and per-class AP. ``gt`` category ids must equal the model's labels.
    Leaves the model in eval mode."""
    model.eval()
    ds = DetectionDataset(records, [c["name"] for c in sorted(gt["categories"], key=lambda c: c["id"])])
    ev = APEvaluator(gt, base, novel)
    for start in range(0, len(ds), batch_size):
        images, targets = collate([ds[i] for i in range(start, min(start + batch_size, len(ds)))])
        outputs = model([im.to(device) for im in images])
        ev.process([t["image_id"] for t in targets], [{k: v.cpu() for k, v in o.items()} for o in outputs])
        if progress:
            progress(len(images))
    return ev.evaluate()
