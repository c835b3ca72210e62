"""Dataset statistics recorded by `dkan prepare-data`, and the input size and anchors they suggest.

``dataset_stats(coco)`` is what ``dataset.yaml`` holds under ``stats`` (computed on trainval, so
the choice never looks at test): image sizes, box sizes (square root of the box area, pixels of
the original image) at the 5th/50th/95th percentile overall and per class, and boxes per image.

``choose_input_size(stats, cap=640)`` turns them into a detector input size and anchors:
- native size (the median shorter side) when it is at most ``cap``: resizing down only loses
  small defects, and up costs compute the CPU profile does not have;
- otherwise the smallest size (a multiple of 32) at which the 5th-percentile box keeps about
  ``min_box`` (16) pixels, never more than ``cap``. ``cap`` = 640 is the default because a
  ResNet-18 FPN step at 640 px costs about ten times one at 200 px on a CPU (NOTES.md); pass a
  larger cap on a GPU;
- five anchor sizes (one per FPN level P2-P6), powers of two, from the largest power of two not
  above the resized 5th-percentile box (at least 8) upward, so they cover the resized 5th-95th
  percentiles when that span fits in five octaves (else the small end wins: small defects are
  the ones that get lost).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dkan.data.coco import CocoDict

PERCENTILES = (5, 50, 95)
DEFAULT_CAP = 640
MIN_BOX_PX = 16
N_LEVELS = 5
MIN_ANCHOR = 8


def _pcts(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {f"p{p}": round(float(np.percentile(values, p)), 1) for p in PERCENTILES}


def _min_med_max(values: list[float]) -> dict[str, float]:
    return {"min": float(min(values)), "median": float(np.median(values)), "max": float(max(values))}


def dataset_stats(coco: CocoDict) -> dict:
    """Image sizes, box sizes (sqrt area; overall and per class) and boxes per image (plain YAML types)."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    per_image = {im["id"]: 0 for im in coco["images"]}
    sizes: dict[str, list[float]] = {n: [] for n in names.values()}
    aspects: list[float] = []
    for a in coco["annotations"]:
        w, h = float(a["bbox"][2]), float(a["bbox"][3])
        sizes[names[a["category_id"]]].append(math.sqrt(w * h))
        aspects.append(w / h)
        per_image[a["image_id"]] += 1
    widths = [float(im["width"]) for im in coco["images"]]
    heights = [float(im["height"]) for im in coco["images"]]
    all_sizes = [s for v in sizes.values() for s in v]
    counts = list(per_image.values())
    return {
        "images": len(coco["images"]),
        "boxes": len(coco["annotations"]),
        "defect_free_images": sum(c == 0 for c in counts),
        "width": _min_med_max(widths),
        "height": _min_med_max(heights),
        "short_side_median": float(np.median([min(w, h) for w, h in zip(widths, heights)])),
        "long_side_median": float(np.median([max(w, h) for w, h in zip(widths, heights)])),
        "box_size": _pcts(all_sizes),
        "box_size_per_class": {n: _pcts(v) for n, v in sizes.items()},
        "box_aspect_w_over_h": _pcts(aspects),
        "boxes_per_image": {**_min_med_max([float(c) for c in counts]), "mean": round(float(np.mean(counts)), 2)},
    }


@dataclass(frozen=True)
class InputSizeChoice:
    """Values for ModelConfig: ``min_size``/``max_size`` (shorter/longer side) and ``anchor_sizes``."""

    min_size: int
    max_size: int
    anchor_sizes: list[int]
    reason: str

    def as_dict(self) -> dict:
        return {
            "min_size": self.min_size,
            "max_size": self.max_size,
            "anchor_sizes": list(self.anchor_sizes),
            "reason": self.reason,
        }


def _round_up(x: float, step: int = 32) -> int:
    return int(math.ceil(x / step) * step)


def anchor_sizes_for(lo_px: float, hi_px: float, levels: int = N_LEVELS) -> list[int]:
    """``levels`` powers of two from the largest one <= ``lo_px`` (at least MIN_ANCHOR) upward."""
    first = max(MIN_ANCHOR, 2 ** int(math.floor(math.log2(max(lo_px, 1.0)))))
    return [first * 2**i for i in range(levels)]


def choose_input_size(stats: dict, cap: int = DEFAULT_CAP, min_box: float = MIN_BOX_PX) -> InputSizeChoice:
    """Input size and anchors from ``dataset_stats`` output; ``reason`` is one line for the plan."""
    short, long_ = stats["short_side_median"], stats["long_side_median"]
    box = stats.get("box_size") or {"p5": short / 8, "p95": short / 2}  # no boxes: a neutral guess
    if short <= cap:
        size = int(round(short))
        why = f"input {size} px: the native size (median shorter side; cap {cap})"
    else:
        need = short * min_box / box["p5"]  # shorter side at which the p5 box keeps min_box px
        size = min(cap, max(_round_up(min(need, short)), 32))
        if need > cap:
            why = (
                f"input {size} px: the cap (the 5th-percentile box, {box['p5']:.0f} px, "
                f"would need {need:.0f} px to keep {min_box:.0f})"
            )
        else:
            why = (
                f"input {size} px: the 5th-percentile box ({box['p5']:.0f} px at {short:.0f}) "
                f"keeps ~{min_box:.0f} px (cap {cap})"
            )
    scale = size / short
    lo, hi = box["p5"] * scale, box["p95"] * scale
    anchors = anchor_sizes_for(lo, hi)
    if lo < MIN_ANCHOR:
        cover = (f"start at {MIN_ANCHOR} px: resized boxes smaller than that will mostly be missed (fix: a larger "
                 "input, --set model.min_size=...)")
    else:
        cover = "cover them" if anchors[-1] >= hi else "do not reach them (small end kept)"
    max_size = int(round(size * long_ / short))
    reason = f"{why}; resized boxes p5-p95 {lo:.0f}-{hi:.0f} px; anchors {anchors} {cover}"
    return InputSizeChoice(size, max_size, anchors, reason)
