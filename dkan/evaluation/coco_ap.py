"""AP50 with pycocotools' COCOeval (100 detections per image), in two interpolations:

- ``coco``: COCO's 101-point AP (mean interpolated precision at recall 0, 0.01, ..., 1);
- ``voc07``: PASCAL VOC 2007's 11-point AP (recall 0, 0.1, ..., 1), the metric of the DKAN paper
  (mmdet's 'mAP'). Read from the same COCOeval precision array (its recall points 0, 10, ..., 100),
  not from a second matcher; unreached recall points count as precision 0 in both.

Metrics dict keys: coco as ``AP_base``, ``AP_novel``, ``AP_all``, ``AP/<class>``; voc07 the same
names prefixed ``voc07/`` (``names.metric_key``). A class with ground truth but no detections
scores 0. A class absent from the ground truth has no defined AP: it is reported as NaN and left
out of AP_base / AP_novel / AP_all (COCOeval itself marks it -1 and leaves it out of its mean).
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
from dkan.names import HEADLINE, METRICS, PER_CLASS_PREFIX, metric_key

VOC07_RECALL_INDEX = np.arange(0, 101, 10)  # COCOeval's recThrs are 0:0.01:1 -> recall 0, 0.1, ..., 1.0


def _coco_api(gt: CocoDict) -> COCO:
    api = COCO()
    api.dataset = {
        "images": gt["images"],
        "annotations": [
            {**a, "iscrowd": a.get("iscrowd", 0), "area": a.get("area", a["bbox"][2] * a["bbox"][3])}
            for a in gt["annotations"]
        ],
        "categories": gt["categories"],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        api.createIndex()
    return api


def ap50_per_class(gt: CocoDict, detections: list[dict], metric: str = "coco") -> dict[str, float]:
    """{class name: AP at IoU 0.5} in ``metric`` (coco | voc07); ``detections`` are COCO results
    (image_id, category_id, bbox xywh, score)."""
    return ap50_tables(gt, detections)[metric]


def ap50_tables(gt: CocoDict, detections: list[dict]) -> dict[str, dict[str, float]]:
    """{metric: {class name: AP50}} for every metric in ``names.METRICS``, from one COCOeval run."""
    names = {c["id"]: c["name"] for c in gt["categories"]}
    present = {a["category_id"] for a in gt["annotations"]}
    empty = {names[c]: (0.0 if c in present else math.nan) for c in sorted(names)}
    tables = {m: dict(empty) for m in METRICS}
    if not detections or not present:
        return tables
    api = _coco_api(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(api, api.loadRes(detections), iouType="bbox")
        ev.params.iouThrs = np.array([0.5])
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][0, :, :, 0, -1]  # [101 recall points, class, area=all, maxDets=100]
    for k, cat in enumerate(ev.params.catIds):
        p = precision[:, k]
        if not (p > -1).all():  # -1: no ground truth for this class
            for m in METRICS:
                tables[m][names[cat]] = 0.0 if cat in present else math.nan
            continue
        tables["coco"][names[cat]] = float(p.mean())
        tables["voc07"][names[cat]] = float(p[VOC07_RECALL_INDEX].mean())
    return tables


def summarize(
    per_class: dict[str, float], base: Sequence[str], novel: Sequence[str], metric: str = "coco"
) -> dict[str, float]:
    """AP_base, AP_novel, AP_all (means over classes with ground truth) plus per-class AP, keyed for ``metric``."""

    def mean(names: Sequence[str]) -> float:
        vals = [per_class[n] for n in names if not math.isnan(per_class[n])]
        return float(np.mean(vals)) if vals else math.nan

    out = {"AP_base": mean(base), "AP_novel": mean(novel), "AP_all": mean(list(base) + list(novel))}
    out.update({f"{PER_CLASS_PREFIX}{n}": v for n, v in per_class.items()})
    return {metric_key(k, metric): v for k, v in out.items()}


def select_metric(metrics: dict, metric: str) -> dict:
    """The AP entries of one metric under the plain coco names (``AP_all``, ``AP/<class>``); other
    entries (eval_split, timings) unchanged. For printing and tables that name their metric."""
    prefix = metric_key("", metric)
    aps = {
        k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix) and _is_ap(k.removeprefix(prefix))
    }
    rest = {k: v for k, v in metrics.items() if not _is_ap(k) and not any(k.startswith(f"{m}/") for m in METRICS)}
    return {**aps, **rest}


def _is_ap(key: str) -> bool:
    return key in HEADLINE or key.startswith(PER_CLASS_PREFIX)


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
        """coco keys (``AP_all``, ``AP/<class>``), then the voc07 ones (``voc07/AP_all``, ...)."""
        tables = ap50_tables(self.gt, self.detections)
        return {k: v for m in METRICS for k, v in summarize(tables[m], self.base, self.novel, m).items()}
