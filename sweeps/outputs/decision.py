"""A study's decision in one picture, ``OUT/plots/<key>/decision.png`` (top of the report; logged to the
study's MLflow run with its other plots): one row per candidate, simplest first, its paired difference
against the one standing when the rule compared it (``sweeps.core.selection.recommend``), with the 95% t
interval, on the selection split (where the rule decided) beside the same pair on test (which only
confirms). The first candidate stands without a comparison; the recommended row is highlighted.

``decision_rows`` is the picture's data (what tests check); ``plot_decision`` draws rows; both read the
study's typed outcome only (nothing is evaluated again).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dkan.evaluation.stats import paired
from dkan.names import metric_key
from sweeps.core.layout import RunLayout
from sweeps.core.outcome import PerRow, StudyOutcome
from sweeps.core.plan import Plan
from sweeps.core.selection import Selection
from sweeps.core.shape import LABELS

DECISION_PNG = "decision.png"  # under plots/<key>/; the report puts it at its top


@dataclass(frozen=True)
class DecisionRow:
    """One candidate in the picture: its difference against the one standing, on val and on test."""

    candidate: str  # tfa | plain | dkan_defaults | dkan
    against: str | None  # the one standing when it was compared (None: the first, it stood without one)
    selection: Mapping[str, Any] | None  # stats.paired(candidate, against) on the selection split (the rule's)
    test: Mapping[str, Any] | None  # the same pair on test
    replaced: bool  # it replaced the one standing
    recommended: bool


def decision_rows(selection: Selection, per_row: PerRow, test_metric: str = "AP_all") -> list[DecisionRow]:
    """The rule's steps as rows, the first candidate first; test differences of the same pairs from
    ``per_row`` ({row: {seed: metrics}}, ``test_metric`` of each seed; None where a row has no test runs)."""
    def col(row: str) -> dict[int, float]:
        return {int(s): m.get(test_metric, math.nan) for s, m in per_row[row].items()}

    first = next(iter(selection.candidates))
    rows = [DecisionRow(first, None, None, None, False, first == selection.recommended)]
    for st in selection.steps:
        both = {st.challenger, st.incumbent} <= set(per_row)
        test = paired(col(st.challenger), col(st.incumbent)) if both else None
        rows.append(DecisionRow(st.challenger, st.incumbent, st.diff, test, st.replaced,
                                st.challenger == selection.recommended))
    return rows


def _rgb(i: int) -> tuple[float, float, float]:
    from dkan.plots import PALETTE

    r, g, b = PALETTE[i]
    return r / 255, g / 255, b / 255


GREEN, GREY, BLUE, RED, GOLD = _rgb(2), _rgb(7), _rgb(0), _rgb(3), (1.0, 0.93, 0.6)
BOX = {"fc": "white", "ec": "none", "alpha": 0.8, "pad": 1}  # text stays readable over the lines


def _short(name: str) -> str:
    return LABELS.get(name, name).split(" (DKAN's")[0]


def _label(row: DecisionRow) -> str:
    name = textwrap.fill(LABELS.get(row.candidate, row.candidate), 26)
    if row.against is None:
        return f"{name}\n(stands first)"
    return f"{name}\nminus {textwrap.fill(LABELS.get(row.against, row.against), 26)}"


def _points(d: Mapping[str, Any] | None) -> tuple[float, float, float]:
    """(mean, low, high) of a paired difference in AP points (NaN where undefined)."""
    if not d:
        return math.nan, math.nan, math.nan
    mean, low, high = (float(d.get(k, math.nan)) * 100 for k in ("mean_diff", "ci95_low", "ci95_high"))
    return mean, low, high


def _draw_panel(ax: Any, rows: Sequence[DecisionRow], side: str, margin_pts: float) -> None:
    """One panel: a marker and its interval per row (row 0 at the top), 0 and the margin marked."""
    ax.axvline(0, color="black", lw=1)
    ax.axvline(margin_pts, color=RED, lw=1, ls="--")
    for y, row in enumerate(rows):
        d = row.selection if side == "selection" else row.test
        mean, low, high = _points(d)
        if row.against is None:
            ax.text(0, y, "  stands first (0 by definition)", va="center", fontsize=8, color=GREY, bbox=BOX)
            continue
        if not math.isfinite(mean):
            ax.text(0, y, "  n/a (no seeds both ran)", va="center", fontsize=8, color=GREY, bbox=BOX)
            continue
        colour = (GREEN if row.replaced else GREY) if side == "selection" else BLUE
        if math.isfinite(low) and math.isfinite(high):
            ax.plot([low, high], [y, y], color=colour, lw=2.5, solid_capstyle="butt")
        ax.plot([mean], [y], "o", color=colour, ms=7, zorder=3)
        ci = f" ({low:.1f} to {high:.1f})" if math.isfinite(low) else " (no interval: 1 seed)"
        said = "" if side != "selection" else (f"; replaces {_short(row.against)}" if row.replaced
                                               else f"; {_short(row.against)} stays")
        ax.annotate(f"{mean:+.1f}{ci}, {d['n']} seeds{said}", (mean, y), xytext=(0, 10), textcoords="offset points",
                    ha="center", fontsize=7.5, bbox=BOX)
    ax.grid(axis="x", alpha=0.3)


def plot_decision(rows: Sequence[DecisionRow], margin: float, select_split: str = "val", test_metric: str = "AP_all",
                  title: str = "", path: Path | None = None) -> Any:
    """The rows as a forest plot: the selection split's panel (the rule: gain at least ``margin``, a
    fraction, with the interval above 0) beside test's; the recommended row on a gold band."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from dkan.plots import save_figure

    margin_pts = margin * 100
    fig = Figure(figsize=(12, 1.6 + 0.95 * len(rows)))
    axes = fig.subplots(1, 2, sharey=True)
    ends = [v for r in rows for d in (r.selection, r.test) for v in _points(d) if math.isfinite(v)]
    lo, hi = min([0.0, margin_pts, *ends]), max([0.0, margin_pts, *ends])
    pad = max(1.0, 0.15 * (hi - lo))
    names = {"selection": f"{select_split}: the rule decides", "test": "test: confirms or not (never chooses)"}
    metrics = {"selection": "AP_all", "test": test_metric}
    for ax, side in zip(axes, ("selection", "test")):
        for y, row in enumerate(rows):
            if row.recommended:
                ax.axhspan(y - 0.45, y + 0.45, color=GOLD, zorder=0)
        _draw_panel(ax, rows, side, margin_pts)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set(title=names[side], xlabel=f"paired difference in {metrics[side]} (AP50 points)")
    axes[0].set_yticks(range(len(rows)), [_label(r) for r in rows], fontsize=8)
    axes[0].set_ylim(len(rows) - 0.5, -0.6)  # simplest first, at the top
    for tick, row in zip(axes[0].get_yticklabels(), rows):
        tick.set_fontweight("bold" if row.recommended else "normal")
    handles = [Line2D([], [], color=GREEN, marker="o", lw=2.5, label=f"{select_split}: replaced the one standing"),
               Line2D([], [], color=GREY, marker="o", lw=2.5, label=f"{select_split}: the one standing stayed"),
               Line2D([], [], color=BLUE, marker="o", lw=2.5, label="test: the same pair"),
               Line2D([], [], color="black", lw=1, label="0: no difference"),
               Line2D([], [], color=RED, lw=1, ls="--", label=f"margin +{margin_pts:g}: the least gain the rule takes"),
               Patch(color=GOLD, label="recommended")]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(title or "each candidate minus the one standing when it was compared (mean, 95% CI)", fontsize=10)
    fig.tight_layout(rect=(0, 0.1 if len(rows) > 2 else 0.16, 1, 1))
    return save_figure(fig, path)


def write_decision(plan: Plan, layout: RunLayout, outcome: StudyOutcome) -> Path:
    """``plots/<key>/decision.png`` of a ``StudyOutcome``."""
    sel, key = outcome.selection, outcome.key
    metric = metric_key("AP_all", plan.metric)
    rows = decision_rows(sel, outcome.per_row, metric)
    path = layout.plots(key) / DECISION_PNG
    title = (f"{key}: which candidate ships, and why: each minus the one standing when it was compared "
             f"(paired over seeds, mean and 95% CI)" + ("; the rule reads mean - 1 SE" if sel.rule == "se1" else ""))
    plot_decision(rows, sel.margin, plan.select_split, metric, title, path)
    return path
