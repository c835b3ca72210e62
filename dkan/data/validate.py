"""One validation path for every reader: images decode, boxes are sane, names are unique.

Policy (documented in README, "Data checks"):
- a box with zero or negative width/height is an error;
- a box reaching outside the image is clipped to it with a warning; a box wholly outside
  (nothing left after clipping) is an error;
- the image's real size wins over a declared one that disagrees (warning);
- missing or undecodable images, unknown category ids, duplicate image names or ids, and an
  empty dataset are errors.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from dkan.data.coco import CocoDict
from dkan.errors import DataError

log = logging.getLogger(__name__)

Origin = Callable[[dict], str]  # image dict -> the file to name in an error about it


def clip_box(
    box: tuple[float, float, float, float], width: int, height: int, where: str
) -> tuple[tuple[float, float, float, float], bool]:
    """Validate one xyxy box; return it clipped to the image and whether clipping happened."""
    x1, y1, x2, y2 = box
    if not x2 > x1 or not y2 > y1:
        raise DataError(
            where, f"box {list(box)} (xyxy) has zero or negative area",
            "fix or delete this box in the annotation file",
        )
    c = (max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2))
    if not (c[2] > c[0] and c[3] > c[1]):
        raise DataError(
            where, f"box {list(box)} (xyxy) lies wholly outside the {width}x{height} image",
            "fix the box coordinates or the image size in the annotation file",
        )
    clipped = c != (x1, y1, x2, y2)
    if clipped:
        log.warning("%s: box %s reaches outside the %dx%d image; clipped to %s", where, list(box), width, height, list(c))
    return c, clipped


def image_size(path: Path, where: str) -> tuple[int, int]:
    """Decode the image fully (so truncated or corrupt files fail here, not mid-training)."""
    if not path.is_file():
        raise DataError(where, f"image file {path} not found", "restore the image or remove its annotation")
    try:
        with Image.open(path) as im:
            im.load()
            return im.size
    except Exception as e:  # PIL raises several types for corrupt data
        raise DataError(where, f"image file {path} cannot be decoded ({e})", "replace the corrupt image or remove it and its annotation") from e


def validate_coco(coco: CocoDict, image_root: Path, source: str, origin: Origin | None = None, check_images: bool = True) -> CocoDict:
    """Check a COCO dict against its images; return a copy with out-of-image boxes clipped."""
    origin = origin or (lambda im: f"{source} (image id {im.get('id')}, {im.get('file_name')})")
    if not coco["images"]:
        raise DataError(source, "the dataset is empty (no images)", "point --source at a folder or file that holds annotated images")
    _check_unique(coco, source, origin)
    coco = copy.deepcopy(coco)
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    images = {im["id"]: im for im in coco["images"]}
    if check_images:
        for im in coco["images"]:
            w, h = image_size(Path(image_root) / im["file_name"], origin(im))
            if (im.get("width"), im.get("height")) != (w, h):
                log.warning("%s: declared size %sx%s differs from the image's %dx%d; using the image's", origin(im), im.get("width"), im.get("height"), w, h)
                im["width"], im["height"] = w, h
    for a in coco["annotations"]:
        im = images.get(a["image_id"])
        if im is None:
            raise DataError(source, f"annotation {a.get('id')} refers to image id {a['image_id']}, which is not listed", "remove the annotation or add its image")
        if a["category_id"] not in cats:
            raise DataError(origin(im), f"unknown category id {a['category_id']} (known: {sorted(cats)})", "fix the category_id or add the category")
        x, y, w, h = (float(v) for v in a["bbox"])
        box, clipped = clip_box((x, y, x + w, y + h), int(im["width"]), int(im["height"]), origin(im))
        if clipped:
            a["bbox"] = [box[0], box[1], box[2] - box[0], box[3] - box[1]]
            a["area"] = a["bbox"][2] * a["bbox"][3]
    return coco


def _check_unique(coco: CocoDict, source: str, origin: Origin) -> None:
    seen_ids: dict[int, dict] = {}
    seen_names: dict[str, dict] = {}
    for im in coco["images"]:
        if im["id"] in seen_ids:
            raise DataError(origin(im), f"duplicate image id {im['id']} (also {origin(seen_ids[im['id']])})", "give every image a unique id")
        key = str(im["file_name"]).lower()
        if key in seen_names:
            raise DataError(
                origin(im), f"duplicate image name {im['file_name']!r} (also {origin(seen_names[key])})",
                "rename or remove one of the two images (names must be unique, ignoring case)",
            )
        seen_ids[im["id"]], seen_names[key] = im, im
    names = [c["name"] for c in coco["categories"]]
    if len(set(names)) != len(names) or len({c["id"] for c in coco["categories"]}) != len(names):
        raise DataError(source, f"duplicate category names or ids in {names}", "list each class once")
