"""A recorded grid (``scripts/record_grid.py``) as typed data, checked on load, and a synthetic one.

A grid holds, per (K, seed, config), the val and test AP_all of one fine-tune at each of its rungs
(iterations where it was scored). ``scripts/bench_strategies.py`` replays search strategies on it
(``sweeps.core.strategy_replay``). ``synthetic_grid`` makes one with a known best config and noise per seed,
for the tests and the benchmark's ``--self-check``. AP values are fractions (0-1).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dkan.errors import DkanError

GRID_VERSION = 1
FIXED = ("tfa", "plain", "dkan_defaults")  # the sweep's fixed candidates, simplest first


class GridError(DkanError, ValueError):
    """A grid that cannot be replayed as asked: names the file or flag and the fix."""


@dataclass(frozen=True)
class Grid:
    source: str  # the file it came from (or "synthetic")
    dataset: str
    shots: tuple[int, ...]
    rungs: tuple[int, ...]  # iterations where each fine-tune was scored; the last is its full length
    images_per_iteration: int
    fixed: tuple[str, ...]  # the fixed candidates recorded, simplest first
    points: tuple[str, ...]  # the sampled DKAN points, in the grid's order
    seeds: dict[int, tuple[int, ...]]  # K -> the seeds every config holds at every rung
    ap: dict[tuple[str, int, str, int, int], float]  # (val | test, K, config, seed, rung) -> AP_all

    @property
    def length(self) -> int:
        return self.rungs[-1]

    def val(self, k: int, config: str, seed: int, rung: int | None = None) -> float:
        return self.ap[("val", k, config, seed, rung or self.length)]

    def test(self, k: int, config: str, seed: int) -> float:
        return self.ap[("test", k, config, seed, self.length)]


def parse_grid(d: dict[str, Any], source: str, expect_dataset: str | None = None) -> Grid:
    """The grid of a recording's JSON; another version or data set than asked, or a torn file, is refused."""
    if d.get("version") != GRID_VERSION:
        raise GridError(f"{source}: grid version {d.get('version')!r}, this replay reads version {GRID_VERSION}. "
                        "Fix: record it again with scripts/record_grid.py")
    if expect_dataset is not None and d.get("dataset") != expect_dataset:
        raise GridError(f"{source}: a grid of data set {d.get('dataset')!r}, not {expect_dataset!r} "
                        "(--expect-dataset). Fix: pass the grid recorded on that data set, or the right name")
    try:
        rungs = tuple(int(r) for r in d["rungs"])
        ids = [c["id"] for c in d["configs"]]
        ap: dict[tuple[str, int, str, int, int], float] = {}
        for c in d["cells"]:
            for rung, sides in c["points"].items():
                for side in ("val", "test"):
                    if side in sides and sides[side].get("AP_all") is not None:
                        ap[(side, int(c["shots"]), c["config"], int(c["seed"]), int(rung))] = \
                            float(sides[side]["AP_all"])
        shots, seeds_asked = tuple(int(k) for k in d["shots"]), [int(s) for s in d["seeds"]]
        images = int(d["images_per_iteration"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise GridError(f"{source}: not a grid of scripts/record_grid.py ({type(e).__name__}: {e}). "
                        "Fix: pass the JSON that scripts/record_grid.py --grid wrote") from None
    if not rungs or list(rungs) != sorted(set(rungs)):
        raise GridError(f"{source}: rungs {list(rungs)} are not increasing. Fix: record it again")

    def complete(k: int, s: int) -> bool:
        need = [("val", k, c, s, r) for c in ids for r in rungs] + [("test", k, c, s, rungs[-1]) for c in ids]
        return all(key in ap and math.isfinite(ap[key]) for key in need)

    seeds = {k: tuple(s for s in seeds_asked if complete(k, s)) for k in shots}
    return Grid(source, str(d.get("dataset")), shots, rungs, images, tuple(c for c in FIXED if c in ids),
                tuple(c for c in ids if c not in FIXED), seeds, ap)


def load_grid(path: Path, expect_dataset: str | None = None) -> Grid:
    try:
        d = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise GridError(f"{path}: no such grid. Fix: pass the JSON scripts/record_grid.py --grid wrote") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GridError(f"{path}: not JSON ({e}). Fix: pass the JSON scripts/record_grid.py --grid wrote "
                        "(copy it while the recorder is not writing)") from None
    if not isinstance(d, dict):
        raise GridError(f"{path}: not a grid (a JSON {type(d).__name__}). Fix: pass the grid JSON")
    return parse_grid(d, str(path), expect_dataset)


def synthetic_grid(shots: tuple[int, ...] = (5, 10), seeds: int = 10, points: int = 12, best: str = "p03",
                   rungs: tuple[int, ...] = (15, 30, 60), gap: float = 0.02, noise: float = 0.01,
                   seed_sd: float = 0.03, speeds: tuple[float, float] = (0.3, 0.4), seed: int = 0,
                   dataset: str = "synthetic") -> dict[str, Any]:
    """A grid's JSON with a known best config: ``best`` beats every other by at least ``gap`` AP_all on val and
    test at full length in expectation. Each seed shifts every config alike (``seed_sd``, paired) and each
    (config, seed) adds its own ``noise``; a run at a shorter rung scores less, each config learning at its own
    speed (so a short rung can misrank configs whose qualities are close)."""
    rng = random.Random(seed)
    ids = list(FIXED) + [f"p{i:02d}" for i in range(1, points + 1)]
    if best not in ids:
        raise ValueError(f"best {best!r}: not one of {ids}")
    quality = {"tfa": 0.30, "plain": 0.305, "dkan_defaults": 0.31}
    quality |= {c: 0.29 + rng.uniform(-0.02, 0.02) for c in ids[len(FIXED):]}
    quality[best] = max(quality.values()) + gap
    speed = {c: rng.uniform(*speeds) for c in ids}  # AP at rung r: quality * (r / full) ** speed
    cells = []
    for s in range(1, seeds + 1):
        for k in shots:
            shift = rng.gauss(0, seed_sd) + 0.01 * (k - shots[0]) / max(1, k)
            for c in ids:
                own = rng.gauss(0, noise)
                test = quality[c] + shift + own * 0.5 + rng.gauss(0, noise)
                pts = {}
                for r in rungs:
                    v = (quality[c] + shift + own) * (r / rungs[-1]) ** speed[c] + rng.gauss(0, noise / 2)
                    pts[str(r)] = {"val": {"AP_all": round(v, 6)},
                                   "test": {"AP_all": round(test * (r / rungs[-1]) ** speed[c], 6)}}
                cells.append({"shots": k, "seed": s, "config": c, "seconds": 0.0, "points": pts})
    return {"about": f"synthetic grid (sweeps.core.grid.synthetic_grid, best {best})", "version": GRID_VERSION,
            "dataset": dataset, "split": "1", "profile": "synthetic", "shots": list(shots),
            "seeds": list(range(1, seeds + 1)), "finetune_iterations": rungs[-1], "images_per_iteration": 2,
            "fractions": [r / rungs[-1] for r in rungs], "rungs": list(rungs),
            "configs": [{"id": c, "method": {"tfa": "tfa", "plain": "plain"}.get(c, "dkan"), "point": {}}
                        for c in ids], "cells": cells}
