"""Figures of a detector's results, as PNG files: boxes on images, detections beside ground truth,
per-class precision-recall curves. (A sweep's own figures: ``sweeps.outputs.plots``.)

Each ``plot_*`` function returns a matplotlib ``Figure`` and, given ``path``, saves it as PNG.
Figures are built on ``matplotlib.figure.Figure`` (the Agg canvas), never through pyplot's global
state, so they work headless and never open windows.
"""

from __future__ import annotations

import contextlib
import io
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from dkan.data.coco import CocoDict, ImageRecord, coco_bbox_to_xyxy
from dkan.data.images import display_image, read_image

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


def save_figure(fig: Figure, path: Path | None, dpi: int = 110) -> Figure:
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
    return save_figure(fig, path)


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
    return save_figure(fig, path)
