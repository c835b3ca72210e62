"""Reading side of `dkan prepare-data`: a prepared dataset folder as the trainer sees it.

``dataset.yaml`` is read here only (``read_manifest``), with the same checks for every command:
a mapping, a class list of safe names, an image folder that exists, named class splits of known
classes; a malformed file is one clear error naming it and the fix, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dkan import yamlio
from dkan.data.coco import CocoDict, ImageRecord, load_coco_json, subset, to_records
from dkan.data.fewshot import load_fewshot
from dkan.data.io import MANIFEST
from dkan.data.splits import ClassSplit, check_class_split
from dkan.errors import DataError, shown
from dkan.names import unsafe_name

SPLITS = ("trainval", "train", "val", "test")
REMAKE = "re-run `dkan prepare-data` for this data set (it rewrites dataset.yaml), or restore the file"


def read_manifest(root: Path) -> dict[str, Any]:
    """``ROOT/dataset.yaml``, checked: the one reader of the file."""
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise DataError(
            str(root), "not a prepared dataset (no dataset.yaml)",
            f"run `dkan prepare-data --source ... --out {root}` first, or, if it was moved, pass its new place "
            "(--data NEW_FOLDER)",
        )
    try:
        meta = yamlio.read(path, "dataset.yaml")  # a python tag or an alias is refused here, never built
    except yamlio.BadYaml as e:
        raise DataError(str(path), f"malformed: {e.problem}", REMAKE) from e
    if not isinstance(meta, dict):
        raise DataError(str(path), f"malformed: a mapping expected, got {type(meta).__name__}", REMAKE)
    for key, kind in (("classes", list), ("image_root", str)):
        if not isinstance(meta.get(key), kind):
            raise DataError(str(path), f"malformed: {key!r} missing or not a {kind.__name__}", REMAKE)
    classes = meta["classes"]
    bad = [c for c in classes if unsafe_name(c)]
    if not classes or bad or len(set(classes)) != len(classes):
        why = f"unsafe names {shown(bad)}" if bad else "duplicates" if classes else "none"
        raise DataError(str(path), f"malformed class list ({why}): {shown(classes)}", REMAKE)
    images = root / meta["image_root"]  # an absolute image_root stays absolute
    if not images.is_dir():
        raise DataError(str(path), f"its image folder {images} does not exist",
                        "put the images back there, or run `dkan prepare-data` again from their new place")
    _check_splits(path, meta.get("class_splits"), classes)
    if meta.get("input_size") is not None and not isinstance(meta["input_size"], dict):
        raise DataError(str(path), "malformed: 'input_size' is not a mapping", REMAKE)
    return meta


def _check_splits(path: Path, named: Any, classes: list[str]) -> None:
    if named in (None, {}):
        return
    if not isinstance(named, dict):
        raise DataError(str(path), "malformed: 'class_splits' is not a mapping of names to splits", REMAKE)
    for name, s in named.items():
        where = f"{path}: class split {name!r}"
        if unsafe_name(name):
            raise DataError(where, f"the name {unsafe_name(name)}; split names become file and folder names", REMAKE)
        if not isinstance(s, dict) or not all(isinstance(s.get(k), list) for k in ("base", "novel")):
            raise DataError(where, "malformed: needs 'base' and 'novel' lists", REMAKE)
        check_class_split(ClassSplit(tuple(s["base"]), tuple(s["novel"])), classes, where)


@dataclass(frozen=True)
class PreparedData:
    root: Path
    image_root: Path
    classes: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def load(cls, root: Path) -> "PreparedData":
        root = Path(root)
        meta = read_manifest(root)
        return cls(root, root / meta["image_root"], tuple(meta["classes"]), meta)

    @property
    def annotations(self) -> Path:
        return self.root / "annotations"

    def split(self, name: str) -> CocoDict:
        if name not in SPLITS:
            raise DataError(f"split {name!r}", "unknown", f"use one of {SPLITS}")
        return load_coco_json(self.annotations / f"{name}.json")

    def fewshot(self, seed: int, shots: int) -> CocoDict:
        """The merged K-shot training set of one seed, over all classes."""
        return load_fewshot(self.annotations, seed, shots, self.classes)

    def records(self, coco: CocoDict) -> list[ImageRecord]:
        """``coco``'s images and boxes, each image checked to exist (a dataset.yaml whose image_root points
        elsewhere fails here, in one line, not as a traceback mid-training)."""
        records = to_records(coco, self.image_root)
        missing = [r.path for r in records if not r.path.is_file()]
        if missing:
            raise DataError(str(self.root / MANIFEST), f"{len(missing)} of the {len(records)} images its annotations "
                            f"list are not in its image folder {self.image_root} (image_root: "
                            f"{str(self.meta.get('image_root'))[:200]!r}; first missing: {missing[0].name[:200]!r})",
                            "set image_root in dataset.yaml to the folder holding the images (relative to "
                            "dataset.yaml, or absolute), or run `dkan prepare-data` again from their place")
        return records

    def manifest(self) -> dict:
        """``dataset.yaml`` as a dict (config, classes, stats, input_size, class_splits, fewshot_import)."""
        return self.meta

    def class_splits(self) -> dict[str, ClassSplit]:
        """Named base/novel splits recorded by ``prepare-data --class-splits`` ({} when none)."""
        named = self.meta.get("class_splits") or {}
        return {n: ClassSplit(tuple(s["base"]), tuple(s["novel"])) for n, s in named.items()}


def is_synthetic(root: Path) -> bool:
    """Whether the prepared data set at ``root`` was generated (``prepare-data --synthetic``); False when
    ``root`` holds no readable dataset.yaml."""
    try:
        meta = read_manifest(root)
    except DataError:
        return False
    return bool((meta.get("config") or {}).get("synthetic"))


def without_images_of(coco: CocoDict, other: CocoDict) -> CocoDict:
    """``coco`` less the images in ``other`` (val less a seed's few-shot training images)."""
    drop = {im["id"] for im in other["images"]}
    return subset(coco, [im["id"] for im in coco["images"] if im["id"] not in drop])
