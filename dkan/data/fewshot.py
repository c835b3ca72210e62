"""Seeded K-shot sampling, exactly as the authors' (TFA's ``prepare_coco_few_shot.py``) files.

For each seed: ``random.seed(seed)``; then per class in category order, for K in the shot list in
increasing order, draw K candidate images at a time and take them one by one, skipping images
already taken and images whose boxes of that class would overshoot K, until exactly K boxes are
held. Each K's set grows out of the previous one. A file lists only its own class's boxes.

Where no set of images can hold exactly K boxes of a class (inspection images often hold several
defects each), the set takes the images with the fewest boxes until it holds at least K, and a
warning names the class and the count (NEU-DET never needs this).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

from dkan.data.coco import CocoDict, load_coco_json
from dkan.errors import DataError
from dkan.names import unsafe_name

SHOTS = (1, 2, 3, 5, 10, 30)
SEEDS = tuple(range(1, 11))
MAX_DRAWS = 10_000  # a few draws suffice in practice; past this the K is unreachable


def class_file_part(name: object, where: str) -> str:
    """A class name as it may appear in a file name; the one gate between names and paths.

    Class names come from annotation files anyone can write, so a name holding a path
    separator, ``..``, a NUL byte or a leading dot (``../../x/ESCAPED``) is refused instead of
    letting it steer a file outside the output folder.
    """
    bad = unsafe_name(name)
    if bad:
        raise DataError(
            f"{where}, class {_short(name)}", f"the class name {bad}; class names become parts of file names",
            "rename the class in the annotations (and in --classes if you pass it) to a plain name such as 'scratches'",
        )
    return name


def _short(name: object) -> str:
    text = repr(name)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(str(name))} characters)"


def fewshot_path(ann_dir: Path, seed: int, shots: int, name: str) -> Path:
    """``<ann_dir>/fewshot-split/<seed>/<seed>seed_<K>shot_<class>_trainval.json``."""
    part = class_file_part(name, str(ann_dir))
    return Path(ann_dir) / "fewshot-split" / str(seed) / f"{seed}seed_{shots}shot_{part}_trainval.json"


def check_shots_possible(coco: CocoDict, shots: list[int], source: str) -> None:
    """Every class must appear in at least K images (the sampler draws K images per try)."""
    images_of: dict[int, set] = {c["id"]: set() for c in coco["categories"]}
    for a in coco["annotations"]:
        images_of[a["category_id"]].add(a["image_id"])
    for c in coco["categories"]:
        n = len(images_of[c["id"]])
        if max(shots) > n:
            raise DataError(
                f"{source}, class {c['name']!r}",
                f"K={max(shots)} is larger than the class offers (it appears in {n} images)",
                f"use --shots up to {n}, or add images of this class",
            )


def sample_fewshot(
    coco: CocoDict, seed: int, shots: list[int] | tuple[int, ...] = SHOTS
) -> dict[tuple[int, str], CocoDict]:
    """All K-shot sets of one seed: {(K, class name): COCO dict with that class's K boxes}."""
    shots = sorted(shots)
    id2img = {im["id"]: im for im in coco["images"]}
    anns: dict[int, list] = {c["id"]: [] for c in coco["categories"]}
    for a in coco["annotations"]:
        if not a.get("iscrowd", 0):
            anns[a["category_id"]].append(a)
    random.seed(seed)  # the authors seed the global generator; we must too, to match their files
    out: dict[tuple[int, str], CocoDict] = {}
    for cat in sorted(coco["categories"], key=lambda c: c["id"]):
        img_anns: dict[int, list] = {}
        for a in anns[cat["id"]]:
            img_anns.setdefault(a["image_id"], []).append(a)
        taken: list[dict] = []
        taken_imgs: list[dict] = []
        for k in shots:
            _grow(img_anns, taken, taken_imgs, id2img, k, cat["name"])
            out[(k, cat["name"])] = {
                "images": list(taken_imgs), "annotations": list(taken), "categories": coco["categories"],
            }
    return out


def _grow(img_anns: dict[int, list], taken: list, taken_imgs: list, id2img: dict, k: int, name: str) -> None:
    if len(img_anns) < k:
        raise DataError(
            f"class {name!r}", f"K={k} is larger than the class offers ({len(img_anns)} images)",
            f"use K up to {len(img_anns)}",
        )
    if len(taken) >= k:  # a smaller K's fallback already holds enough
        return
    held = {a["image_id"] for a in taken}
    free = [len(v) for i, v in img_anns.items() if i not in held]
    if not _reachable(free, k - len(taken)):  # e.g. every image holds several boxes of the class
        _grow_at_least(img_anns, taken, taken_imgs, id2img, k, name)
        return
    for _ in range(MAX_DRAWS):
        for img in random.sample(list(img_anns.keys()), k):
            if any(img == s["image_id"] for s in taken) or len(img_anns[img]) + len(taken) > k:
                continue
            taken.extend(img_anns[img])
            taken_imgs.append(id2img[img])
            if len(taken) == k:
                return
    raise DataError(
        f"class {name!r}", f"no set of images holds exactly K={k} boxes after {MAX_DRAWS} draws",
        "use a different K for this class",
    )


def _reachable(counts: list[int], target: int) -> bool:
    """Whether some of the images' box counts add up to exactly ``target`` (subset sum, small K)."""
    sums = 1  # bit i set: a subset sums to i
    for c in counts:
        sums |= (sums << c) & ((1 << (target + 1)) - 1)
    return bool(sums >> target & 1)


def _grow_at_least(img_anns: dict[int, list], taken: list, taken_imgs: list, id2img: dict, k: int, name: str) -> None:
    """When no set of images holds exactly K boxes of the class (images with many defects each), take
    the images with the fewest boxes (ties in seeded order) until at least K are held, and say so."""
    held = {a["image_id"] for a in taken}
    order = [i for i in img_anns if i not in held]
    random.shuffle(order)
    for img in sorted(order, key=lambda i: len(img_anns[i])):
        if len(taken) >= k:
            break
        taken.extend(img_anns[img])
        taken_imgs.append(id2img[img])
    logging.getLogger(__name__).warning(
        "class %r: no set of images holds exactly K=%d boxes (the images hold several each); took %d boxes "
        "in %d images instead (the fewest-box images)", name, k, len(taken), len(taken_imgs))


def _check_holds_its_class(part: CocoDict, name: str, path: Path, shots: int) -> None:
    """A class's few-shot file holds at least one box of it: else fine-tuning would see 0 examples of the class
    and report its AP as if it had been trained."""
    ids = {c.get("id") for c in part["categories"] if isinstance(c, dict) and c.get("name") == name}
    if not any(isinstance(a, dict) and a.get("category_id") in ids for a in part["annotations"]):
        raise DataError(str(path), f"holds no box of class {name!r} ({len(part['annotations'])} boxes of other "
                        "classes): a fine-tune would see 0 examples of it",
                        "restore the file (`dkan prepare-data` again for this data set, with --overwrite), or give "
                        f"it up to {shots} boxes of {name!r}")


def load_fewshot(ann_dir: Path, seed: int, shots: int, names: list[str] | tuple[str, ...]) -> CocoDict:
    """The K-shot training set of one seed: the per-class files merged per image.

    An image drawn for several classes appears once with the union of those files' boxes.
    Boxes of other classes in a drawn image stay unlabelled (the authors' protocol), so the
    detector sees them as background.
    """
    if seed < 1 or shots < 1:
        raise DataError(
            f"few-shot seed {seed}, K={shots}", "seeds and K start at 1",
            "pick a seed of 1 or more (fewshot_seed) and K of 1 or more (--shots), as written by prepare-data",
        )
    images: dict[int, dict] = {}
    anns: dict[int, dict] = {}
    categories = None
    for name in names:
        path = fewshot_path(ann_dir, seed, shots, name)
        if not path.is_file():
            raise DataError(
                str(path), f"no few-shot file for seed {seed}, K={shots}, class {name!r}",
                f"run `dkan prepare-data ... --seeds {seed} --shots {shots}` for this dataset, "
                "or pick a seed/K that exists",
            )
        part = load_coco_json(path)
        categories = categories or part["categories"]
        if part["categories"] != categories:
            raise DataError(
                str(path), "categories differ from the other few-shot files",
                "regenerate the few-shot files with one prepare-data run",
            )
        _check_holds_its_class(part, name, path, shots)
        for im in part["images"]:
            images.setdefault(im["id"], im)
        for a in part["annotations"]:
            anns.setdefault(a["id"], a)
    return {"images": list(images.values()), "annotations": list(anns.values()), "categories": categories or []}
