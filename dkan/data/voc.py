"""Pascal VOC folder reader (the NEU-DET layout: ``IMAGES/`` and ``ANNOTATIONS/``).

Survives NEU-DET's quirks: the image is found from the XML file's own stem (174 files give a
``<filename>`` without ".jpg" or with another stem), ``<depth>`` is ignored (JPEGs decode as 3
channels whatever it says), and class names come from ``<name>``, never from splitting the file
name (``rolled-in_scale`` holds a hyphen and an underscore).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

from dkan.data.coco import CocoDict, make_categories
from dkan.data.fewshot import class_file_part
from dkan.data.validate import Origin, validate_coco
from dkan.errors import DataError

ANNOTATION_DIRS = ("ANNOTATIONS", "Annotations", "annotations")
IMAGE_DIRS = ("IMAGES", "JPEGImages", "images")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".JPG", ".JPEG", ".PNG", ".BMP", ".TIF", ".TIFF")


def find_layout(folder: Path) -> tuple[Path, Path]:
    """Return (annotation dir, image dir) of a VOC-style folder."""
    folder = Path(folder)
    ann = next((folder / d for d in ANNOTATION_DIRS if (folder / d).is_dir()), None)
    img = next((folder / d for d in IMAGE_DIRS if (folder / d).is_dir()), None)
    if ann is None or img is None:
        raise DataError(
            str(folder), "not a VOC folder (expected sub-folders IMAGES/ and ANNOTATIONS/)",
            "point --source at a folder laid out like NEU-DET, or at a COCO JSON file",
        )
    return ann, img


def load_voc(
    folder: Path, classes: list[str] | None = None, check_images: bool = True
) -> tuple[CocoDict, Path, Origin]:
    """Read a VOC folder into a validated COCO dict (ids 1..N in file-name order).

    ``classes`` fixes the class list and order; a name outside it is an error. Without it the
    classes found are used, sorted (for NEU-DET that is the authors' category order).
    Returns (coco, image dir, origin) where origin names an image's XML file for error messages.
    """
    ann_dir, img_dir = find_layout(folder)
    xmls = sorted(ann_dir.glob("*.xml"))
    parsed = [(x, *_parse_xml(x)) for x in xmls]
    found = sorted({name for _, _, objs in parsed for name, _ in objs})
    names = list(classes) if classes is not None else found
    for name in classes or ():
        class_file_part(name, "--classes")
    cat_id = {n: i for i, n in enumerate(names, start=1)}
    images, annotations, xml_of = [], [], {}
    for image_id, (xml, size, objs) in enumerate(parsed, start=1):
        file_name = _image_file(xml, img_dir)
        images.append({"file_name": file_name, "height": size[1], "width": size[0], "id": image_id})
        xml_of[image_id] = str(xml)
        for name, (x1, y1, x2, y2) in objs:
            if name not in cat_id:
                raise DataError(
                    str(xml), f"unknown class name {name!r} (known: {', '.join(names)})",
                    "correct the <name> in this file, or pass the full class list with --classes",
                )
            annotations.append({
                "area": (x2 - x1) * (y2 - y1), "iscrowd": 0, "image_id": image_id,
                "bbox": [x1, y1, x2 - x1, y2 - y1], "category_id": cat_id[name], "id": len(annotations) + 1,
            })
    coco = {"images": images, "annotations": annotations, "categories": make_categories(names)}
    origin: Origin = lambda im: xml_of.get(im["id"], str(folder))  # noqa: E731
    return validate_coco(coco, img_dir, str(ann_dir), origin, check_images), img_dir, origin


def _parse_xml(xml: Path) -> tuple[tuple[int, int], list[tuple[str, tuple[float, float, float, float]]]]:
    if not xml.is_file():
        raise DataError(
            str(xml), "is a folder, not an annotation file", "move or rename it: ANNOTATIONS/ may hold only .xml files"
        )
    try:
        root = ET.parse(xml).getroot()
    except ET.ParseError as e:
        raise DataError(str(xml), f"malformed XML ({e})", "repair the file or remove it together with its image") from e
    except OSError as e:
        raise DataError(str(xml), f"cannot be read ({e.strerror or e})", "make the file readable or remove it") from e
    try:
        size = (_number(root, "size/width", positive=True), _number(root, "size/height", positive=True))
        objs = []
        for o in root.iter("object"):
            box = tuple(_number(o, f"bndbox/{k}") for k in ("xmin", "ymin", "xmax", "ymax"))
            objs.append((class_file_part(o.findtext("name").strip(), str(xml)), box))
    except DataError:  # a bad class name: its own message, not the <bndbox> one below
        raise
    except (TypeError, ValueError, AttributeError) as e:
        raise DataError(
            str(xml), f"missing or non-numeric (or non-finite) <size> or <bndbox> field ({e})",
            "every object needs <name> and numeric <bndbox> xmin/ymin/xmax/ymax; <size> needs width/height",
        ) from e
    return (int(size[0]), int(size[1])), objs


def _number(node: ET.Element, tag: str, positive: bool = False) -> float:
    """A finite number from ``<tag>``; ``inf``/``nan`` (which float() accepts) raise ValueError."""
    value = float(node.findtext(tag))
    if not math.isfinite(value) or (positive and value < 1):
        kind = "a finite positive" if positive else "a finite"
        raise ValueError(f"<{tag.rsplit('/', 1)[-1]}> is {value}, expected {kind} number")
    return value


def _image_file(xml: Path, img_dir: Path) -> str:
    """The image of an XML file: same stem first (NEU-DET's <filename> is unreliable)."""
    for ext in IMAGE_EXTS:
        if (img_dir / (xml.stem + ext)).is_file():
            return xml.stem + ext
    declared = (ET.parse(xml).getroot().findtext("filename") or "").strip()
    for cand in (declared, declared + ".jpg"):
        if cand and (img_dir / cand).is_file():
            return cand
    raise DataError(
        str(xml), f"image file not found (looked for {img_dir / (xml.stem + '.jpg')} and <filename> {declared!r})",
        "restore the image, or remove this annotation file",
    )
