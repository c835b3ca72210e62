"""AP50 with pycocotools' COCOeval (COCO 101-point interpolation, 100 detections per image).

A class with ground truth but no detections scores 0. A class absent from the ground truth has
no defined AP: it is reported as NaN and left out of AP_base / AP_novel / AP_all (COCOeval
itself marks it -1 and leaves it out of its mean).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from dkan.data.coco import CocoDict


def _coco_api(gt: CocoDict) -> COCO:
    api = COCO()
    api.dataset = {"images": gt["images"], "annotations": [{**a, "iscrowd": a.get("iscrowd", 0), "area": a.get("area", a["bbox"][2] * a["bbox"][3])} for a in gt["annotations"]], "categories": gt["categories"]}
    with contextlib.redirect_stdout(io.StringIO()):
        api.createIndex()
    return api


def ap50_per_class(gt: CocoDict, detections: list[dict]) -> dict[str, float]:
    """{class name: AP at IoU 0.5}; ``detections`` are COCO results (image_id, category_id, bbox xywh, score)."""
    names = {c["id"]: c["name"] for c in gt["categories"]}
    present = {a["category_id"] for a in gt["annotations"]}
    result = {names[c]: (0.0 if c in present else math.nan) for c in sorted(names)}
    if not detections or not present:
        return result
    api = _coco_api(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(api, api.loadRes(detections), iouType="bbox")
        ev.params.iouThrs = np.array([0.5])
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][0, :, :, 0, -1]  # [recall, class, area=all, maxDets=100]
    for k, cat in enumerate(ev.params.catIds):
        p = precision[:, k]
        result[names[cat]] = float(p.mean()) if (p > -1).all() else (0.0 if cat in present else math.nan)
    return result


def summarize(per_class: dict[str, float], base: Sequence[str], novel: Sequence[str]) -> dict[str, float]:
    """AP_base, AP_novel, AP_all (means over classes with ground truth) plus per-class AP."""
    def mean(names: Sequence[str]) -> float:
        vals = [per_class[n] for n in names if not math.isnan(per_class[n])]
        return float(np.mean(vals)) if vals else math.nan

    out = {"AP_base": mean(base), "AP_novel": mean(novel), "AP_all": mean(list(base) + list(novel))}
    out.update({f"AP/{n}": v for n, v in per_class.items()})
    return out


def to_coco_results(image_id: int, output: dict[str, torch.Tensor]) -> list[dict]:
    """One torchvision detector output (boxes xyxy, labels 1..N, scores) -> COCO results."""
    boxes = output["boxes"].detach().cpu().tolist()
    return [
        {"image_id": int(image_id), "category_id": int(lab), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(s)}
        for (x1, y1, x2, y2), lab, s in zip(boxes, output["labels"].tolist(), output["scores"].tolist())
    ]


class APEvaluator:
    """detectron2's evaluator protocol: reset() / process(image_ids, outputs) / evaluate() -> dict.

    Category ids of ``gt`` must equal the detector's labels (1..N in class order).
    """

    def __init__(self, gt: CocoDict, base: Sequence[str], novel: Sequence[str]):
        self.gt, self.base, self.novel = gt, list(base), list(novel)
        self.reset()

    def reset(self) -> None:
        self.detections: list[dict] = []

    def process(self, image_ids: Sequence[int], outputs: Sequence[dict[str, torch.Tensor]]) -> None:
        for i, out in zip(image_ids, outputs):
            self.detections.extend(to_coco_results(i, out))

    def evaluate(self) -> dict[str, float]:
        return summarize(ap50_per_class(self.gt, self.detections), self.base, self.novel)
