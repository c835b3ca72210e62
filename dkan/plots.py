"""Figures of a sweep and its selected model, as PNG files.

Each ``plot_*`` function returns a matplotlib ``Figure`` and, given ``path``, saves it as PNG.
Figures are built on ``matplotlib.figure.Figure`` (the Agg canvas), never through pyplot's global
state, so they work headless and never open windows; only the Optuna plots go through pyplot
(Optuna draws there) and are detached from it before being returned.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from dkan.data.coco import CocoDict, ImageRecord, coco_bbox_to_xyxy
from dkan.names import HPARAMS

# a colour per class (tab10), as RGB bytes for PIL and [0, 1] for matplotlib
PALETTE = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]


def _save(fig: Figure, path: Path | None, dpi: int = 110) -> Figure:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, bbox_inches="tight", format="png")
    return fig


def colour(name: str, classes: Sequence[str]) -> tuple[int, int, int]:
    i = list(classes).index(name) if name in classes else zlib.crc32(name.encode())  # stable across processes
    return PALETTE[i % len(PALETTE)]


# ---------------------------------------------------------------- boxes on images


def draw_boxes(
    image: np.ndarray,
    boxes: Sequence[Sequence[float]],
    names: Sequence[str],
    scores: Sequence[float] | None = None,
    classes: Sequence[str] = (),
) -> Image.Image:
    """An HxWx3 uint8 image with xyxy boxes, each labelled with its class name (and score)."""
    pic = Image.fromarray(np.ascontiguousarray(image)).convert("RGB")
    draw = ImageDraw.Draw(pic)
    font = ImageFont.load_default(size=max(10, min(pic.size) // 20))
    width = max(1, min(pic.size) // 120)
    for k, (box, name) in enumerate(zip(boxes, names)):
        rgb = colour(name, classes)
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle([x1, y1, x2, y2], outline=rgb, width=width)
        text = name if scores is None else f"{name} {scores[k]:.2f}"
        tx1, ty1, tx2, ty2 = draw.textbbox((x1, y1), text, font=font)
        ty = y1 - (ty2 - ty1) - 2 if y1 - (ty2 - ty1) - 2 >= 0 else y1  # above the box when there is room
        draw.rectangle([x1, ty, x1 + (tx2 - tx1) + 4, ty + (ty2 - ty1) + 2], fill=rgb)
        draw.text((x1 + 2, ty - (ty1 - y1)), text, fill=(255, 255, 255), font=font)
    return pic


@dataclass
class Sample:
    """One image with its ground truth and detections (names, xyxy pixels)."""

    image: np.ndarray  # HxWx3 uint8
    title: str
    gt_boxes: list[list[float]]
    gt_names: list[str]
    det_boxes: list[list[float]]
    det_names: list[str]
    det_scores: list[float]


def samples_from_records(
    records: Sequence[ImageRecord], detections: Sequence[dict], classes: Sequence[str], score_thresh: float = 0.3
) -> list[Sample]:
    """Samples of ``records`` with their COCO-result ``detections`` (category id i is classes[i - 1])."""
    from dkan.predict import display_image, read_image

    by_image: dict[int, list[dict]] = {}
    for d in detections:
        if d["score"] >= score_thresh:
            by_image.setdefault(int(d["image_id"]), []).append(d)
    out = []
    for r in records:
        dets = sorted(by_image.get(r.image_id, []), key=lambda d: d["score"])  # best drawn last, on top
        out.append(
            Sample(
                display_image(read_image(r.path)),
                Path(r.path).name,
                [list(b) for b in r.boxes],
                list(r.labels),
                [list(coco_bbox_to_xyxy(d["bbox"])) for d in dets],
                [classes[d["category_id"] - 1] for d in dets],
                [float(d["score"]) for d in dets],
            )
        )
    return out


def plot_detections_vs_gt(samples: Sequence[Sample], classes: Sequence[str] = (), path: Path | None = None) -> Figure:
    """Two panels per image, ground truth left and detections right (the paper's visualisation)."""
    n = max(1, len(samples))
    fig = Figure(figsize=(7, 3.5 * n))
    axes = fig.subplots(n, 2, squeeze=False)
    for row, s in zip(axes, samples):
        row[0].imshow(draw_boxes(s.image, s.gt_boxes, s.gt_names, None, classes))
        row[0].set_title(f"{s.title}: ground truth", fontsize=9)
        row[1].imshow(draw_boxes(s.image, s.det_boxes, s.det_names, s.det_scores, classes))
        row[1].set_title(f"{s.title}: detections ({len(s.det_boxes)})", fontsize=9)
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------- precision-recall


@dataclass
class PRCurve:
    recall: np.ndarray  # COCO's 101 recall thresholds, up to the largest recall reached
    precision: np.ndarray  # interpolated precision at each
    ap: float  # AP at the IoU (101-point, as dkan.evaluation.coco_ap reports it)
    n_gt: int


def pr_curves(gt: CocoDict, detections: Sequence[dict], iou: float = 0.5) -> dict[str, PRCurve]:
    """Per-class precision-recall curves from COCOeval's ``eval['precision']`` (area all, 100 dets).

    Classes without ground truth are left out; a class with ground truth but no detections gets
    an empty curve and AP 0."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    names = {c["id"]: c["name"] for c in gt["categories"]}
    n_gt = {c: sum(1 for a in gt["annotations"] if a["category_id"] == c) for c in names}
    empty = {names[c]: PRCurve(np.zeros(0), np.zeros(0), 0.0, n) for c, n in n_gt.items() if n}
    if not detections or not empty:
        return empty
    api = COCO()
    api.dataset = {
        "images": gt["images"],
        "categories": gt["categories"],
        "annotations": [
            {**a, "iscrowd": a.get("iscrowd", 0), "area": a.get("area", a["bbox"][2] * a["bbox"][3])}
            for a in gt["annotations"]
        ],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        api.createIndex()
        ev = COCOeval(api, api.loadRes([dict(d) for d in detections]), iouType="bbox")
        ev.params.iouThrs = np.array([iou])
        ev.evaluate()
        ev.accumulate()
    rec_thrs = ev.params.recThrs
    out = {}
    for k, cat in enumerate(ev.params.catIds):
        if not n_gt.get(cat):
            continue
        p = ev.eval["precision"][0, :, k, 0, -1]  # [iou, recall, class, area=all, maxDets=100]
        reached = float(ev.eval["recall"][0, k, 0, -1])
        if (p < 0).any() or reached <= 0:  # no detection of this class matched: nothing to draw
            out[names[cat]] = empty[names[cat]]
            continue
        upto = rec_thrs <= reached + 1e-9
        out[names[cat]] = PRCurve(rec_thrs[upto], p[upto], float(p.mean()), n_gt[cat])
    return out


def plot_pr_curves(
    curves: Mapping[str, PRCurve], title: str = "", path: Path | None = None, iou: float = 0.5
) -> Figure:
    """All classes on one axes, AP in the legend."""
    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    classes = list(curves)
    for name, c in curves.items():
        rgb = [v / 255 for v in colour(name, classes)]
        ax.plot(c.recall, c.precision, color=rgb, lw=1.8, label=f"{name} (AP50 {c.ap * 100:.1f}, {c.n_gt} gt)")
    ax.set(
        xlim=(0, 1.01),
        ylim=(0, 1.02),
        xlabel="recall",
        ylabel="precision",
        title=title or f"precision-recall at IoU {iou:g}",
    )
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------- sweep results


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
    return _save(fig, path)


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
    return _save(fig, path)


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
        figs[name] = _save(fig, Path(out_dir) / f"{prefix}_{name}.png" if out_dir is not None else None)
    return figs
