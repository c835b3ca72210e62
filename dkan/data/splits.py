"""Class splits (base/novel) and seeded image splits (train/test, train/val)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from dkan.data.coco import CocoDict, class_names
from dkan.errors import DataError, shown


@dataclass(frozen=True)
class ClassSplit:
    """Base classes (pretraining) and novel classes (few-shot only); base first is the order used."""

    base: tuple[str, ...]
    novel: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        return self.base + self.novel


# The paper's three NEU-DET splits (DKAN / IKLF authors).
NEU_DET_SPLITS: dict[int, ClassSplit] = {
    1: ClassSplit(("crazing", "inclusion", "patches"), ("pitted_surface", "rolled-in_scale", "scratches")),
    2: ClassSplit(("inclusion", "rolled-in_scale", "scratches"), ("crazing", "patches", "pitted_surface")),
    3: ClassSplit(("pitted_surface", "patches", "scratches"), ("crazing", "inclusion", "rolled-in_scale")),
}


def resolve_class_split(
    known: list[str], split: int | None = None, base: list[str] | None = None, novel: list[str] | None = None
) -> ClassSplit:
    """A paper split by number, or user-given base/novel lists (novel defaults to the rest; an
    explicitly empty novel list serves base training on every class)."""
    if split is not None and base is not None:
        raise DataError(
            "--split/--base", "give either a split number or a base class list, not both", "drop one of them"
        )
    if split is not None:
        if split not in NEU_DET_SPLITS:
            raise DataError(
                f"split {split}",
                "no such NEU-DET split",
                f"choose one of {sorted(NEU_DET_SPLITS)} or give --base/--novel",
            )
        check_preset_applies(known, split)
        cs = NEU_DET_SPLITS[split]
    elif base is not None:
        cs = ClassSplit(tuple(base), tuple(novel) if novel is not None else tuple(c for c in known if c not in base))
    else:
        raise DataError("class split", "none given", "give a split number (NEU-DET 1-3) or --base classes")
    check_class_split(cs, known, f"class split {shown(list(cs.base))} / {shown(list(cs.novel))}", need_novel=False)
    return cs


def check_class_split(cs: ClassSplit, known: list[str] | tuple[str, ...], where: str, need_novel: bool = True) -> None:
    """A class split of the data set's classes: base non-empty, each class once, in one of base or novel;
    novel non-empty unless only base training needs it (``need_novel``: a few-shot study does)."""
    unknown = [c for c in cs.all if c not in known]
    if unknown:
        raise DataError(where, f"unknown class names {shown(unknown)} (dataset classes: {shown(list(known))})",
                        "use the dataset's class names")
    twice = sorted({c for c in cs.all if cs.all.count(c) > 1})
    if twice:
        raise DataError(where, f"classes listed twice: {shown(twice)}", "list each class once, in base or in novel")
    if not cs.base:
        raise DataError(where, "no base classes", "name the classes the base model learns (--base a,b,c)")
    if need_novel and not cs.novel:
        raise DataError(where, "no novel classes: every class is in base, so there is nothing to learn few-shot",
                        "leave at least one class out of base (or name --novel classes)")


def primary_class(coco: CocoDict) -> dict[int, int]:
    """Image id -> the category with most boxes in it (ties: lowest id; no boxes: 0)."""
    counts: dict[int, Counter] = {im["id"]: Counter() for im in coco["images"]}
    for a in coco["annotations"]:
        counts[a["image_id"]][a["category_id"]] += 1
    return {i: (min(c, key=lambda k: (-c[k], k)) if c else 0) for i, c in counts.items()}


def stratified_split(coco: CocoDict, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split of image ids into (kept, held out), ``fraction`` held out per primary class.

    Both lists keep the images' original order, so the result depends only on (data, fraction, seed).
    """
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"fraction {fraction}", "must be in [0, 1)", "pass a fraction such as 0.2")
    prim = primary_class(coco)
    rng = random.Random(seed)
    held: set[int] = set()
    for cat in sorted(set(prim.values())):
        ids = [i for i in prim if prim[i] == cat]
        rng.shuffle(ids)
        held.update(ids[: round(fraction * len(ids))])
    order = [im["id"] for im in coco["images"]]
    return [i for i in order if i not in held], [i for i in order if i in held]


def restrict_classes(coco: CocoDict, names: list[str] | tuple[str, ...], drop_empty: bool = True) -> CocoDict:
    """Keep only boxes of ``names``, renumbered 1..N in that order (e.g. base-only training)."""
    old = {n: i for i, n in zip([c["id"] for c in coco["categories"]], [c["name"] for c in coco["categories"]])}
    missing = [n for n in names if n not in old]
    if missing:
        raise DataError(
            f"classes {missing}", f"not in the dataset (classes: {class_names(coco)})", "use the dataset's class names"
        )
    new_id = {old[n]: i for i, n in enumerate(names, start=1)}
    anns = [{**a, "category_id": new_id[a["category_id"]]} for a in coco["annotations"] if a["category_id"] in new_id]
    with_boxes = {a["image_id"] for a in anns}
    images = [im for im in coco["images"] if im["id"] in with_boxes or not drop_empty]
    cats = [{**next(c for c in coco["categories"] if c["name"] == n), "id": i} for i, n in enumerate(names, start=1)]
    return {"images": images, "annotations": anns, "categories": cats}


# --- Class splits for any dataset: NEU-DET presets only on NEU-DET's classes, named splits from YAML ---


def check_preset_applies(known: list[str] | tuple[str, ...], split: int) -> None:
    """A numbered split is a NEU-DET preset: refuse it on a dataset with other classes."""
    if set(known) != {c for s in NEU_DET_SPLITS.values() for c in s.all}:
        half = list(known)[: max(1, len(known) // 2)]
        raise DataError(
            f"--split {split}",
            f"the numbered splits are NEU-DET's presets; this dataset's classes are {list(known)}",
            f"name the classes, e.g. --base {','.join(half)} (novel: the rest), or --base ... --novel ...; "
            f"in a config: data.split=null, data.base=[...], data.novel=[...]",
        )


def load_class_splits(path) -> dict[str, ClassSplit]:
    """``name: {base: [...], novel: [...]}`` per split from a YAML file (novel may be left out:
    the dataset's other classes, resolved later by ``resolve_class_split``; then it is empty here)."""
    from pathlib import Path

    from dkan.config import ConfigError, read_yaml

    data = read_yaml(Path(path), "class-splits file", ConfigError)
    fix = "write e.g.\n  mine:\n    base: [a, b, c]\n    novel: [d, e]"
    if not isinstance(data, dict) or not data:
        raise DataError(str(path), "expected a mapping of split names to {base: [...], novel: [...]}", fix)
    out: dict[str, ClassSplit] = {}
    for name, entry in data.items():
        where = f"{path}: split {shown(name)}"
        bad = not isinstance(entry, dict) or set(entry) - {"base", "novel"} or not isinstance(entry.get("base"), list)
        if bad or not isinstance(entry.get("novel", []), list):
            raise DataError(where, "needs a 'base' list and optionally a 'novel' list, only", fix)
        key = split_name(None, entry["base"], entry.get("novel"), name=str(name))
        if key in out:
            raise DataError(where, f"its safe name {key!r} is taken by another split", "rename one")
        out[key] = ClassSplit(tuple(map(str, entry["base"])), tuple(map(str, entry.get("novel") or ())))
    return out


def split_name(split: int | None = None, base=None, novel=None, name: str | None = None) -> str:
    """A short, file-name-safe name of a class split: ``split1`` for a preset, the user's ``name``
    (cleaned), or ``base-<classes>`` derived from the base list (novel = the rest needs no name;
    an explicit novel list adds ``-novel-<classes>``). Long derived names end in a stable hash."""
    import hashlib
    import re

    def safe(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._-") or "split"

    if name:
        return safe(name)[:80]
    if split is not None:
        return f"split{int(split)}"
    if not base:
        raise DataError("class split", "none given", "give a split number (NEU-DET 1-3) or --base classes")
    text = "base-" + "-".join(base) + ("-novel-" + "-".join(novel) if novel else "")
    out = safe(text)
    if len(out) > 64 or out != text:  # keep names short, and distinct where cleaning merged characters
        out = out[:55].rstrip("._-") + "-" + hashlib.sha1(text.encode()).hexdigest()[:8]
    return out


def parse_class_list(text: str | None) -> list[str] | None:
    """``"a,b, c"`` -> ``["a", "b", "c"]`` (None stays None; an empty string is an empty list)."""
    if text is None:
        return None
    return [c.strip() for c in text.split(",") if c.strip()]
