"""A finished sweep's run folder read back for the report, with the same checks for every reader: results
files of the shape the sweep writes (a malformed one is named, with its fault and the fix), and nothing
read from outside the folder (a link pointing out of it is refused, its target never read)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dkan.bundle import find_bundles
from dkan.errors import DkanError
from sweeps.core.layout import RunLayout

STUDY_KEY = re.compile(r"^(?P<dataset>.+?)_(?P<split>[^_]+)_(?P<shots>\d+)shot$")  # older files: no "study" entry
# what a results file's optional entries must be when present
SHAPES: dict[str, type | tuple[type, ...]] = {
    "table": dict, "per_seed": dict, "best_hyperparameters": dict, "stats": dict, "verdict": (list, str),
    "search": dict, "recommendation": dict, "candidates": dict, "study": dict, "reference": (dict, list),
    "retention": dict,
}


class ReportError(DkanError, ValueError):
    pass


@dataclass
class StudyResults:
    """One study's results file, as the report reads it."""

    key: str
    dataset: str
    split: str | int | None  # the class split's name (split1, or a user's)
    shots: int | None
    data: dict[str, Any]  # the results JSON

    @property
    def table(self) -> dict[str, dict[str, Any]]:
        return self.data["table"]


@dataclass
class BundleSummary:
    path: Path  # the YAML
    provenance: dict[str, Any]
    files: list[str]  # model / checkpoint files beside it, relative to the run folder


@dataclass
class RunSummary:
    run_dir: Path
    studies: list[StudyResults]
    bundles: list[BundleSummary] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)


def inside(path: Path, root: Path) -> Path:
    """``path`` when it (links resolved) lies in ``root``; else ReportError: its target is never read."""
    real, top = Path(path).resolve(), Path(root).resolve()
    if real != top and top not in real.parents:
        raise ReportError(f"{path}: links outside the run folder (to {real}); the report reads only {root}. "
                          "Fix: remove the link, or copy the file into the run folder")
    return Path(path)


def check_results(path: Path, data: Any) -> None:
    """A results file of the sweep's shape (``sweeps.outputs.results``), or ReportError naming its fault."""
    fix = "re-run the study (--resume writes it again) or delete the file"
    if not isinstance(data, dict):
        raise ReportError(f"{path}: malformed results: a JSON object expected, got {type(data).__name__}. Fix: {fix}")
    for key, kind in SHAPES.items():
        if key in data and data[key] is not None and not isinstance(data[key], kind):
            raise ReportError(f"{path}: malformed results: {key!r} is a {type(data[key]).__name__}. Fix: {fix}")
    for row, agg in data["table"].items():
        if not isinstance(agg, Mapping) or not all(isinstance(v, (Mapping, int, float, type(None)))
                                                   for v in agg.values()):
            raise ReportError(f"{path}: malformed results: table row {row!r} is not a mapping of metrics. Fix: {fix}")
    shots = (data.get("study") or {}).get("shots")
    if shots is not None and not isinstance(shots, int):
        raise ReportError(f"{path}: malformed results: study.shots is {shots!r}, not an integer. Fix: {fix}")


def load_run(run_dir: Path) -> RunSummary:
    """Everything the report shows; a clear error when there are no results to show."""
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    if not run_dir.is_dir():
        raise ReportError(
            f"{run_dir}: not a folder. Fix: pass the --out folder of a sweep (python sweeps/run_tune.py --out DIR)"
        )
    studies = []
    for path in sorted(layout.results_dir.glob("*.json")):
        try:
            data = json.loads(inside(path, run_dir).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ReportError(f"{path}: not valid JSON ({e}). Fix: re-run the study or delete the file") from e
        except IsADirectoryError as e:
            raise ReportError(f"{path}: a folder where a results file belongs. Fix: remove it") from e
        if isinstance(data, dict) and isinstance(data.get("table"), dict):  # other JSONs (per-class AP) are not studies
            check_results(path, data)
            m = STUDY_KEY.match(path.stem)
            named = data.get("study") or {}  # {dataset, split (its name), shots}, written by the sweep
            dataset = named.get("dataset") or (m["dataset"] if m else path.stem)
            split = named.get("split") or (m["split"] if m else None)
            shots = named.get("shots") or (int(m["shots"]) if m else None)
            studies.append(StudyResults(path.stem, str(dataset), split, shots, data))
    if not studies:
        raise ReportError(
            f"{layout.results_dir}: no study results (*.json with a 'table'). Fix: pass the --out folder "
            "of a sweep that finished at least one (split, K) study"
        )
    studies.sort(key=lambda s: (s.dataset, str(s.split or ""), s.shots if s.shots is not None else -1, s.key))
    plots = sorted(inside(p, run_dir) for p in layout.plots_dir.rglob("*.png")) if layout.plots_dir.is_dir() else []
    return RunSummary(run_dir, studies, _bundles(layout), plots)


def _bundles(layout: RunLayout) -> list[BundleSummary]:
    def files(folder: Path) -> list[str]:  # model / checkpoint files beside a bundle's config
        return sorted(str(p.relative_to(layout.root)) for p in folder.iterdir()
                      if p.suffix in (".pt", ".pth") or p.name == "MLmodel")

    return [BundleSummary(inside(path, layout.root), prov, files(path.parent))
            for path, prov in find_bundles(layout.bundles_dir)]
