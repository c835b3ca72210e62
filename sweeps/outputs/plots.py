"""A sweep's own figures: AP over seeds per test row, hyperparameters against the objective, Optuna's
views of a search. (A detector's figures, PR curves and drawings: ``dkan.plots``.)

Each ``plot_*`` function returns a matplotlib ``Figure`` and, given ``path``, saves it as PNG; only the
Optuna plots go through pyplot (Optuna draws there) and are detached from it before being returned.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from dkan.names import HPARAMS
from dkan.plots import PALETTE, save_figure
from sweeps.core.grid_summary import REFERENCE, by_val


def _value(m: Any, metric: str) -> float:
    v = m.get(metric) if isinstance(m, Mapping) else None
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v) else math.nan


def plot_seed_spread(
    rows: Mapping[str, Mapping[Any, Mapping[str, float]]],
    metric: str = "AP_all",
    title: str = "",
    path: Path | None = None,
    scale: float = 100.0,
) -> Figure:
    """{row: {seed: metrics}} -> a box per row with each seed as a labelled point (AP in points)."""
    names = list(rows)
    fig = Figure(figsize=(max(4.0, 1.6 * len(names) + 1.5), 4))
    ax = fig.subplots()
    data = []
    for i, name in enumerate(names):
        seeds = [(s, _value(m, metric) * scale) for s, m in rows[name].items()]
        seeds = [(s, v) for s, v in seeds if not math.isnan(v)]
        data.append([v for _, v in seeds])
        jitter = np.linspace(-0.12, 0.12, len(seeds)) if len(seeds) > 1 else [0.0]
        for (s, v), dx in zip(seeds, jitter):
            ax.scatter(i + 1 + dx, v, s=22, color="tab:blue", zorder=3)
            ax.annotate(str(s), (i + 1 + dx, v), fontsize=7, xytext=(4, 0), textcoords="offset points", va="center")
    ax.boxplot([d if d else [math.nan] for d in data], widths=0.5, showfliers=False)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=15 if len(names) > 3 else 0, fontsize=8)
    ax.set(ylabel=f"{metric} ({'points' if scale == 100 else 'value'})", title=title or f"{metric} over seeds")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_hparam_scatter(
    trials: Sequence[Mapping[str, Any]],
    metric: str = "val_AP_all",
    hparams: Sequence[str] = HPARAMS,
    title: str = "",
    path: Path | None = None,
) -> Figure:
    """One panel per hyperparameter: its value against ``metric`` over trials (log x where the values span 20x).

    A trial is a flat dict of hyperparameters and metrics; ``config``/``params``/``metrics`` sub-dicts
    are merged in. A ``state`` key (e.g. completed / stopped) colours the points."""
    flat = [{**t.get("config", {}), **t.get("params", {}), **t.get("metrics", {}), **t} for t in trials]
    hparams = [h for h in hparams if any(_value(t, h) == _value(t, h) for t in flat)] or list(hparams)
    fig = Figure(figsize=(3.2 * len(hparams), 3.2))
    axes = fig.subplots(1, len(hparams), squeeze=False)[0]
    states = sorted({str(t.get("state", "trial")) for t in flat})
    for ax, h in zip(axes, hparams):
        for k, state in enumerate(states):
            pts = [(_value(t, h), _value(t, metric) * 100) for t in flat if str(t.get("state", "trial")) == state]
            pts = [p for p in pts if not (math.isnan(p[0]) or math.isnan(p[1]))]
            if pts:
                ax.scatter(*zip(*pts), s=24, color=[v / 255 for v in PALETTE[k % len(PALETTE)]], label=state)
        xs = [_value(t, h) for t in flat if _value(t, h) > 0]
        if xs and max(xs) / min(xs) >= 20:
            ax.set_xscale("log")
        ax.set(xlabel=h, ylabel=f"{metric} (points)" if ax is axes[0] else None)
        ax.grid(alpha=0.3)
    if len(states) > 1:
        axes[-1].legend(fontsize=7)
    fig.suptitle(title or f"hyperparameters against {metric}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_optuna(study: Any, out_dir: Path | None = None, prefix: str = "optuna") -> dict[str, Figure]:
    """Optuna's parameter importances and optimisation history of ``study`` (an ``optuna.Study``).

    Returns {"importance": fig, "history": fig}; a plot Optuna cannot make (e.g. importances
    with fewer than two finished trials) is left out. Saved as ``<prefix>_<name>.png`` in ``out_dir``."""
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    makers = {"importance": ovm.plot_param_importances, "history": ovm.plot_optimization_history}
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    need = {"importance": 2, "history": 1}  # Optuna draws empty axes below these instead of failing
    figs: dict[str, Figure] = {}
    for name, make in makers.items():
        if len(done) < need[name]:
            warnings.warn(f"optuna {name} plot skipped: {len(done)} completed trials", stacklevel=2)
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                ax = make(study)
        except (ValueError, RuntimeError) as e:  # too few trials, a single-valued parameter, ...
            warnings.warn(f"optuna {name} plot skipped: {e}", stacklevel=2)
            continue
        fig = ax.figure if hasattr(ax, "figure") else np.ravel(ax)[0].figure
        plt.close(fig)  # detach from pyplot (no window, no leak); the Figure still saves
        figs[name] = save_figure(fig, Path(out_dir) / f"{prefix}_{name}.png" if out_dir is not None else None)
    return figs


def plot_pareto(points: Sequence[tuple[str, float, float]], front: Sequence[str], pick: str | None,
                min_retention: float, title: str = "", path: Path | None = None) -> Figure:
    """Forgetting against learning: each trial's (id, mean AP_novel, AP_B retention), the Pareto front joined
    by a line, the pick ringed, the retention the pick had to keep dashed."""
    fig = Figure(figsize=(5.5, 4.2))
    ax = fig.subplots()
    on = [p for p in points if p[0] in front]
    off = [p for p in points if p[0] not in front]
    if off:
        ax.scatter([p[2] * 100 for p in off], [p[1] * 100 for p in off], s=22, color="tab:gray", label="trials")
    if on:
        on = sorted(on, key=lambda p: p[2])
        ax.plot([p[2] * 100 for p in on], [p[1] * 100 for p in on], "o-", color="tab:blue", label="Pareto front")
    for tid, novel, ret in points:
        if tid == pick:
            ax.scatter([ret * 100], [novel * 100], s=140, facecolors="none", edgecolors="tab:red", linewidths=2,
                       label="the pick")
    ax.axvline(min_retention * 100, ls="--", color="tab:red", lw=1)
    ax.set(xlabel="AP_B retention (% of the base model's)", ylabel="AP_novel (points)",
           title=title or "AP_novel against AP_B retention")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_grid_configs(summary: Mapping[str, Mapping[str, Any]], title: str = "", path: Path | None = None) -> Figure:
    """A recorded grid's configs (``sweeps.core.grid_summary.summarize_grid``): one panel per K, configs by val
    mean (best left), val and test AP_all means with their 95% t intervals; the authors' defaults' test mean
    as a dashed line."""
    fig = Figure(figsize=(max(6.0, 0.55 * max(len(s["configs"]) for s in summary.values()) + 2), 3.2 * len(summary)))
    axes = fig.subplots(len(summary), 1, squeeze=False)[:, 0]
    for ax, (k, s) in zip(axes, summary.items()):
        rows = s["configs"]
        order = by_val(rows)
        x = np.arange(len(order))
        for side, dx, colour in (("val", -0.12, "tab:blue"), ("test", 0.12, "tab:orange")):
            mean = np.array([100 * rows[c][side]["mean"] for c in order])
            low = np.array([100 * rows[c][side]["ci95_low"] for c in order])
            high = np.array([100 * rows[c][side]["ci95_high"] for c in order])
            err = np.nan_to_num(np.vstack([mean - low, high - mean]))
            ax.errorbar(x + dx, mean, yerr=err, fmt="o", ms=4, capsize=2, color=colour, label=side)
        if REFERENCE in rows:
            ax.axhline(100 * rows[REFERENCE]["test"]["mean"], color="grey", ls="--", lw=0.8,
                       label="authors' defaults, test")
        ax.set_xticks(x, order, rotation=30, fontsize=8)
        ax.set(ylabel="AP_all (points)", title=f"K = {k}: {len(s['seeds'])} seeds, mean and 95% interval")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)
