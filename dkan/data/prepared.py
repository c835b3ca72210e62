"""Reading side of `dkan prepare-data`: a prepared dataset folder as the trainer sees it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from dkan.data.coco import CocoDict, ImageRecord, load_coco_json, subset, to_records
from dkan.data.fewshot import load_fewshot
from dkan.data.io import MANIFEST
from dkan.data.splits import ClassSplit
from dkan.errors import DataError

SPLITS = ("trainval", "train", "val", "test")


@dataclass(frozen=True)
class PreparedData:
    root: Path
    image_root: Path
    classes: tuple[str, ...]

    @classmethod
    def load(cls, root: Path) -> "PreparedData":
        root = Path(root)
        manifest = root / MANIFEST
        if not manifest.is_file():
            raise DataError(
                str(root),
                "not a prepared dataset (no dataset.yaml)",
                f"run `dkan prepare-data --source ... --out {root}` first",
            )
        meta = yaml.safe_load(manifest.read_text())
        return cls(root, root / meta["image_root"], tuple(meta["classes"]))  # an absolute image_root stays absolute

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
        return to_records(coco, self.image_root)

    def manifest(self) -> dict:
        """``dataset.yaml`` as a dict (config, classes, stats, input_size, class_splits, fewshot_import)."""
        return yaml.safe_load((self.root / MANIFEST).read_text())

    def class_splits(self) -> dict[str, ClassSplit]:
        """Named base/novel splits recorded by ``prepare-data --class-splits`` ({} when none)."""
        named = self.manifest().get("class_splits") or {}
        return {n: ClassSplit(tuple(s["base"]), tuple(s["novel"])) for n, s in named.items()}


def is_synthetic(root: Path) -> bool:
    """Whether the prepared data set at ``root`` was generated (``prepare-data --synthetic``); False when
    ``root`` holds no readable dataset.yaml."""
    try:
        meta = yaml.safe_load((Path(root) / MANIFEST).read_text()) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return False
    return isinstance(meta, dict) and bool((meta.get("config") or {}).get("synthetic"))


def without_images_of(coco: CocoDict, other: CocoDict) -> CocoDict:
    """``coco`` less the images in ``other`` (val less a seed's few-shot training images)."""
    drop = {im["id"] for im in other["images"]}
    return subset(coco, [im["id"] for im in coco["images"] if im["id"] not in drop])
