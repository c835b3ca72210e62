from __future__ import annotations

import json
import math

import pytest
import torch

from dkan.evaluation.aggregate import aggregate_seeds, to_json, to_markdown
from dkan.evaluation.coco_ap import APEvaluator, ap50_per_class, summarize

CATS = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "c"}]


def gt(boxes):
    """boxes: [(image_id, category_id, [x, y, w, h])]"""
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 100} for i in (1, 2, 3)]
    anns = [{"id": n, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0} for n, (i, c, b) in enumerate(boxes, 1)]
    return {"images": images, "annotations": anns, "categories": CATS}


def det(i, c, b, s):
    return {"image_id": i, "category_id": c, "bbox": b, "score": s}


GT = gt([(1, 1, [10, 10, 20, 20]), (2, 1, [50, 50, 30, 30]), (3, 2, [0, 0, 40, 40])])


def test_perfect_detections_score_one():
    ap = ap50_per_class(GT, [det(1, 1, [10, 10, 20, 20], 0.9), det(2, 1, [50, 50, 30, 30], 0.8), det(3, 2, [0, 0, 40, 40], 0.7)])
    assert ap["a"] == pytest.approx(1.0) and ap["b"] == pytest.approx(1.0)


def test_hand_computed_partial_cases():
    # class a, 2 GT. Ranked: TP (0.9), FP (0.8). Recall reaches 0.5 at precision 1, never more:
    # 101-point interpolation -> the 51 recall points 0.00..0.50 score 1, the rest 0.
    ap = ap50_per_class(GT, [det(1, 1, [10, 10, 20, 20], 0.9), det(1, 1, [70, 70, 10, 10], 0.8)])
    assert ap["a"] == pytest.approx(51 / 101)
    # TP (0.9), FP (0.8), TP (0.7): precision 2/3 at recall 1 -> (51 * 1 + 50 * 2/3) / 101
    ap = ap50_per_class(GT, [det(1, 1, [10, 10, 20, 20], 0.9), det(1, 1, [70, 70, 10, 10], 0.8), det(2, 1, [52, 52, 30, 30], 0.7)])
    assert ap["a"] == pytest.approx((51 + 50 * 2 / 3) / 101)
    # IoU just under 0.5 is a miss: [10,10,20,20] vs [20,10,20,20] -> IoU 200/600
    assert ap50_per_class(GT, [det(1, 1, [20, 10, 20, 20], 0.9)])["a"] == 0.0


def test_class_without_detections_is_zero_and_absent_class_is_nan_and_excluded():
    ap = ap50_per_class(GT, [det(1, 1, [10, 10, 20, 20], 0.9), det(2, 1, [50, 50, 30, 30], 0.8)])
    assert ap["b"] == 0.0  # has ground truth, no detections
    assert math.isnan(ap["c"])  # no ground truth at all: undefined
    s = summarize(ap, base=["a", "c"], novel=["b"])
    assert s["AP_base"] == pytest.approx(1.0) and s["AP_novel"] == 0.0 and s["AP_all"] == pytest.approx(0.5)


def test_no_detections_at_all():
    ap = ap50_per_class(GT, [])
    assert ap["a"] == 0.0 and ap["b"] == 0.0 and math.isnan(ap["c"])


def test_evaluator_protocol_with_torchvision_outputs():
    ev = APEvaluator(GT, base=["a"], novel=["b", "c"])
    out = {"boxes": torch.tensor([[10.0, 10.0, 30.0, 30.0]]), "labels": torch.tensor([1]), "scores": torch.tensor([0.9])}
    ev.process([1], [out])
    assert ev.evaluate()["AP/a"] == pytest.approx(51 / 101)
    ev.reset()
    assert ev.evaluate()["AP/a"] == 0.0


def test_aggregate_over_seeds_and_tables():
    per_seed = {1: {"AP_all": 0.5, "AP/c": math.nan, "eval_split": "test"}, 2: {"AP_all": 0.7, "AP/c": 0.2, "eval_split": "test"}}
    agg = aggregate_seeds(per_seed)
    assert "eval_split" not in agg
    assert agg["AP_all"] == {"mean": pytest.approx(0.6), "std": pytest.approx(0.1), "n": 2}
    assert agg["AP/c"]["n"] == 1 and agg["AP/c"]["mean"] == pytest.approx(0.2)
    md = to_markdown({"DKAN": agg}, ["AP_all", "AP/c"])
    assert md.splitlines()[0] == "| method | AP_all | c |" and "| DKAN | 60.0 ± 10.0 | 20.0 ± 0.0 |" in md
    assert json.loads(to_json({"DKAN": aggregate_seeds({1: {"AP_all": math.nan}})}))["DKAN"]["AP_all"]["mean"] is None
