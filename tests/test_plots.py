from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from dkan.data.coco import ImageRecord
from dkan.evaluation.coco_ap import ap50_per_class
from dkan.plots import draw_boxes, plot_detections_vs_gt, plot_pr_curves, pr_curves, samples_from_records
from sweeps.outputs.plots import plot_hparam_scatter, plot_optuna, plot_seed_spread

CATS = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "c"}]


def _gt():
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 100} for i in (1, 2)]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]},
        {"id": 2, "image_id": 2, "category_id": 1, "bbox": [50, 50, 20, 20]},
        {"id": 3, "image_id": 1, "category_id": 2, "bbox": [60, 10, 30, 30]},
    ]
    return {"images": images, "annotations": anns, "categories": CATS}


def _png(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_pr_curves_match_the_evaluator_and_hand_computed_shape(tmp_path):
    # class a: a true positive (0.9), a false positive (0.8), the second hit (0.7) -> precision 1 then 2/3
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9},
        {"image_id": 2, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.8},
        {"image_id": 2, "category_id": 1, "bbox": [50, 50, 20, 20], "score": 0.7},
    ]
    curves = pr_curves(_gt(), dets)
    assert set(curves) == {"a", "b"}  # c has no ground truth: no curve
    a = curves["a"]
    assert a.recall[-1] == pytest.approx(1.0) and a.n_gt == 2
    assert a.precision[a.recall <= 0.5].min() == pytest.approx(1.0)
    assert a.precision[a.recall > 0.5] == pytest.approx(2 / 3)
    assert a.ap == pytest.approx(ap50_per_class(_gt(), dets)["a"])
    assert curves["b"].ap == 0.0 and len(curves["b"].recall) == 0  # ground truth, no detections
    fig = plot_pr_curves(curves, path=tmp_path / "pr.png")
    assert isinstance(fig, Figure) and _png(tmp_path / "pr.png")[0] > 200
    assert "a (AP50" in fig.axes[0].get_legend().get_texts()[0].get_text()


def test_draw_boxes_and_detections_beside_ground_truth(tmp_path):
    img = np.zeros((60, 80, 3), dtype=np.uint8)
    pic = draw_boxes(img, [[10, 20, 40, 50]], ["a"], [0.9], ["a", "b"])
    arr = np.array(pic)
    assert arr.shape == (60, 80, 3) and arr[35, 10].tolist() == [31, 119, 180]  # left edge in class a's colour
    Image.fromarray(np.full((50, 50), 120, dtype=np.uint8)).save(tmp_path / "x.png")
    rec = ImageRecord(tmp_path / "x.png", 50, 50, ((5.0, 5.0, 30.0, 30.0),), ("b",), 7)
    dets = [
        {"image_id": 7, "category_id": 2, "bbox": [6, 6, 24, 24], "score": 0.8},
        {"image_id": 7, "category_id": 1, "bbox": [0, 0, 9, 9], "score": 0.1},
    ]
    samples = samples_from_records([rec, rec], dets, ["a", "b"], score_thresh=0.3)
    assert samples[0].det_names == ["b"] and samples[0].gt_names == ["b"] and samples[0].image.shape == (50, 50, 3)
    fig = plot_detections_vs_gt(samples, ["a", "b"], path=tmp_path / "vis.png")
    assert len(fig.axes) == 4 and fig.axes[1].get_title().endswith("detections (1)")
    _png(tmp_path / "vis.png")


def test_seed_spread_skips_missing_values(tmp_path):
    rows = {"TFA": {"1": {"AP_all": 0.2}, "2": {"AP_all": 0.3}}, "DKAN": {"1": {"AP_all": 0.4}, "2": {"AP_all": None}}}
    fig = plot_seed_spread(rows, path=tmp_path / "s.png")
    ax = fig.axes[0]
    points = [c.get_offsets()[0].tolist() for c in ax.collections]
    assert sorted(round(y, 3) for _, y in points) == [20.0, 30.0, 40.0]  # the None seed is not drawn
    assert [t.get_text() for t in ax.get_xticklabels()] == ["TFA", "DKAN"]
    _png(tmp_path / "s.png")


def test_hparam_scatter_one_panel_per_hyperparameter_log_where_wide(tmp_path):
    trials = [
        {"fka_weight": w, "lka_weight": 0.01, "fka_tau": 5.0, "lka_tau": 5.0, "val_AP_all": ap, "state": st}
        for w, ap, st in ((0.01, 0.1, "stopped"), (1.0, 0.3, "completed"), (9.0, 0.2, "completed"))
    ]
    trials.append({"config": {"fka_weight": 2.0}, "metrics": {"val_AP_all": math.nan}})
    fig = plot_hparam_scatter(trials, path=tmp_path / "h.png")
    assert len(fig.axes) == 4
    assert fig.axes[0].get_xscale() == "log" and fig.axes[2].get_xscale() == "linear"
    assert sum(len(c.get_offsets()) for c in fig.axes[0].collections) == 3  # the NaN trial is not drawn
    _png(tmp_path / "h.png")


def test_optuna_importance_and_history(tmp_path):
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: -(t.suggest_float("x", -2, 2) ** 2) + 0.01 * t.suggest_float("y", 0, 1), n_trials=12)
    figs = plot_optuna(study, tmp_path, prefix="s1")
    assert set(figs) == {"importance", "history"}
    assert _png(tmp_path / "s1_importance.png") and _png(tmp_path / "s1_history.png")
    lonely = optuna.create_study()
    lonely.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    with pytest.warns(UserWarning, match="importance plot skipped: 1 completed"):
        assert set(plot_optuna(lonely)) == {"history"}
