"""One validation path for every reader: images decode, boxes are sane, names are unique.

Policy (documented in docs/data.md, "Data checks"):
- a box with zero or negative width/height is an error;
- a box reaching outside the image is clipped to it with a warning; a box wholly outside
  (nothing left after clipping) is an error;
- the image's real size wins over a declared one that disagrees (warning);
- missing or undecodable images, unknown category ids, duplicate image names or ids, and an
  empty dataset are errors;
- shape first (``check_schema``): ids are integers, annotation ids unique, a bbox is 4 finite
  numbers, sizes are finite and positive, a category has a name that is safe in a file name.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from pathlib import Path

from dkan.data.coco import CocoDict, image_path
from dkan.data.fewshot import class_file_part
from dkan.data.images import open_image
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
        log.warning(
            "%s: box %s reaches outside the %dx%d image; clipped to %s", where, list(box), width, height, list(c)
        )
    return c, clipped


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _require(ok: bool, where: str, problem: str, fix: str) -> None:
    if not ok:
        raise DataError(where, problem, fix)


def check_schema(coco: CocoDict, source: str, sizes_required: bool = False) -> None:
    """Every entry has the fields and types later code relies on, so a bad file fails here,
    before any work, and not as a traceback mid-training or at evaluation."""
    for i, im in enumerate(coco["images"]):
        where = f"{source} (images[{i}])"
        _require(isinstance(im, dict), where, f"expected an object, got {im!r}", "make each image an object")
        _require(_is_int(im.get("id")), where, f"image id {im.get('id')!r} is missing or not an integer",
                 "give every image a unique integer id")
        name = im.get("file_name")
        _require(isinstance(name, str) and name != "", where, f"file_name {name!r} is missing or not a string",
                 "give every image its file name relative to the image folder")
        for key in ("width", "height"):
            v = im.get(key)
            _require((v is None and not sizes_required) or (_is_number(v) and v > 0), where,
                     f"{key} {v!r} is not a finite positive number", f"set {key} to the image's size in pixels")
    for i, c in enumerate(coco["categories"]):
        where = f"{source} (categories[{i}])"
        _require(isinstance(c, dict) and _is_int(c.get("id")), where,
                 f"category {c!r} has no integer id", "give every category an integer id and a name")
        _require(isinstance(c.get("name"), str), where, f"category id {c['id']} has no name (got {c.get('name')!r})",
                 "give every category a name")
        class_file_part(c["name"], source)
    seen: dict[int, int] = {}
    for i, a in enumerate(coco["annotations"]):
        where = f"{source} (annotations[{i}])"
        _require(isinstance(a, dict), where, f"expected an object, got {a!r}", "make each annotation an object")
        for key in ("id", "image_id", "category_id"):
            _require(_is_int(a.get(key)), where, f"{key} {a.get(key)!r} is missing or not an integer",
                     f"give every annotation an integer {key}")
        box = a.get("bbox")
        _require(isinstance(box, (list, tuple)) and len(box) == 4 and all(_is_number(v) for v in box), where,
                 f"bbox {box!r} is not 4 finite numbers [x, y, width, height]",
                 "write each bbox as [x, y, width, height] in pixels")
        _require(a["id"] not in seen, where,
                 f"duplicate annotation id {a['id']} (also annotations[{seen.get(a['id'])}])",
                 "give every annotation a unique id (boxes sharing an id would be silently dropped)")
        seen[a["id"]] = i


def image_size(path: Path, where: str) -> tuple[int, int]:
    """Decode the image fully (so truncated or corrupt files fail here, not mid-training)."""
    if not path.is_file():
        raise DataError(where, f"image file {path} not found", "restore the image or remove its annotation")
    try:
        with open_image(path) as im:  # the pixel limit first, from the header
            im.load()
            return im.size
    except DataError:
        raise
    except Exception as e:  # PIL raises several types for corrupt data
        raise DataError(
            where, f"image file {path} cannot be decoded ({e})",
            "replace the corrupt image or remove it and its annotation",
        ) from e


def validate_coco(
    coco: CocoDict, image_root: Path, source: str, origin: Origin | None = None, check_images: bool = True
) -> CocoDict:
    """Check a COCO dict against its images; return a copy with out-of-image boxes clipped."""
    origin = origin or (lambda im: f"{source} (image id {im.get('id')}, {im.get('file_name')})")
    if not coco["images"]:
        raise DataError(
            source, "the dataset is empty (no images)", "point --source at a folder or file that holds annotated images"
        )
    check_schema(coco, source, sizes_required=not check_images)
    _check_unique(coco, source, origin)
    coco = copy.deepcopy(coco)
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    images = {im["id"]: im for im in coco["images"]}
    paths = {im["id"]: image_path(image_root, im["file_name"], origin(im)) for im in coco["images"]}
    if check_images:
        for im in coco["images"]:
            w, h = image_size(paths[im["id"]], origin(im))
            if (im.get("width"), im.get("height")) != (w, h):
                log.warning(
                    "%s: declared size %sx%s differs from the image's %dx%d; using the image's",
                    origin(im), im.get("width"), im.get("height"), w, h,
                )
                im["width"], im["height"] = w, h
    for a in coco["annotations"]:
        im = images.get(a["image_id"])
        if im is None:
            raise DataError(
                source, f"annotation {a.get('id')} refers to image id {a['image_id']}, which is not listed",
                "remove the annotation or add its image",
            )
        if a["category_id"] not in cats:
            raise DataError(
                origin(im), f"unknown category id {a['category_id']} (known: {sorted(cats)})",
                "fix the category_id or add the category",
            )
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
            raise DataError(
                origin(im), f"duplicate image id {im['id']} (also {origin(seen_ids[im['id']])})",
                "give every image a unique id",
            )
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
