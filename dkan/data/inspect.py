"""`dkan inspect-data`: look at a prepared dataset before training.

Prints images/boxes per class and split, image sizes, box sizes, images holding several classes
and defect-free images; warns about what will hurt training:
- boxes smaller than TINY_PX (sqrt area) once the image is resized to the input size (the FPN's
  finest level has stride 4 and its smallest anchor is 8 px or more);
- classes in fewer trainval images than the largest K (the K-shot sampler cannot serve them);
- heavy imbalance (IMBALANCE times more boxes in the largest class than in the smallest).
``--out PNG`` writes histograms (matplotlib, Agg backend: no display needed).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from dkan.data.coco import CocoDict, class_names
from dkan.data.images import check_image
from dkan.data.prepared import SPLITS, PreparedData

TINY_PX = 8.0
TINY_SHARE = 0.05  # warn when more than this share of a class's boxes end up tiny
IMBALANCE = 10.0
SHOWN_SPLITS = ("train", "val", "test")


@dataclass
class InspectReport:
    text: str
    warnings: list[str] = field(default_factory=list)


def _per_class(coco: CocoDict) -> tuple[Counter, Counter]:
    names = {c["id"]: c["name"] for c in coco["categories"]}
    boxes = Counter(names[a["category_id"]] for a in coco["annotations"])
    images = Counter(names[c] for _, c in {(a["image_id"], a["category_id"]) for a in coco["annotations"]})
    return images, boxes


def _resized_box_sizes(coco: CocoDict, min_size: int, max_size: int | None) -> dict[str, list[float]]:
    """Per class: sqrt box area after torchvision's resize (shorter side to min_size, longer <= max_size)."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    scale = {}
    for im in coco["images"]:
        s = min_size / min(im["width"], im["height"])
        scale[im["id"]] = min(s, max_size / max(im["width"], im["height"])) if max_size else s
    out: dict[str, list[float]] = {n: [] for n in names.values()}
    for a in coco["annotations"]:
        out[names[a["category_id"]]].append(math.sqrt(a["bbox"][2] * a["bbox"][3]) * scale[a["image_id"]])
    return out


def _multi_class_and_empty(coco: CocoDict) -> tuple[list[str], list[str]]:
    cats: dict[int, set] = {im["id"]: set() for im in coco["images"]}
    for a in coco["annotations"]:
        cats[a["image_id"]].add(a["category_id"])
    name = {im["id"]: im["file_name"] for im in coco["images"]}
    return [name[i] for i, c in cats.items() if len(c) > 1], [name[i] for i, c in cats.items() if not c]


def inspect_data(
    root: Path, out_png: Path | None = None, min_size: int | None = None, shots: int | None = None
) -> InspectReport:
    """Summary text and warnings for a prepared dataset; optionally a PNG of histograms."""
    data = PreparedData.load(Path(root))
    meta = data.manifest()
    splits = {s: data.split(s) for s in SPLITS}
    for s in ("trainval", "test"):  # every image (train and val are parts of trainval): there, and within the limit
        for record in data.records(splits[s]):
            check_image(record.path)
    names = class_names(splits["trainval"])
    suggested = meta.get("input_size") or {}
    max_size = None if min_size else suggested.get("max_size")
    min_size = min_size or suggested.get("min_size") or int(min(im["height"] for im in splits["trainval"]["images"]))
    shots = shots or max(meta.get("config", {}).get("shots") or [1])
    lines = [_count_table(splits, names), ""]
    for s in SHOWN_SPLITS:
        multi, empty = _multi_class_and_empty(splits[s])
        lines.append(
            f"{s}: {len(splits[s]['images'])} images, {len(multi)} with several classes, {len(empty)} defect-free"
        )
    st = meta.get("stats") or {}
    if st:
        lines.append(f"image size (trainval): width {st['width']}, height {st['height']}")
        lines.append(f"box size sqrt(area) px (trainval): {st['box_size']}; boxes per image {st['boxes_per_image']}")
    if suggested:
        lines.append(f"suggested input: {suggested.get('reason')}")
    sizes = _resized_box_sizes(splits["trainval"], min_size, max_size)
    warnings = _warnings(splits["trainval"], names, sizes, min_size, shots)
    if out_png:
        plot_histograms(splits["trainval"], sizes, min_size, Path(out_png))
    return InspectReport("\n".join(lines), warnings)


def _count_table(splits: dict[str, CocoDict], names: list[str]) -> str:
    counts = {s: _per_class(splits[s]) for s in SHOWN_SPLITS}
    head = f"{'class':<18}" + "".join(f"{s + ' img/box':>16}" for s in SHOWN_SPLITS)
    rows = [head, "-" * len(head)]
    for n in names:
        rows.append(f"{n:<18}" + "".join(f"{counts[s][0][n]:>9}/{counts[s][1][n]:<6}" for s in SHOWN_SPLITS))
    return "\n".join(rows)


def _warnings(
    trainval: CocoDict, names: list[str], sizes: dict[str, list[float]], min_size: int, shots: int
) -> list[str]:
    out = []
    for n in names:
        tiny = sum(v < TINY_PX for v in sizes[n])
        if sizes[n] and tiny / len(sizes[n]) > TINY_SHARE:
            out.append(
                f"class {n!r}: {tiny} of {len(sizes[n])} boxes are under {TINY_PX:.0f} px at input size {min_size}; "
                "they will mostly be missed. Fix: a larger input size (--set model.min_size=...) or smaller anchors"
            )
    images, boxes = _per_class(trainval)
    for n in names:
        if images[n] < shots:
            out.append(
                f"class {n!r}: in {images[n]} trainval images, fewer than K={shots}. "
                f"Fix: use K up to {images[n]}, or add images"
            )
    present = [boxes[n] for n in names if boxes[n]]
    if present and max(present) >= IMBALANCE * min(present):
        big, small = max(names, key=lambda n: boxes[n]), min(names, key=lambda n: boxes[n])
        out.append(
            f"heavy imbalance: {boxes[big]} boxes of {big!r} vs {boxes[small]} of {small!r} (trainval). "
            "Fix: put the rare classes among the novel ones, or add their images"
        )
    return out


def plot_histograms(coco: CocoDict, sizes: dict[str, list[float]], min_size: int, out: Path) -> None:
    """2x2 figure: resized box sizes per class, box aspect ratios, image sizes, boxes per image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(11, 8))
    bins = [2 ** (i / 2) for i in range(2, 22)]  # 2 px .. ~1 k px, half-octave bins
    ax[0, 0].hist([v for v in sizes.values()], bins=bins, stacked=True, label=list(sizes))
    ax[0, 0].axvline(TINY_PX, color="red", ls="--")
    ax[0, 0].set(xscale="log", title=f"box size sqrt(area) at input {min_size} px", xlabel="px", ylabel="boxes")
    ax[0, 0].legend(fontsize=7)
    aspects = [a["bbox"][2] / a["bbox"][3] for a in coco["annotations"]]
    ax[0, 1].hist(aspects, bins=[2 ** (i / 2) for i in range(-12, 13)])
    ax[0, 1].set(xscale="log", title="box aspect ratio (w/h)", ylabel="boxes")
    ax[1, 0].scatter([im["width"] for im in coco["images"]], [im["height"] for im in coco["images"]], s=8, alpha=0.5)
    ax[1, 0].set(title="image size", xlabel="width px", ylabel="height px")
    per_image = Counter(a["image_id"] for a in coco["annotations"])
    ax[1, 1].hist([per_image.get(im["id"], 0) for im in coco["images"]], bins=30)
    ax[1, 1].set(title="boxes per image (0 = defect-free)", ylabel="images")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
