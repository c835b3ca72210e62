from __future__ import annotations

import json
import math

import pytest
import torch

from dkan.evaluation.aggregate import aggregate_seeds, to_json, to_markdown
from dkan.evaluation.coco_ap import APEvaluator, ap50_per_class, ap50_tables, select_metric, summarize

CATS = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "c"}]


def gt(boxes):
    """boxes: [(image_id, category_id, [x, y, w, h])]"""
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 100} for i in (1, 2, 3)]
    anns = [
        {"id": n, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
        for n, (i, c, b) in enumerate(boxes, 1)
    ]
    return {"images": images, "annotations": anns, "categories": CATS}


def det(i, c, b, s):
    return {"image_id": i, "category_id": c, "bbox": b, "score": s}


GT = gt([(1, 1, [10, 10, 20, 20]), (2, 1, [50, 50, 30, 30]), (3, 2, [0, 0, 40, 40])])


def test_perfect_detections_score_one():
    ap = ap50_per_class(
        GT, [det(1, 1, [10, 10, 20, 20], 0.9), det(2, 1, [50, 50, 30, 30], 0.8), det(3, 2, [0, 0, 40, 40], 0.7)]
    )
    assert ap["a"] == pytest.approx(1.0) and ap["b"] == pytest.approx(1.0)


def test_hand_computed_partial_cases():
    # class a, 2 GT. Ranked: TP (0.9), FP (0.8). Recall reaches 0.5 at precision 1, never more:
    # 101-point interpolation -> the 51 recall points 0.00..0.50 score 1, the rest 0.
    ap = ap50_per_class(GT, [det(1, 1, [10, 10, 20, 20], 0.9), det(1, 1, [70, 70, 10, 10], 0.8)])
    assert ap["a"] == pytest.approx(51 / 101)
    # TP (0.9), FP (0.8), TP (0.7): precision 2/3 at recall 1 -> (51 * 1 + 50 * 2/3) / 101
    ap = ap50_per_class(
        GT, [det(1, 1, [10, 10, 20, 20], 0.9), det(1, 1, [70, 70, 10, 10], 0.8), det(2, 1, [52, 52, 30, 30], 0.7)]
    )
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
    out = {
        "boxes": torch.tensor([[10.0, 10.0, 30.0, 30.0]]),
        "labels": torch.tensor([1]),
        "scores": torch.tensor([0.9]),
    }
    ev.process([1], [out])
    assert ev.evaluate()["AP/a"] == pytest.approx(51 / 101)
    ev.reset()
    assert ev.evaluate()["AP/a"] == 0.0


def test_aggregate_over_seeds_and_tables():
    per_seed = {
        1: {"AP_all": 0.5, "AP/c": math.nan, "eval_split": "test"},
        2: {"AP_all": 0.7, "AP/c": 0.2, "eval_split": "test"},
    }
    agg = aggregate_seeds(per_seed)
    assert "eval_split" not in agg
    # sample std (ddof=1) of 0.5, 0.7 = sqrt(0.02); 95% t interval: 0.6 -+ t(0.975, 1) * sqrt(0.02) / sqrt(2)
    half = 12.706204736 * math.sqrt(0.02) / math.sqrt(2)
    assert agg["AP_all"] == {
        "mean": pytest.approx(0.6),
        "std": pytest.approx(math.sqrt(0.02)),
        "n": 2,
        "ci95_low": pytest.approx(0.6 - half),
        "ci95_high": pytest.approx(0.6 + half),
    }
    assert agg["AP/c"]["n"] == 1 and agg["AP/c"]["mean"] == pytest.approx(0.2) and math.isnan(agg["AP/c"]["std"])
    md = to_markdown({"DKAN": agg}, ["AP_all", "AP/c"])
    assert md.splitlines()[0] == "| method | AP_all | c |" and "| DKAN | 60.0 ± 14.1 | 20.0 |" in md
    assert "| DKAN | 60.0 ± 14.1 [-67.1, 187.1] |" in to_markdown({"DKAN": agg}, ["AP_all"], ci=True)
    assert json.loads(to_json({"DKAN": aggregate_seeds({1: {"AP_all": math.nan}})}))["DKAN"]["AP_all"]["mean"] is None


def test_voc07_11_point_differs_from_coco_101_point_on_a_hand_computed_case():
    # class a, 2 GT. TP (0.9), FP (0.8): precision 1 up to recall 0.5, nothing beyond.
    # 101-point: recall 0.00..0.50 -> 51 of 101 points; 11-point: recall 0, 0.1, ..., 0.5 -> 6 of 11.
    dets = [det(1, 1, [10, 10, 20, 20], 0.9), det(1, 1, [70, 70, 10, 10], 0.8)]
    t = ap50_tables(GT, dets)
    assert t["coco"]["a"] == pytest.approx(51 / 101) and t["voc07"]["a"] == pytest.approx(6 / 11)
    assert ap50_per_class(GT, dets, metric="voc07")["a"] == pytest.approx(6 / 11)
    # TP, FP, TP: interpolated precision 2/3 for recall above 0.5 -> 11-point (6 + 5 * 2/3) / 11
    dets.append(det(2, 1, [52, 52, 30, 30], 0.7))
    t = ap50_tables(GT, dets)
    assert t["voc07"]["a"] == pytest.approx((6 + 5 * 2 / 3) / 11) and t["coco"]["a"] == pytest.approx(
        (51 + 50 * 2 / 3) / 101
    )
    assert t["voc07"]["b"] == 0.0 and math.isnan(t["voc07"]["c"])  # no detections / no ground truth


def test_evaluator_reports_both_metrics_under_documented_keys():
    ev = APEvaluator(GT, base=["a"], novel=["b", "c"])
    ev.process(
        [1],
        [
            {
                "boxes": torch.tensor([[10.0, 10.0, 30.0, 30.0]]),
                "labels": torch.tensor([1]),
                "scores": torch.tensor([0.9]),
            }
        ],
    )
    m = {**ev.evaluate(), "eval_split": "test"}
    assert m["AP/a"] == pytest.approx(51 / 101) and m["voc07/AP/a"] == pytest.approx(6 / 11)
    assert m["voc07/AP_base"] == pytest.approx(6 / 11) and m["voc07/AP_all"] == pytest.approx(3 / 11)
    v = select_metric(m, "voc07")
    assert (
        v["AP_base"] == pytest.approx(6 / 11)
        and v["eval_split"] == "test"
        and not any(k.startswith("voc07/") for k in v)
    )
    c = select_metric(m, "coco")
    assert c["AP_base"] == pytest.approx(51 / 101) and "voc07/AP_all" not in c
