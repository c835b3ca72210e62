"""`dkan prepare-data`: source data -> trainval/train/val/test JSON and the few-shot files.

Protocol (docs/data.md, "Protocol"):
- test: the given split (``--split-json``, e.g. the authors' reference split) or a seeded
  split stratified by each image's main class (``--test-fraction``);
- val: a seeded, stratified ``--val-fraction`` of trainval for model selection; ``train`` is
  trainval minus val and is what base training uses; test is looked at once, at the end;
- few-shot files: sampled from the whole trainval exactly as the authors did (so their files are
  reproduced), or imported from another tool's lists (``--fewshot-from``, see fewshot_import.py);
  when evaluating a seed on val, that seed's few-shot images are left out of val.

Defect-free images (no boxes; common in inspection) are kept as they come and split like the
others (their own stratum), so val and test hold their share: there they measure false alarms.
Training policy: few-shot files never draw them (the sampler draws images holding the class);
base training drops them with every image that holds no base-class box (``restrict_classes``
with ``drop_empty=True``), because an image holding only novel defects must not teach the base
model that those are background, and the two cannot be told apart after restriction.

``dataset.yaml`` records, besides the config and classes, ``stats`` (image sizes, box-size
percentiles overall and per class, boxes per image; on trainval, see stats.py) and
``input_size``, the size and anchors ``choose_input_size`` suggests at the default cap.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dkan import yamlio
from dkan.data.coco import CocoDict, class_names, dumps_coco, load_coco_json, subset
from dkan.data.fewshot import SEEDS, SHOTS, check_shots_possible, fewshot_path, sample_fewshot
from dkan.data.io import MANIFEST, publish, staging_dir
from dkan.data.splits import load_class_splits, resolve_class_split, stratified_split
from dkan.data.stats import DEFAULT_CAP, choose_input_size, dataset_stats
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
    synthetic_kind: str = "steel"  # steel (NEU-DET-like, 200 px) | tiles (640 px, 5-10 small defects per image)
    synthetic_images: int = 120  # tiles only: number of images
    synthetic_size: int = 640  # tiles only: image side in px
    fewshot_from: str | None = None  # folder of TFA/mmfewshot lists; replaces sampling (the lists decide seeds and K)
    fewshot_reading: str = "all"  # all | sample (see fewshot_import.py)
    class_splits: str | None = None  # YAML of named base/novel splits, checked and recorded in dataset.yaml


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
        fewshot, imported = _fewshot_sets(cfg, splits)
        ann = stage / "annotations"
        ann.mkdir()
        for name, coco in splits.items():
            (ann / f"{name}.json").write_text(dumps_coco(coco))
        for (seed, k, cls), coco in fewshot.items():
            path = fewshot_path(ann, seed, k, cls)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(dumps_coco(coco))
        stats = dataset_stats(splits["trainval"])
        manifest = {
            "format": "dkan-prepared-data/1",
            "image_root": image_rel,
            "classes": class_names(splits["trainval"]),
            "config": asdict(cfg),
            "stats": stats,
            "input_size": {"cap": DEFAULT_CAP, **choose_input_size(stats).as_dict()},
        }
        if imported:
            manifest["fewshot_import"] = imported
        if cfg.class_splits:
            manifest["class_splits"] = named_class_splits(Path(cfg.class_splits), class_names(splits["trainval"]))
        (stage / MANIFEST).write_text(yamlio.dumps(manifest))
        status = publish(stage, out, overwrite)
    return PrepareResult(status, out, summary_table(splits, cfg))


def _fewshot_sets(
    cfg: PrepareConfig, splits: dict[str, CocoDict]
) -> tuple[dict[tuple[int, int, str], CocoDict], dict | None]:
    """{(seed, K, class): file content}, sampled or imported; plus the import's summary (or None)."""
    if cfg.fewshot_from:
        from dkan.data.fewshot_import import import_fewshot

        sets, summary = import_fewshot(splits["trainval"], Path(cfg.fewshot_from), cfg.fewshot_reading, splits["test"])
        cfg.seeds, cfg.shots = summary["seeds"], summary["shots"]  # the lists decide
        return sets, summary
    check_shots_possible(splits["trainval"], cfg.shots, "trainval")
    out = {}
    for seed in cfg.seeds:
        out.update(
            {(seed, k, cls): coco for (k, cls), coco in sample_fewshot(splits["trainval"], seed, cfg.shots).items()}
        )
    return out, None


def named_class_splits(path: Path, classes: list[str]) -> dict[str, dict[str, list[str]]]:
    """A class-splits YAML checked against the dataset: {name: {base, novel}}, novel filled in
    with the other classes where the file leaves it out."""
    out = {}
    for name, cs in load_class_splits(path).items():
        try:
            full = resolve_class_split(classes, base=list(cs.base), novel=list(cs.novel) or None)
        except DataError as e:
            raise DataError(f"{path}: split {name!r}", e.problem, e.fix) from e
        out[name] = {"base": list(full.base), "novel": list(full.novel)}
    return out


def _check_config(cfg: PrepareConfig) -> None:
    if cfg.synthetic == (cfg.source is not None):
        raise DataError("--source/--synthetic", "give exactly one of them", "pass --source DIR_OR_JSON, or --synthetic")
    if not cfg.seeds or min(cfg.seeds) < 1:  # the authors' seeds are 1-10; the sweep refuses seed 0
        raise DataError(f"--seeds {cfg.seeds}", "need one or more seeds, each 1 or more", "pass e.g. --seeds 1-10")
    if not cfg.shots or min(cfg.shots) < 1:
        raise DataError(f"--shots {cfg.shots}", "need one or more K, each 1 or more", "pass e.g. --shots 1,2,3,5,10,30")
    for name in ("val_fraction", "test_fraction"):
        if not 0.0 <= getattr(cfg, name) < 1.0:
            raise DataError(
                f"--{name.replace('_', '-')} {getattr(cfg, name)}", "must be in [0, 1)", "pass a fraction such as 0.15"
            )
    # resolve paths so the manifest (and idempotency) does not depend on the working directory
    if cfg.synthetic_kind not in ("steel", "tiles"):
        raise DataError(f"--synthetic-kind {cfg.synthetic_kind}", "unknown kind", "choose steel or tiles")
    if cfg.fewshot_reading not in ("all", "sample"):
        raise DataError(f"--fewshot-reading {cfg.fewshot_reading}", "unknown reading", "choose all or sample")
    for name in ("source", "images", "split_json", "fewshot_from", "class_splits"):
        if getattr(cfg, name) is not None:
            setattr(cfg, name, str(Path(getattr(cfg, name)).absolute()))
    cfg.out = str(Path(cfg.out).absolute())
    cfg.seeds, cfg.shots = sorted(set(cfg.seeds)), sorted(set(cfg.shots))


def _source(cfg: PrepareConfig, stage: Path) -> tuple[tuple[CocoDict, Path], str]:
    """Read (or generate) the source; returns ((coco, image dir), image root as written in the manifest)."""
    if cfg.synthetic:
        from dkan.data.synthetic import generate_synthetic, generate_tiles

        if cfg.synthetic_kind == "tiles":
            generate_tiles(
                stage / "synthetic", images=cfg.synthetic_images, seed=cfg.synthetic_seed, size=cfg.synthetic_size
            )
        else:
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
            raise DataError(
                str(src),
                f"classes {class_names(coco)} differ from --classes {cfg.classes}",
                "drop --classes or fix the file's categories",
            )
    else:
        raise DataError(
            str(src),
            "not found, or neither a folder nor a .json file",
            "pass a VOC folder (IMAGES/, ANNOTATIONS/) or a COCO JSON file",
        )
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
        raise DataError(
            str(path),
            f"classes {class_names(split)} differ from the source's {class_names(source)}",
            "use the split made for this dataset, or pass --classes in the split's order",
        )
    known = {im["file_name"] for im in source["images"]}
    missing = [im["file_name"] for im in split["images"] if im["file_name"] not in known]
    if missing:
        raise DataError(
            str(path),
            f"{len(missing)} images are not in the source (first: {missing[0]})",
            "use the split made for this source folder",
        )
    split = validate_coco(split, img_dir, str(path), check_images=False)  # source images already decoded
    n_diff = _count_box_differences(split, source)
    if n_diff:
        log.warning(
            "%s: %d images have boxes that differ from the source annotations; the split file's boxes are used",
            path,
            n_diff,
        )
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
    for name in names:
        lines.append(f"{name:<18}" + "".join(f"{stats[s][0][name]:>10}/{stats[s][1][name]:<7}" for s in cols))
    lines.append(
        f"{'all (images)':<18}"
        + "".join(f"{len(splits[s]['images']):>10}/{len(splits[s]['annotations']):<7}" for s in cols)
    )
    n_files = len(cfg.seeds) * len(cfg.shots) * len(names)
    how = f"imported from {cfg.fewshot_from} (reading: {cfg.fewshot_reading})" if cfg.fewshot_from else "sampled"
    lines.append(
        f"few-shot files: seeds {_ranges(cfg.seeds)}, K {','.join(map(str, cfg.shots))}: {n_files} files, {how}"
    )
    return "\n".join(lines)


def _class_counts(coco: CocoDict) -> tuple[Counter, Counter]:
    """Images holding each class and boxes of it, by class name (ids may start anywhere, e.g. at 0)."""
    name = {c["id"]: c["name"] for c in coco["categories"]}
    boxes = Counter(name[a["category_id"]] for a in coco["annotations"])
    images = Counter(name[c] for _, c in {(a["image_id"], a["category_id"]) for a in coco["annotations"]})
    return images, boxes


def _ranges(xs: list[int]) -> str:
    return f"{xs[0]}-{xs[-1]}" if xs == list(range(xs[0], xs[-1] + 1)) and len(xs) > 1 else ",".join(map(str, xs))
