"""`dkan prepare-data`: source data -> trainval/train/val/test JSON and the few-shot files.

Protocol (README, "Data protocol"):
- test: the given split (``--split-json``, e.g. the authors' reference split) or a seeded
  split stratified by each image's main class (``--test-fraction``);
- val: a seeded, stratified ``--val-fraction`` of trainval for model selection; ``train`` is
  trainval minus val and is what base training uses; test is looked at once, at the end;
- few-shot files: sampled from the whole trainval exactly as the authors did (so their files are
  reproduced); when evaluating a seed on val, that seed's few-shot images are left out of val.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from dkan.data.coco import CocoDict, class_names, dumps_coco, load_coco_json, subset
from dkan.data.fewshot import SEEDS, SHOTS, check_shots_possible, fewshot_path, sample_fewshot
from dkan.data.io import MANIFEST, publish, staging_dir
from dkan.data.splits import stratified_split
from dkan.data.validate import validate_coco
from dkan.data.voc import load_voc
from dkan.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class PrepareConfig:
    """Everything that determines a prepared dataset (saved as ``OUT/dataset.yaml``)."""

    out: str
    source: str | None = None
    images: str | None = None  # image folder of a COCO JSON source (default: the JSON's folder)
    split_json: str | None = None
    classes: list[str] | None = None
    seeds: list[int] = field(default_factory=lambda: list(SEEDS))
    shots: list[int] = field(default_factory=lambda: list(SHOTS))
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    split_seed: int = 0
    synthetic: bool = False
    synthetic_per_class: int = 60
    synthetic_seed: int = 0


@dataclass
class PrepareResult:
    status: str  # "written", "replaced" or "up to date"
    out: Path
    summary: str


def prepare_data(cfg: PrepareConfig, overwrite: bool = False) -> PrepareResult:
    """Build the whole prepared dataset in a staging folder, then publish it atomically."""
    _check_config(cfg)
    out = Path(cfg.out).absolute()
    with staging_dir(out) as stage:
        source, image_rel = _source(cfg, stage)
        splits = _splits(cfg, source)
        check_shots_possible(splits["trainval"], cfg.shots, "trainval")
        ann = stage / "annotations"
        ann.mkdir()
        for name, coco in splits.items():
            (ann / f"{name}.json").write_text(dumps_coco(coco))
        for seed in cfg.seeds:
            for (k, cls), coco in sample_fewshot(splits["trainval"], seed, cfg.shots).items():
                path = fewshot_path(ann, seed, k, cls)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(dumps_coco(coco))
        manifest = {"format": "dkan-prepared-data/1", "image_root": image_rel, "classes": class_names(splits["trainval"]), "config": asdict(cfg)}
        (stage / MANIFEST).write_text(yaml.safe_dump(manifest, sort_keys=False))
        status = publish(stage, out, overwrite)
    return PrepareResult(status, out, summary_table(splits, cfg))


def _check_config(cfg: PrepareConfig) -> None:
    if cfg.synthetic == (cfg.source is not None):
        raise DataError("--source/--synthetic", "give exactly one of them", "pass --source DIR_OR_JSON, or --synthetic")
    if not cfg.seeds or min(cfg.seeds) < 0:
        raise DataError(f"--seeds {cfg.seeds}", "need one or more non-negative seeds", "pass e.g. --seeds 1-10")
    if not cfg.shots or min(cfg.shots) < 1:
        raise DataError(f"--shots {cfg.shots}", "need one or more K >= 1", "pass e.g. --shots 1,2,3,5,10,30")
    for name in ("val_fraction", "test_fraction"):
        if not 0.0 <= getattr(cfg, name) < 1.0:
            raise DataError(f"--{name.replace('_', '-')} {getattr(cfg, name)}", "must be in [0, 1)", "pass a fraction such as 0.15")
    # resolve paths so the manifest (and idempotency) does not depend on the working directory
    for name in ("source", "images", "split_json"):
        if getattr(cfg, name) is not None:
            setattr(cfg, name, str(Path(getattr(cfg, name)).absolute()))
    cfg.out = str(Path(cfg.out).absolute())
    cfg.seeds, cfg.shots = sorted(set(cfg.seeds)), sorted(set(cfg.shots))


def _source(cfg: PrepareConfig, stage: Path) -> tuple[tuple[CocoDict, Path], str]:
    """Read (or generate) the source; returns ((coco, image dir), image root as written in the manifest)."""
    if cfg.synthetic:
        from dkan.data.synthetic import generate_synthetic

        generate_synthetic(stage / "synthetic", per_class=cfg.synthetic_per_class, seed=cfg.synthetic_seed)
        coco, img_dir, _ = load_voc(stage / "synthetic", cfg.classes)
        return (coco, img_dir), "synthetic/IMAGES"
    src = Path(cfg.source)
    if src.is_dir():
        coco, img_dir, _ = load_voc(src, cfg.classes)
    elif src.suffix.lower() == ".json":
        img_dir = Path(cfg.images) if cfg.images else src.parent
        coco = validate_coco(load_coco_json(src), img_dir, str(src))
        if cfg.classes is not None and class_names(coco) != cfg.classes:
            raise DataError(str(src), f"classes {class_names(coco)} differ from --classes {cfg.classes}", "drop --classes or fix the file's categories")
    else:
        raise DataError(str(src), "not found, or neither a folder nor a .json file", "pass a VOC folder (IMAGES/, ANNOTATIONS/) or a COCO JSON file")
    return (coco, img_dir), str(img_dir)


def _splits(cfg: PrepareConfig, source: tuple[CocoDict, Path]) -> dict[str, CocoDict]:
    coco, img_dir = source
    if cfg.split_json:
        trainval, test = (_given_split(Path(cfg.split_json) / f"{n}.json", coco, img_dir) for n in ("trainval", "test"))
    else:
        keep, held = stratified_split(coco, cfg.test_fraction, cfg.split_seed)
        trainval, test = subset(coco, keep), subset(coco, held)
    train_ids, val_ids = stratified_split(trainval, cfg.val_fraction, cfg.split_seed)
    return {"trainval": trainval, "train": subset(trainval, train_ids), "val": subset(trainval, val_ids), "test": test}


def _given_split(path: Path, source: CocoDict, img_dir: Path) -> CocoDict:
    """A split file, checked against the source: same classes, only the source's images."""
    split = load_coco_json(path)
    if class_names(split) != class_names(source):
        raise DataError(str(path), f"classes {class_names(split)} differ from the source's {class_names(source)}", "use the split made for this dataset, or pass --classes in the split's order")
    known = {im["file_name"] for im in source["images"]}
    missing = [im["file_name"] for im in split["images"] if im["file_name"] not in known]
    if missing:
        raise DataError(str(path), f"{len(missing)} images are not in the source (first: {missing[0]})", "use the split made for this source folder")
    split = validate_coco(split, img_dir, str(path), check_images=False)  # source images already decoded
    n_diff = _count_box_differences(split, source)
    if n_diff:
        log.warning("%s: %d images have boxes that differ from the source annotations; the split file's boxes are used", path, n_diff)
    return split


def _count_box_differences(split: CocoDict, source: CocoDict) -> int:
    def boxes(coco: CocoDict) -> dict[str, Counter]:
        name_of = {im["id"]: im["file_name"] for im in coco["images"]}
        out: dict[str, Counter] = {}
        for a in coco["annotations"]:
            out.setdefault(name_of[a["image_id"]], Counter())[(a["category_id"], *map(float, a["bbox"]))] += 1
        return out

    a, b = boxes(split), boxes(source)
    return sum(a.get(n) != b.get(n) for n in (im["file_name"] for im in split["images"]))


def summary_table(splits: dict[str, CocoDict], cfg: PrepareConfig) -> str:
    """Per class: images holding it and boxes of it, per split; then the few-shot line."""
    names = class_names(splits["trainval"])
    cols = list(splits)
    stats = {s: _class_counts(c) for s, c in splits.items()}
    head = f"{'class':<18}" + "".join(f"{s + ' img/box':>18}" for s in cols)
    lines = [head, "-" * len(head)]
    for cid, name in enumerate(names, start=1):
        lines.append(f"{name:<18}" + "".join(f"{stats[s][0][cid]:>10}/{stats[s][1][cid]:<7}" for s in cols))
    lines.append(f"{'all (images)':<18}" + "".join(f"{len(splits[s]['images']):>10}/{len(splits[s]['annotations']):<7}" for s in cols))
    lines.append(f"few-shot files: seeds {_ranges(cfg.seeds)}, K {','.join(map(str, cfg.shots))}: {len(cfg.seeds) * len(cfg.shots) * len(names)} files")
    return "\n".join(lines)


def _class_counts(coco: CocoDict) -> tuple[Counter, Counter]:
    boxes = Counter(a["category_id"] for a in coco["annotations"])
    images = Counter(c for _, c in {(a["image_id"], a["category_id"]) for a in coco["annotations"]})
    return images, boxes


def _ranges(xs: list[int]) -> str:
    return f"{xs[0]}-{xs[-1]}" if xs == list(range(xs[0], xs[-1] + 1)) and len(xs) > 1 else ",".join(map(str, xs))
