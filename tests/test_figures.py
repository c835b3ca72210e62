"""sweeps.outputs.figures: a study's PNGs from its test checkpoint, test rows and search trials; failures only
warn."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import tiny_model_config
from PIL import Image

from dkan.config import BaseTrainConfig, DataConfig, FinetuneConfig, to_dict
from dkan.data.splits import NEU_DET_SPLITS
from dkan.model.checkpoint import save_checkpoint
from dkan.model.detector import build_detector
from sweeps.core.jobspec import WorkerResources
from sweeps.core.layout import model_in
from sweeps.core.outcome import Findings, Shipped, StudyOutcome
from sweeps.core.plan import Budget, ClassSplitSpec, Plan, StudySpec
from sweeps.core.progress import TrialReport
from sweeps.core.selection import Candidate, Selection, trial_summaries
from sweeps.core.shape import RunSpec
from sweeps.core.space import DISTILL_SPACE
from sweeps.outputs.figures import FigureWarning, optuna_study, trial_rows, write_figures

CLASSES = NEU_DET_SPLITS[1].base
KEY = "prepared_split1_1shot"


def _plan(data: Path, out: Path, seeds=(1, 2)) -> Plan:
    return Plan(data_root=data, dataset="prepared", splits=(ClassSplitSpec("split1", 1),), shots=(1,), seeds=seeds,
                profile="cpu-quick", budget=Budget(trials=3), space=dict(DISTILL_SPACE), resources=WorkerResources(),
                out=out, tracking_uri=f"sqlite:///{out / 'mlflow.db'}", protocol="val", base_checkpoint=None,
                cache_dir=out / "cache")


SPEC = RunSpec("search", "dkan", DISTILL_SPACE)


def _outcome(plan: Plan, grid: list, tuned: str = "t0") -> StudyOutcome:
    """A study's outcome with the figures' inputs: the test rows and the search's trials (the tuned DKAN
    recommended)."""
    trials = tuple(trial_summaries(grid, SPEC))
    best = next(t for t in trials if t.trial_id == tuned)
    selection = Selection({"dkan": Candidate("dkan", "dkan", best.point, best)}, "dkan", (), trials,
                          len(plan.seeds), 0.005, "")
    study = StudySpec(plan.splits[0], 1, KEY, FinetuneConfig())
    findings = Findings({}, {}, [], {}, {}, "recommended: DKAN (tuned)")
    return StudyOutcome(study, "run", plan.out / "base.pt", selection, _per_row(), findings,
                        Shipped(1, plan.out / "model.pt"))


def _checkpoint(path: Path, data: Path) -> Path:
    """A random-weight tiny model with fit's payload shape (enough for detections and PR curves)."""
    torch.manual_seed(0)
    cfg = BaseTrainConfig(model=tiny_model_config(min_size=64, max_size=64, box_detections_per_img=30),
                          data=DataConfig(root=str(data), split=1))
    meta = {"stage": "base", "classes": list(CLASSES), "base": list(CLASSES), "novel": [], "config": to_dict(cfg),
            "iteration": 0}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, {"model": build_detector(cfg.model, len(CLASSES)).state_dict(), "meta": meta})
    return path


def _grid() -> list[SimpleNamespace]:
    """A Tune ResultGrid's shape: the selected trial, one ASHA stopped, one failed, one more completed."""
    def result(tid, fka, ap, seeds, error=None):
        config = {"fka_weight": fka, "lka_weight": 0.01, "fka_tau": 5.0, "lka_tau": 2.0 + fka}
        if ap is None:
            return SimpleNamespace(config=config, error=error, metrics={})
        report = TrialReport.of_seeds("val", [(s, {"AP_all": ap}) for s in range(1, seeds + 1)])
        return SimpleNamespace(config=config, error=error, metrics={"trial_id": tid, **report.to_metrics()})
    return [result("t0", 1.0, 0.30, 2), result("t1", 0.1, 0.10, 1), result("t2", 3.0, None, 0, RuntimeError("x")),
            result("t3", 5.0, 0.20, 2)]


def _per_row() -> dict:
    return {row: {1: {"AP_all": a, "AP_base": 0.5}, 2: {"AP_all": a + 0.05, "AP_base": 0.5}}
            for row, a in (("tfa", 0.1), ("dkan_defaults", 0.2), ("dkan", 0.25))} | {"base": {0: {"AP_base": 0.6}}}


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_study_figures_draws_every_figure_from_the_selected_checkpoint(synthetic_prepared, tmp_path):
    plan = _plan(synthetic_prepared, tmp_path / "out")
    _checkpoint(plan.layout.test_seed(KEY, "dkan", 1) / "model_final.pt", synthetic_prepared)
    made = write_figures(plan, plan.layout, _outcome(plan, _grid()))
    names = {"decision", "pr_curves", "detections", "seed_spread", "hparams", "optuna_importance", "optuna_history"}
    assert set(made) == names
    for name, path in made.items():
        assert path.parent == tmp_path / "out" / "plots" / KEY and path.is_file()
        w, h = _png_size(path)
        assert w > 200 and h > 150, name
    assert _png_size(made["detections"])[1] > 3 * _png_size(made["seed_spread"])[1]  # 4 image rows, not one


def test_reused_search_checkpoint_is_found_through_metrics_json(synthetic_prepared, tmp_path):
    layout = _plan(synthetic_prepared, tmp_path / "out").layout
    trial_ckpt = layout.trial_seed(KEY, "t0", 1) / "model_final.pt"
    trial_ckpt.parent.mkdir(parents=True)
    trial_ckpt.write_bytes(b"")
    test = layout.test_seed(KEY, "dkan", 1)
    test.mkdir(parents=True)
    (test / "metrics.json").write_text(json.dumps({"AP_all": 0.1, "source": "reused", "checkpoint": str(trial_ckpt)}))
    assert model_in(test) == trial_ckpt
    assert model_in(layout.test_seed(KEY, "dkan", 2)) is None
    assert model_in(trial_ckpt.parent) == trial_ckpt  # a fine-tune's own model


def test_a_figure_that_fails_warns_and_the_others_are_drawn(synthetic_prepared, tmp_path):
    plan = _plan(synthetic_prepared, tmp_path / "out")  # no checkpoint at all: no PR curves, no drawings
    with pytest.warns(FigureWarning, match="pr_curves not drawn: FileNotFoundError: no test checkpoint"):
        made = write_figures(plan, plan.layout, _outcome(plan, _grid()[2:3] + _grid()[:1]))
    assert set(made) == {"decision", "seed_spread", "hparams"}  # one trial with a value: no Optuna figures either
    assert not (tmp_path / "out" / "plots" / KEY / "pr_curves.png").exists()


def test_optuna_study_rebuilt_from_the_grid_and_trial_states():
    rows = trial_rows(trial_summaries(_grid(), SPEC), "val_AP_all", 2, "t0")
    assert [r["state"] for r in rows] == ["selected", "stopped early", "failed", "completed"]
    assert math.isnan(rows[2]["val_AP_all"])
    study = optuna_study(rows, DISTILL_SPACE, "val_AP_all")
    assert [t.value for t in study.trials] == [0.30, 0.10, 0.20]  # the failed trial has no value
    assert study.best_trial.params["fka_weight"] == 1.0 and study.direction.name == "MAXIMIZE"



def test_the_pareto_search_draws_its_front(synthetic_prepared, tmp_path):
    from dataclasses import replace

    plan = replace(_plan(synthetic_prepared, tmp_path / "out"), objective_kind="pareto", min_retention=0.8)

    def result(tid, novel, retention):
        r = TrialReport.of_seeds("val", [(s, {"AP_all": 0.3, "AP_novel": novel, "AP_base": 0.4}) for s in (1, 2)])
        metrics = {"trial_id": tid, **replace(r, retention=retention).to_metrics()}
        return SimpleNamespace(config={**dict(zip(DISTILL_SPACE, (1.0, 0.01, 5.0, 2.0))), "fka_weight": novel},
                               error=None, metrics=metrics)

    grid = [result("t0", 0.5, 0.85), result("t1", 0.6, 0.5), result("t2", 0.2, 0.6)]  # t2: dominated by t0
    made = write_figures(plan, plan.layout, _outcome(plan, grid))
    assert made["pareto"].is_file() and _png_size(made["pareto"])[0] > 300
