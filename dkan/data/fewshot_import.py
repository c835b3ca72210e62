"""Import few-shot lists made by other tools (TFA, mmfewshot; VOC style), so a published split reruns.

Accepted layouts (searched recursively under the folder given to ``--fewshot-from``):
- TFA ``vocsplit``: ``seed<N>/box_<K>shot_<class>_train.txt``; files outside any ``seed<N>``
  folder are seed 0 (TFA's own convention for its first split, the classic benchmark split);
- files naming their seed: ``box_<K>shot_<class>_train_seed<N>.txt`` (or ``..._seed<N>_train.txt``);
- ``_trainval`` in place of ``_train``, and any folders above (``benchmark_<K>shot/`` ...).
dkan's seeds start at 1, so when the lists hold a seed 0 every seed moves up by one (TFA's seed 0
becomes dkan seed 1, seed 1 becomes 2, ...); ``dataset.yaml`` records the map (``seed_map``).
One file per (seed, K, class); one image per line, as an id (``000005``), a file name
(``000005.jpg``) or a path (``VOC2007/JPEGImages/000005.jpg``), matched to the dataset's images
by file name, then by name without extension. Blank lines and ``#`` comments are skipped.

Such a list names K *images*; their boxes of the class often number more than K. Two readings:
- ``all`` (default): every box of the class in the listed images. This keeps dkan's own
  sampler's rule that a chosen image carries all its boxes of the class (a box left out would be
  trained as background, teaching the model to miss that very defect), and it is exactly
  reproducible. The cost: more than K boxes for some classes, counted in ``dataset.yaml``.
- ``sample``: K of those boxes, drawn with a generator seeded by (seed, K, class). This is what
  TFA and mmfewshot do (unseeded there, so their draw cannot be reproduced anyway).
Either way the listed images are kept exactly as given (order too), including an image with no
box of the class (a warning): it then serves as a background-only example.
"""

from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path

from dkan.data.coco import CocoDict, class_names
from dkan.errors import DataError

log = logging.getLogger(__name__)

READINGS = ("all", "sample")
LAYOUT_HELP = (
    "TFA/mmfewshot VOC-style lists, one file per (seed, K, class), one image id/name/path per line: "
    "seed<N>/box_<K>shot_<class>_train.txt (files outside seed folders are seed 0) or "
    "box_<K>shot_<class>_train_seed<N>.txt; _trainval instead of _train is accepted"
)
_FILE = re.compile(r"^box_(?P<k>\d+)shot_(?P<rest>.+)\.txt$")
_SEED_IN_NAME = re.compile(r"_seed_?(\d+)(?=_|$)")
_SEED_DIR = re.compile(r"^seed_?(\d+)$")
_SUFFIX = re.compile(r"_(trainval|train)$")


@dataclass(frozen=True)
class ListFile:
    path: Path
    seed: int
    shots: int
    cls: str
    lines: tuple[str, ...]


def parse_list_name(path: Path, root: Path) -> tuple[int, int, str] | None:
    """(seed, K, class as written) of a list file, or None if the name is not a few-shot list."""
    m = _FILE.match(path.name)
    if not m:
        return None
    rest = m.group("rest")
    seeds = _SEED_IN_NAME.findall(rest)
    rest = _SUFFIX.sub("", _SEED_IN_NAME.sub("", rest))
    if not seeds:  # the nearest seed<N> folder between root and the file
        rel = path.parent.relative_to(root).parts
        seeds = [m2.group(1) for p in reversed(rel) if (m2 := _SEED_DIR.match(p))][:1] or ["0"]
    return int(seeds[0]), int(m.group("k")), rest


def find_list_files(folder: Path, classes: list[str]) -> list[ListFile]:
    """All few-shot lists under ``folder``, checked: known classes, one file per (seed, K, class)."""
    folder = Path(folder).absolute()
    if not folder.is_dir():
        raise DataError(str(folder), "not a folder", f"pass the folder that holds the few-shot lists ({LAYOUT_HELP})")
    found: dict[tuple[int, int, str], ListFile] = {}
    for path in sorted(folder.rglob("*.txt")):
        parsed = parse_list_name(path, folder)
        if parsed is None:
            continue
        seed, k, cls = parsed
        if path.is_dir():
            raise DataError(str(path), "is a folder, not a few-shot list", "rename or remove the folder")
        if k < 1:
            raise DataError(str(path), f"K={k}: a few-shot list holds at least one box per class",
                            "remove the file (K starts at 1)")
        if cls not in classes:
            raise DataError(
                str(path),
                f"class {cls!r} is not one of the dataset's classes {classes}",
                "rename the file or pass --classes matching the lists",
            )
        if (seed, k, cls) in found:
            raise DataError(
                str(path),
                f"a second list for seed {seed}, K={k}, class {cls!r} (also {found[(seed, k, cls)].path})",
                "keep one file per (seed, K, class)",
            )
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise DataError(str(path), f"not UTF-8 text ({e.reason} at byte {e.start})",
                            "save the list as UTF-8 text, one image per line") from e
        lines = tuple(ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#"))
        if not lines:
            raise DataError(str(path), f"lists no image for K={k}, class {cls!r}",
                            "list the images (one per line), or remove the file")
        found[(seed, k, cls)] = ListFile(path, seed, k, cls, lines)
    if not found:
        raise DataError(str(folder), "no few-shot list files found", f"expected {LAYOUT_HELP}")
    for seed, k in sorted({(s, k) for s, k, _ in found}):
        missing = [c for c in classes if (seed, k, c) not in found]
        if missing:
            raise DataError(
                str(folder),
                f"seed {seed}, K={k} has no list for classes {missing}",
                "add those lists (one per class) or remove this seed/K's files",
            )
    return [found[key] for key in sorted(found)]


class _ImageIndex:
    """Resolve a list line to an image of the dataset: file name, base name, or name without extension."""

    def __init__(self, coco: CocoDict):
        self.keys: dict[str, list[dict]] = {}
        for im in coco["images"]:
            fn = str(im["file_name"])
            for key in {fn, Path(fn).name, Path(fn).stem}:
                self.keys.setdefault(key, []).append(im)

    def find(self, line: str) -> list[dict]:
        for key in (line, Path(line).name, Path(line).stem):
            if key in self.keys:
                return self.keys[key]
        return []


def import_fewshot(
    trainval: CocoDict, folder: Path, reading: str = "all", test: CocoDict | None = None
) -> tuple[dict[tuple[int, int, str], CocoDict], dict]:
    """{(seed, K, class): COCO dict of that file} and a summary for ``dataset.yaml``."""
    if reading not in READINGS:
        raise DataError(f"--fewshot-reading {reading}", "unknown reading", f"choose one of {READINGS}")
    classes = class_names(trainval)
    cat_of = {c["name"]: c["id"] for c in trainval["categories"]}
    index, test_index = _ImageIndex(trainval), _ImageIndex(test or {"images": []})
    out: dict[tuple[int, int, str], CocoDict] = {}
    more_than_k = 0
    for lf in find_list_files(folder, classes):
        images = _resolve(lf, index, test_index)
        ids = {im["id"] for im in images}
        boxes = [a for a in trainval["annotations"] if a["image_id"] in ids and a["category_id"] == cat_of[lf.cls]]
        boxes.sort(key=lambda a: ([im["id"] for im in images].index(a["image_id"]), a["id"]))  # list order
        empty = ids - {a["image_id"] for a in boxes}
        if empty:
            log.warning(
                "%s: %d listed images hold no box of %r; kept as background-only examples", lf.path, len(empty), lf.cls
            )
        if reading == "sample" and len(boxes) > lf.shots:
            rng = random.Random(f"{lf.seed}/{lf.shots}/{lf.cls}")  # str seeds are stable across runs
            boxes = [boxes[i] for i in sorted(rng.sample(range(len(boxes)), lf.shots))]
        if len(boxes) < lf.shots:
            raise DataError(str(lf.path), f"the {len(images)} listed images hold {len(boxes)} boxes of {lf.cls!r}, "
                            f"fewer than K={lf.shots}", "list images holding at least K boxes of the class, or "
                            "name the file for the K it holds")
        more_than_k += len(boxes) > lf.shots
        out[(lf.seed, lf.shots, lf.cls)] = {
            "images": images,
            "annotations": boxes,
            "categories": trainval["categories"],
        }
    shift = 1 if any(s == 0 for s, _, _ in out) else 0  # dkan seeds start at 1
    seed_map = {s: s + shift for s in sorted({s for s, _, _ in out})}
    out = {(seed_map[s], k, c): coco for (s, k, c), coco in out.items()}
    if shift:
        log.info("the lists hold seed 0 (TFA's first split); dkan seeds start at 1, so seed N is imported as seed N+1")
    counts = [len(c["annotations"]) for c in out.values()]
    summary = {
        "from": str(Path(folder).absolute()),
        "reading": reading,
        "files": len(out),
        "seed_map": seed_map,
        "seeds": sorted(seed_map.values()),
        "shots": sorted({k for _, k, _ in out}),
        "boxes_per_file": {"min": min(counts), "max": max(counts)},
        "files_with_more_than_k_boxes": more_than_k,
    }
    return out, summary


def _resolve(lf: ListFile, index: _ImageIndex, test_index: _ImageIndex) -> list[dict]:
    images: list[dict] = []
    for n, line in enumerate(lf.lines, start=1):
        hits = index.find(line)
        if len(hits) > 1:
            raise DataError(
                f"{lf.path}:{n}",
                f"{line!r} matches several images ({[h['file_name'] for h in hits]})",
                "write the file name with its extension",
            )
        if not hits:
            where = "is in the test split" if test_index.find(line) else "is not an image of this dataset's trainval"
            raise DataError(
                f"{lf.path}:{n}",
                f"image {line!r} {where}",
                "list only trainval images (few-shot data must not come from test), or fix the name",
            )
        if any(im["id"] == hits[0]["id"] for im in images):
            log.warning("%s:%d: image %r listed twice; kept once", lf.path, n, line)
            continue
        images.append(hits[0])
    return images
