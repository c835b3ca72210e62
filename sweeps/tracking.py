"""MLflow: one experiment per dataset, a parent run per (split, K) study, a child run per trial,
child runs for the test evaluation of the best config and of TFA.

Runs are found again by tags, so a resumed sweep adds no duplicate parent or trial runs.
"""

from __future__ import annotations

import math
import os
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ray.tune import Callback

from dkan.errors import DkanError
from dkan.evaluation.aggregate import aggregate_seeds
from dkan.names import HEADLINE

TAG_KEY, TAG_TRIAL, TAG_STATE, TAG_KIND = "dkan.sweep_key", "dkan.trial_id", "dkan.state", "dkan.run_kind"


class TrackingError(DkanError, RuntimeError):
    pass


# real tracking URIs by their masked form: the driver holds passwords in memory only; what Tune
# pickles (TrialLogger) keeps the masked one and finds the real one here on resume (Tracker registers
# every URI it opens; MLFLOW_TRACKING_URI in the environment serves as well)
_REAL_URIS: dict[str, str] = {}


def mask_uri(uri: str) -> str:
    """``uri`` with any password replaced by ``***`` (for printing, errors and pickled state)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(uri)
        password = parts.password
    except ValueError:  # not a URL (a bare path): nothing to hide
        return uri
    if not password:
        return uri
    user, _, host = parts.netloc.rpartition("@")
    name = user.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{name}:***@{host}"))


def real_uri(uri: str) -> str:
    """The real URI behind a masked one (registered by a Tracker or in MLFLOW_TRACKING_URI)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env and mask_uri(env) == uri:
        return env
    return _REAL_URIS.get(uri, uri)


def filter_value(v: str) -> str:
    """``v`` quoted for an MLflow search filter (single quotes, or double where ``v`` holds one)."""
    if "'" not in v:
        return f"'{v}'"
    if '"' not in v:
        return f'"{v}"'
    raise TrackingError(f"{v!r} holds both quote characters, which MLflow's search filter cannot quote. "
                        "Fix: choose an --out path (and data folder name) without ' or \"")


def default_tracking_uri(run_dir: Path) -> str:
    return f"sqlite:///{(Path(run_dir) / 'mlflow.db').absolute()}"


# SQLAlchemy's default driver module per database scheme (MLflow's database stores go through it)
_DB_DRIVERS = {"postgresql": "psycopg2", "mysql": "MySQLdb", "mssql": "pyodbc"}
_DRIVER_MODULES = {"psycopg": "psycopg", "psycopg2": "psycopg2", "pg8000": "pg8000", "pymysql": "pymysql",
                   "mysqldb": "MySQLdb", "mysqlconnector": "mysql.connector", "pyodbc": "pyodbc", "pymssql": "pymssql"}


def check_db_driver(uri: str) -> None:
    """A database tracking URI needs its Python driver here, before Ray starts."""
    import importlib.util

    scheme = uri.split(":", 1)[0]
    db, _, driver = scheme.partition("+")
    module = _DRIVER_MODULES.get(driver, driver) if driver else _DB_DRIVERS.get(db)
    if module and importlib.util.find_spec(module.split(".")[0]) is None:
        raise TrackingError(
            f"--tracking-uri {mask_uri(uri)}: the database driver {module!r} is not installed. Fix: install it "
            f"(e.g. pip install {module.split('.')[0].lower()}) or name an installed one ({db}+<driver>://...)"
        )


def check_tracking_uri(uri: str, timeout: float = 5.0) -> None:
    """Fail before any work when the store cannot be reached or written."""
    if uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).read()
        except (urllib.error.URLError, OSError) as e:
            raise TrackingError(
                f"--tracking-uri {mask_uri(uri)}: MLflow server unreachable ({e}). Fix: start it (mlflow server ...) "
                "or drop --tracking-uri to use the local sqlite store"
            ) from e
    elif uri.split(":", 1)[0] in _DB_DRIVERS or "+" in uri.split(":", 1)[0]:
        check_db_driver(uri)
    elif uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if path.exists():
            try:
                sqlite3.connect(f"file:{path}?mode=rw", uri=True).close()
            except sqlite3.Error as e:
                raise TrackingError(
                    f"--tracking-uri {uri}: cannot open the sqlite store ({e}). Fix: choose another path"
                ) from e
            return
        parent = next(p for p in path.absolute().parents if p.exists())  # nothing is created here
        if not os.access(parent, os.W_OK):
            raise TrackingError(
                f"--tracking-uri {uri}: {parent} is not writable. Fix: choose a writable --out or --tracking-uri"
            )


class Tracker:
    """Thin wrapper over MlflowClient for the sweep's run tree."""

    def __init__(self, uri: str, experiment: str):
        from mlflow.tracking import MlflowClient

        _REAL_URIS[mask_uri(uri)] = uri
        self.client = MlflowClient(tracking_uri=uri)
        exp = self.client.get_experiment_by_name(experiment)
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(experiment)

    def find(self, **tags: str) -> str | None:
        flt = " and ".join(f"tags.`{k}` = {filter_value(v)}" for k, v in tags.items())
        runs = self.client.search_runs([self.experiment_id], filter_string=flt, max_results=1)
        return runs[0].info.run_id if runs else None

    def run(
        self, name: str, tags: dict[str, str], params: dict[str, Any] | None = None, parent: str | None = None
    ) -> str:
        """The run with these tags, created if missing (resume-safe)."""
        existing = self.find(**tags)
        if existing:
            return existing
        all_tags = {**tags, **({"mlflow.parentRunId": parent} if parent else {})}
        run_id = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags).info.run_id
        for k, v in (params or {}).items():
            self.client.log_param(run_id, k, v)
        return run_id

    def metrics(self, run_id: str, values: dict[str, float], step: int = 0) -> None:
        for k, v in values.items():
            if isinstance(v, (int, float)) and not math.isnan(float(v)):
                self.client.log_metric(run_id, k.replace("/", "_"), float(v), step=step)

    def finish(self, run_id: str, state: str, status: str = "FINISHED", reason: str | None = None) -> None:
        self.client.set_tag(run_id, TAG_STATE, state)
        if reason:
            self.client.set_tag(run_id, "dkan.failure_reason", reason[:4000])
        self.client.set_terminated(run_id, status)


class TrialLogger(Callback):
    """Tune callback (runs in the driver): trial runs as children of the sweep's parent run."""

    def __init__(self, uri: str, experiment: str, parent_id: str, sweep_key: str, n_seeds: int):
        self.uri, self.experiment, self.parent_id = mask_uri(uri), experiment, parent_id  # no password pickled
        _REAL_URIS[self.uri] = uri
        self.key, self.n_seeds = sweep_key, n_seeds
        self._tracker: Tracker | None = None
        self.run_ids: dict[str, str] = {}
        self.last: dict[str, dict] = {}

    def __getstate__(self) -> dict:
        # Tune pickles its RunConfig (callbacks included) for restore; the client is rebuilt lazily
        return {**self.__dict__, "_tracker": None}

    @property
    def tracker(self) -> Tracker:
        if self._tracker is None:
            self._tracker = Tracker(real_uri(self.uri), self.experiment)
        return self._tracker

    def _run(self, trial) -> str:
        if trial.trial_id not in self.run_ids:
            params = {k: v for k, v in trial.config.items() if isinstance(v, (int, float, str))}
            self.run_ids[trial.trial_id] = self.tracker.run(
                f"trial {trial.trial_id}",
                {TAG_KEY: self.key, TAG_TRIAL: trial.trial_id, TAG_KIND: "trial"}, params, self.parent_id,
            )
        return self.run_ids[trial.trial_id]

    def on_trial_start(self, iteration, trials, trial, **info):
        self._run(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run_id = self._run(trial)
        self.last[trial.trial_id] = result
        step = int(result.get("seeds_done", 0))
        seed = int(result.get("last_seed", step))
        self.tracker.metrics(run_id, {k: v for k, v in result.items() if k.startswith(("val_", "test_"))}, step=step)
        per_seed = result.get(f"seed{seed}_AP_all")
        if per_seed is not None:
            self.tracker.metrics(run_id, {"seed_AP_all": per_seed}, step=seed)

    def on_trial_complete(self, iteration, trials, trial, **info):
        done = int(self.last.get(trial.trial_id, {}).get("seeds_done", 0))
        state = "completed" if done >= self.n_seeds else f"stopped early ({done}/{self.n_seeds} seeds)"
        self.tracker.finish(self._run(trial), state)

    def on_trial_error(self, iteration, trials, trial, **info):
        reason = str(getattr(trial, "error_msg", None) or getattr(trial, "error_file", None) or "error")
        self.tracker.finish(self._run(trial), "failed", status="FAILED", reason=reason)


def study_run(tracker: Tracker, out: Path, key: str, split: str, shots: int, params: dict[str, Any]) -> str:
    """The parent run of one (split, K) study (found again on resume)."""
    return tracker.run(f"{split}, {shots}-shot", {TAG_KEY: f"{out}|{key}", TAG_KIND: "sweep"}, params)


def log_study(tracker: Tracker, out: Path, key: str, parent: str, hparams: dict[str, float],
              per_row: dict[str, dict[int, dict[str, float]]], best: dict[str, Any], finetunes: int,
              files: list[Path], verdicts: list[str]) -> None:
    """The test rows as child runs (per-seed and mean/std metrics), the study's files as the parent's
    artifacts, its selection metrics and verdicts; then the parent is finished."""
    for row, seeds in per_row.items():
        params = {**(hparams if row == "dkan" else {}), "row": row}
        run = tracker.run(f"test: {row}", {TAG_KEY: f"{out}|{key}|test|{row}", TAG_KIND: "test"}, params, parent)
        for seed, m in seeds.items():
            tracker.metrics(run, {f"seed_{k}": v for k, v in m.items() if k in HEADLINE}, step=seed)
        agg = aggregate_seeds(seeds)
        stats = ("mean", "std", "ci95_low", "ci95_high")
        tracker.metrics(run, {f"{k}_{s}": v[s] for k, v in agg.items() for s in stats})
        tracker.finish(run, "completed")
    for f in files:
        tracker.client.log_artifact(parent, str(f))
    for i, sentence in enumerate(verdicts):
        tracker.client.set_tag(parent, f"dkan.verdict.{i}", sentence[:4000])
    selection = {f"best_{k}": v for k, v in best.items() if k.startswith(("val_AP", "test_AP"))}
    tracker.metrics(parent, selection | {"seed_finetunes": finetunes})
    tracker.finish(parent, "completed")
