"""Every path of a sweep's run folder (``--out``) and of the shared cache (``--cache-dir``), made here only.

    OUT/mlflow.db, OUT/mlartifacts/          the MLflow store and its artifacts (sweeps.tracking)
    OUT/results/<key>.md|json                a study's tables and statistics; <key>_per_class_ap.json
    OUT/plots/<key>/*.png                    its figures
    OUT/best_configs/<key>/                  its bundle (dkan.bundle)
    OUT/report.html, OUT/report.md           the report over every study
    OUT/sweep.lock                           held by the sweep running here (dkan.runfolder.exclusive)
    OUT/runs/<key>/<trial id>/seed<S>/       a search trial's seed fine-tunes (dkan.runfolder)
    OUT/runs/<key>/test_<row>/seed<S>/       the test phase's jobs (row: tfa, dkan_defaults, dkan, base)
    OUT/ray_results/<key>_<run>/             Ray Tune's state, for --resume (run: candidates, search,
                                             search_<method>, test); train/ the Train runs' own

    CACHE/data/synthetic/                    the embedded default's data set
    CACHE/base/<dataset>_<split>_<digest>/   a cached base model (and its .lock beside it)

A study's key is ``<dataset>_<split name>_<K>shot`` (``study_key``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dkan import runfolder
from dkan.errors import DkanError
from dkan.names import unsafe_name
from sweeps.tracking import ARTIFACTS_DIR, MLFLOW_DB


class UnsafeName(DkanError, ValueError):
    """A name that would steer a path outside its folder (checked where names are read; this is the last gate)."""


def part(name: str, what: str = "name") -> str:
    """``name`` as one path component of the run folder or the cache, or UnsafeName."""
    why = unsafe_name(name)
    if why:
        raise UnsafeName(f"{what} {name!r} {why}: it would become a path outside the folder. Fix: rename it")
    return name


def study_key(dataset: str, split: str, shots: int) -> str:
    return part(f"{part(dataset, 'data set name')}_{part(split, 'class split name')}_{int(shots)}shot", "study key")


def model_in(run_dir: Path) -> Path | None:
    """The model a finished run folder stands for: its own model_final.pt, or the checkpoint it evaluated
    (a test job reusing a search trial's fine-tune records it in metrics.json); None when neither exists."""
    own = Path(run_dir) / runfolder.FINAL
    if own.is_file():
        return own
    reused = (runfolder.done_metrics(run_dir) or {}).get("checkpoint")
    return Path(reused) if reused and Path(reused).is_file() else None


@dataclass(frozen=True)
class RunLayout:
    """The run folder of one sweep."""

    root: Path

    # ---------------------------------------------------------------- MLflow, results, figures, bundles
    @property
    def mlflow_db(self) -> Path:
        return self.root / MLFLOW_DB

    @property
    def artifacts(self) -> Path:
        return self.root / ARTIFACTS_DIR

    @property
    def results_dir(self) -> Path:
        return self.root / "results"

    def results_md(self, key: str) -> Path:
        return self.results_dir / f"{part(key)}.md"

    def results_json(self, key: str) -> Path:
        return self.results_dir / f"{part(key)}.json"

    def per_class_json(self, key: str) -> Path:
        return self.results_dir / f"{part(key)}_per_class_ap.json"

    @property
    def plots_dir(self) -> Path:
        return self.root / "plots"

    def plots(self, key: str) -> Path:
        return self.plots_dir / part(key)

    @property
    def bundles_dir(self) -> Path:
        return self.root / "best_configs"

    def bundle(self, key: str) -> Path:
        return self.bundles_dir / part(key)

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def lock(self) -> Path:
        """The lock of the sweep that writes here (one at a time: a second sweep or --resume is refused)."""
        return self.root / "sweep.lock"

    # ---------------------------------------------------------------- run folders of fine-tunes and evaluations
    def runs(self, key: str) -> Path:
        return self.root / "runs" / part(key)

    def trial_seed(self, key: str, trial_id: str | None, seed: int) -> Path:
        """A search trial's fine-tune of one seed (``trial_id`` None: a trial that never ran: no such folder)."""
        return self.runs(key) / part(trial_id or "-", "trial id") / f"seed{int(seed)}"

    def test_seed(self, key: str, row: str, seed: int) -> Path:
        """A test-phase job: one row of the test table (tfa, dkan_defaults, dkan, base) on one seed."""
        return self.runs(key) / part(f"test_{row}") / f"seed{int(seed)}"

    # ---------------------------------------------------------------- Ray Tune's state
    @property
    def ray_results(self) -> Path:
        return self.root / "ray_results"

    @property
    def train_storage(self) -> str:
        """Where the Ray Train runs keep their own state."""
        return str(self.ray_results / "train")

    def tune_state(self, key: str, run: str) -> Path:
        """A study's Tune run: ``candidates`` (the fixed candidates), ``search`` (DKAN's), ``search_tfa``
        (a baseline's, when the space holds keys it uses) or ``test``."""
        return self.ray_results / part(f"{key}_{run}")


@dataclass(frozen=True)
class CacheLayout:
    """The cache sweeps share (``--cache-dir``, ``$DKAN_CACHE``)."""

    root: Path

    @property
    def synthetic_data(self) -> Path:
        return self.root / "data" / "synthetic"

    def base_model(self, dataset: str, split: str, digest: str) -> Path:
        """The run folder of a base model, keyed by its config's and data's digest."""
        return self.root / "base" / part(f"{part(dataset)}_{part(split)}_{digest}")

    @staticmethod
    def lock_of(folder: Path) -> Path:
        """The lock two sweeps take before training the base model into ``folder``."""
        return folder.parent / f"{folder.name}.lock"
