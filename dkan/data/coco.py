"""COCO-format helpers: the in-memory form every reader produces and every split file uses.

A dataset here is a COCO dict (``images``, ``annotations``, ``categories``) plus the folder its
``file_name`` entries are relative to. Extra keys in the authors' files are kept untouched so the
few-shot files we write are byte-identical to theirs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from dkan.errors import DataError

CocoDict = dict[str, Any]


@dataclass(frozen=True)
class ImageRecord:
    """One image and its boxes: the record format the torch Dataset consumes."""

    path: Path
    width: int
    height: int
    boxes: tuple[tuple[float, float, float, float], ...]  # xyxy, pixels
    labels: tuple[str, ...]  # class name per box
    image_id: int


def class_names(coco: CocoDict) -> list[str]:
    """Category names in category-id order."""
    return [c["name"] for c in sorted(coco["categories"], key=lambda c: c["id"])]


def make_categories(names: Iterable[str]) -> list[dict[str, Any]]:
    """COCO categories with ids 1..N in the given order (the authors' form)."""
    return [{"supercategory": "none", "id": i, "name": n} for i, n in enumerate(names, start=1)]


def coco_bbox_to_xyxy(bbox: list[float]) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in bbox)
    return (x, y, x + w, y + h)


def load_coco_json(path: Path) -> CocoDict:
    """Read a COCO JSON file, with a clear error for unreadable or wrongly shaped files."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a COCO JSON file" if path.is_dir() else "file not found"
        raise DataError(str(path), what, "check the path (a COCO JSON file is expected)")
    try:
        coco = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(str(path), f"not valid JSON ({e})", "regenerate or repair the file") from e
    except OSError as e:
        raise DataError(str(path), f"cannot be read ({e.strerror or e})", "check the path and its permissions") from e
    fix = "give a COCO JSON object with the lists 'images', 'annotations' and 'categories'"
    if not isinstance(coco, dict):
        raise DataError(str(path), f"not a COCO detection file (the top level is a {type(coco).__name__})", fix)
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(coco.get(k), list)]
    if missing:
        raise DataError(str(path), f"not a COCO detection file (missing lists: {', '.join(missing)})", fix)
    return coco


def dumps_coco(coco: CocoDict) -> str:
    """Serialise as the authors' files are: ``json.dump(..., indent=4)``."""
    return json.dumps(coco, indent=4)


def subset(coco: CocoDict, image_ids: Iterable[int]) -> CocoDict:
    """The images with these ids (in the given order) and all their annotations."""
    ids = list(image_ids)
    by_id = {im["id"]: im for im in coco["images"]}
    keep = set(ids)
    return {
        "images": [by_id[i] for i in ids],
        "annotations": [a for a in coco["annotations"] if a["image_id"] in keep],
        "categories": coco["categories"],
    }


def image_path(image_root: Path, file_name: str, where: str) -> Path:
    """``image_root / file_name``; a name that leaves the image folder (absolute, or ``..`` past its top) is
    refused as such, never opened."""
    norm = os.path.normpath(file_name)
    if os.path.isabs(file_name) or norm == ".." or norm.startswith(".." + os.sep):
        raise DataError(where, f"image file name {file_name[:200]!r} leaves the image folder {image_root}",
                        "give each image's file name relative to the image folder, inside it (no leading / or ..)")
    return Path(image_root) / file_name


def to_records(coco: CocoDict, image_root: Path) -> list[ImageRecord]:
    """COCO dict -> records (image path, size, xyxy boxes, class names), in image order."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    per_image: dict[int, list[dict[str, Any]]] = {im["id"]: [] for im in coco["images"]}
    for a in coco["annotations"]:
        per_image[a["image_id"]].append(a)
    return [
        ImageRecord(
            path=image_path(image_root, im["file_name"], f"image id {im['id']} of the annotations under {image_root}"),
            width=int(im["width"]),
            height=int(im["height"]),
            boxes=tuple(coco_bbox_to_xyxy(a["bbox"]) for a in per_image[im["id"]]),
            labels=tuple(names[a["category_id"]] for a in per_image[im["id"]]),
            image_id=im["id"],
        )
        for im in coco["images"]
    ]
