"""A study's figures, as PNG files under ``OUT/plots/<study key>/`` (the report and MLflow show them):

- ``decision.png``: each candidate's paired difference against the one standing when the rule compared it,
  val beside test (``sweeps.outputs.decision``);
- ``pr_curves.png``: per-class precision-recall at IoU 0.5 of the recommended candidate (first seed, on test);
- ``detections.png``: its detections beside the ground truth on a few test images;
- ``seed_spread.png``: AP_all over seeds, per row of the test table;
- ``hparams.png``: each searched value against the DKAN search's objective (validation AP), per trial;
- ``optuna_importance.png`` / ``optuna_history.png``: Optuna's views of the search (>= 2 trials with a value);
- ``pareto.png`` (``--objective pareto``): each DKAN trial's AP_novel against its AP_B retention, the front, the pick.

A figure that cannot be drawn is a warning, never a failed sweep.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from dkan.names import metric_key
from sweeps.core.layout import RunLayout, model_in
from sweeps.core.outcome import StudyOutcome
from sweeps.core.plan import Plan
from sweeps.core.selection import TrialSummary, pareto_front
from sweeps.core.shape import ROW_NAMES
from sweeps.core.space import Range
from sweeps.outputs import plots

N_IMAGES = 4  # test images drawn beside their ground truth


class FigureWarning(UserWarning):
    pass


def pick_images(records: list, n: int = N_IMAGES) -> list:
    """Up to ``n`` records with ground truth, one per class first (so several classes are shown)."""
    boxed = [r for r in records if r.labels]
    picked, seen = [], set()
    for r in boxed:
        if r.labels[0] not in seen:
            picked.append(r)
            seen.add(r.labels[0])
    picked += [r for r in boxed if r not in picked]
    return picked[:n]


def trial_rows(trials: Iterable[TrialSummary], objective: str, n_seeds: int, selected: str | None) -> list[dict]:
    """One flat dict per search trial: its hyperparameters, ``objective`` and ``state``."""
    return [{**t.point, objective: t.objective, "state": t.state(n_seeds, selected)} for t in trials]


def optuna_study(rows: list[dict], space: Mapping[str, Any], objective: str) -> Any:
    """An in-memory ``optuna.Study`` of the trials with a finite objective (Ray's own searcher stays private)."""
    import optuna

    from sweeps.shell.optuna_space import to_optuna

    dists = to_optuna(dict(space))
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line on the console
    try:
        study = optuna.create_study(direction="maximize")
    finally:
        optuna.logging.set_verbosity(level)
    for r in rows:
        v = r.get(objective)
        if r["state"] == "failed" or not isinstance(v, (int, float)) or not math.isfinite(v):
            continue
        params = {k: min(max(float(r[k]), d.low), d.high) for k, d in dists.items() if k in r}
        if len(params) == len(dists):
            study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=float(v)))
    return study


def _try(name: str, make: Callable[[], Any], made: dict[str, Path]) -> None:
    try:
        out = make()
    except Exception as e:  # noqa: BLE001 - a figure is never worth a failed sweep
        warnings.warn(f"figure {name} not drawn: {type(e).__name__}: {e}", FigureWarning, stacklevel=2)
        return
    if isinstance(out, Mapping):
        made.update({k: Path(v) for k, v in out.items()})
    elif out is not None:
        made[name] = Path(out)


def write_figures(plan: Plan, layout: RunLayout, outcome: StudyOutcome) -> dict[str, Path]:
    """Draw the study's figures into ``OUT/plots/<key>/``; returns {name: PNG path} of those drawn."""
    from dkan import plots as detector_plots

    key, d = outcome.key, layout.plots(outcome.key)
    made: dict[str, Path] = {}
    seed = plan.seeds[0]
    rec = outcome.selection.recommended
    title = f"{key}, {ROW_NAMES[rec]}, seed {seed}, test"

    def model_figures() -> dict[str, Path]:
        from dkan.inference import evaluation_detections

        ckpt = model_in(layout.test_seed(key, rec, seed))
        if ckpt is None:
            raise FileNotFoundError(f"no test checkpoint of {rec}, seed {seed}, under {layout.runs(key)}")
        ev = evaluation_detections(ckpt, "test", data_root=str(plan.data_root))
        out = {"pr_curves": d / "pr_curves.png", "detections": d / "detections.png"}
        detector_plots.plot_pr_curves(detector_plots.pr_curves(ev.gt, ev.detections, 0.5),
                                      f"{title}: precision-recall at IoU 0.5", out["pr_curves"])
        samples = detector_plots.samples_from_records(pick_images(ev.records), ev.detections, ev.classes)
        detector_plots.plot_detections_vs_gt(samples, ev.classes, out["detections"])
        return out

    def seed_spread() -> Path:
        rows = {ROW_NAMES.get(r, r): seeds for r, seeds in outcome.per_row.items() if seeds}
        ap = metric_key("AP_all", plan.metric)
        plots.plot_seed_spread(rows, ap, f"{key}: {ap} over seeds (test)", d / "seed_spread.png")
        return d / "seed_spread.png"

    dkan = [t for t in outcome.selection.trials if t.method == "dkan"]  # the defaults and the search trials
    rows = trial_rows(dkan, plan.objective, len(plan.seeds), outcome.selection.choice.trial.trial_id)
    numeric = [k for k, d in plan.space.items() if isinstance(d, Range)]

    def hparams() -> Path:
        plots.plot_hparam_scatter(rows, plan.objective, numeric, f"{key}: DKAN's trials", d / "hparams.png")
        return d / "hparams.png"

    def optuna_figures() -> dict[str, Path]:
        ostudy = optuna_study(rows, plan.space, plan.objective)
        if len(ostudy.trials) < 2:
            return {}
        figs = plots.plot_optuna(ostudy, d, prefix="optuna")
        return {f"optuna_{k}": d / f"optuna_{k}.png" for k in figs}

    def pareto() -> Path | None:
        if plan.objective_kind != "pareto":
            return None
        pts = [(t.trial_id, t.report.means["AP_novel"], t.report.retention) for t in dkan if t.report and t.trial_id]
        front = [t.trial_id for t in pareto_front(dkan)]
        cands = outcome.selection.candidates
        tuned = next((cands[c.name] for role in ("tuned", "defaults") for c in plan.shape.of_role(role)
                      if c.name in cands), None)
        plots.plot_pareto(pts, front, tuned.trial.trial_id if tuned else None, plan.min_retention,
                          f"{key}: forgetting against learning (val)", d / "pareto.png")
        return d / "pareto.png"

    def decision() -> Path:
        from sweeps.outputs.decision import write_decision

        return write_decision(plan, layout, outcome)

    for name, make in (("decision", decision), ("pr_curves", model_figures), ("seed_spread", seed_spread),
                       ("hparams", hparams), ("optuna", optuna_figures), ("pareto", pareto)):
        _try(name, make, made)
    return made
