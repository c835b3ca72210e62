"""A study's figures, as PNG files under ``OUT/plots/<study key>/`` (``dkan.report`` shows them):

- ``pr_curves.png``: per-class precision-recall at IoU 0.5 of the selected config (the tuned DKAN of
  the first seed, on test);
- ``detections.png``: its detections beside the ground truth on a few test images;
- ``seed_spread.png``: AP_all over seeds, per row of the test table;
- ``hparams.png``: each hyperparameter against the search's objective (validation AP), per trial;
- ``optuna_importance.png`` / ``optuna_history.png``: Optuna's views of the search (>= 2 trials with a value).

A figure that cannot be drawn is a warning, never a failed sweep.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from dkan import runfolder
from dkan.names import metric_key
from sweeps.plan import Plan, Study

N_IMAGES = 4  # test images drawn beside their ground truth


class FigureWarning(UserWarning):
    pass


def plots_dir(plan: Plan, study: Study) -> Path:
    return plan.out / "plots" / study.key


def selected_checkpoint(study: Study, seed: int) -> Path | None:
    """The tuned DKAN's test checkpoint of ``seed``: its own fine-tune, or the search trial's it reused."""
    from sweeps.testphase import final_dir

    d = final_dir(study.runs_dir, "dkan", seed)
    if (d / runfolder.FINAL).is_file():
        return d / runfolder.FINAL
    reused = (runfolder.done_metrics(d) or {}).get("checkpoint")
    return Path(reused) if reused and Path(reused).is_file() else None


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


def trial_rows(grid: Iterable[Any], objective: str, n_seeds: int, tuned_trial_id: str | None) -> list[dict]:
    """One flat dict per search trial (hyperparameters, ``objective``, ``state``) from a Tune ResultGrid."""
    rows = []
    for r in grid:
        m = dict(r.metrics or {})
        if getattr(r, "error", None) is not None:
            state = "failed"
        elif m.get("trial_id") is not None and m.get("trial_id") == tuned_trial_id:
            state = "selected"
        elif int(m.get("seeds_done", 0)) < n_seeds:
            state = "stopped early"
        else:
            state = "completed"
        value = m.get(objective, math.nan)
        rows.append({**{k: v for k, v in (r.config or {}).items() if isinstance(v, (int, float))},
                     objective: value, "state": state})
    return rows


def optuna_study(rows: list[dict], space: Mapping[str, Any], objective: str) -> Any:
    """An in-memory ``optuna.Study`` of the trials with a finite objective (Ray's own searcher stays private)."""
    import optuna

    from sweeps.space import to_optuna

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


def study_figures(plan: Plan, study: Study, per_row: Mapping[str, Mapping[int, Mapping[str, float]]],
                  grid: Iterable[Any], tuned_trial_id: str | None) -> dict[str, Path]:
    """Draw the study's figures into ``OUT/plots/<key>/``; returns {name: PNG path} of those drawn."""
    from dkan import plots
    from sweeps.report import ROW_NAMES

    d = plots_dir(plan, study)
    made: dict[str, Path] = {}
    seed = plan.seeds[0]
    title = f"{study.key}, tuned DKAN, seed {seed}, test"

    def model_figures() -> dict[str, Path]:
        from dkan.predict import evaluation_detections

        ckpt = selected_checkpoint(study, seed)
        if ckpt is None:
            raise FileNotFoundError(f"no test checkpoint of the tuned DKAN, seed {seed}, under {study.runs_dir}")
        ev = evaluation_detections(ckpt, "test", data_root=str(plan.data_root))
        out = {"pr_curves": d / "pr_curves.png", "detections": d / "detections.png"}
        plots.plot_pr_curves(plots.pr_curves(ev.gt, ev.detections, 0.5), f"{title}: precision-recall at IoU 0.5",
                             out["pr_curves"])
        samples = plots.samples_from_records(pick_images(ev.records), ev.detections, ev.classes)
        plots.plot_detections_vs_gt(samples, ev.classes, out["detections"])
        return out

    def seed_spread() -> Path:
        rows = {ROW_NAMES.get(r, r): seeds for r, seeds in per_row.items() if seeds}
        key = metric_key("AP_all", plan.metric)
        plots.plot_seed_spread(rows, key, f"{study.key}: {key} over seeds (test)", d / "seed_spread.png")
        return d / "seed_spread.png"

    rows = trial_rows(grid, plan.objective, len(plan.seeds), tuned_trial_id)

    def hparams() -> Path:
        plots.plot_hparam_scatter(rows, plan.objective, list(plan.space), f"{study.key}: search trials",
                                  d / "hparams.png")
        return d / "hparams.png"

    def optuna_figures() -> dict[str, Path]:
        ostudy = optuna_study(rows, plan.space, plan.objective)
        if len(ostudy.trials) < 2:
            return {}
        figs = plots.plot_optuna(ostudy, d, prefix="optuna")
        return {f"optuna_{k}": d / f"optuna_{k}.png" for k in figs}

    for name, make in (("pr_curves", model_figures), ("seed_spread", seed_spread), ("hparams", hparams),
                       ("optuna", optuna_figures)):
        _try(name, make, made)
    return made


def write_sweep_report(out: Path) -> Path | None:
    """``dkan.report.write_report`` over the run folder (report.html / report.md); a failure only warns."""
    from dkan.report import write_report

    try:
        html, _ = write_report(Path(out))
    except Exception as e:  # noqa: BLE001 - the sweep's results are written already; the report can be redone
        warnings.warn(f"report not written: {type(e).__name__}: {e}. Fix: run `dkan report {out}`", FigureWarning,
                      stacklevel=2)
        return None
    print(f"report: {html}", flush=True)
    return html
