"""The MLflow store: tracking URIs (checked, masked), the sqlite store's artifacts beside it, ``relocate``,
and ``Tracker``, a thin client for the sweep's run tree. Imports nothing from the rest of ``sweeps``.

With a sqlite store (the default: OUT/mlflow.db) the artifacts live beside it in OUT/mlartifacts, so
the run folder is self-contained; ``relocate_store`` points a copied or moved store at its new folder
(a sweep does it by itself on start; ``python -m sweeps.tracking relocate RUN_DIR`` by hand). With a
server (http) the server decides where artifacts go. Runs are found again by tags, so a resumed sweep
adds no duplicate runs. What the runs hold: ``sweeps.trial_logger`` (trials as they run) and
``sweeps.outputs.mlflow_log`` (the study's results, base models).
"""

from __future__ import annotations

import hashlib
import math
import os
import sqlite3
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Any

from dkan.errors import DkanError

TAG_KEY, TAG_TRIAL, TAG_STATE, TAG_KIND = "dkan.sweep_key", "dkan.trial_id", "dkan.state", "dkan.run_kind"
TAG_SELECTED, TAG_NOTE, TAG_CODE = "dkan.selected", "mlflow.note.content", "dkan.code_version"
TAG_EXPERIMENT_KIND, MODEL_DEVELOPMENT = "mlflow.experimentKind", "custom_model_development"
MLFLOW_DB = "mlflow.db"  # a run folder's sqlite store
ARTIFACTS_DIR = "mlartifacts"  # beside a sqlite store's file
# MLflow's columns that hold artifact locations (absolute URIs): rewritten when a store moves
_LOCATION_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                     ("logged_models", "artifact_location"), ("model_versions", "storage_location"),
                     ("model_versions", "source"))


class TrackingError(DkanError, RuntimeError):
    pass


# real tracking URIs by their masked form: the driver holds passwords in memory only; what Tune pickles
# (sweeps.trial_logger.TrialLogger) keeps the masked one and finds the real one here on resume (Tracker
# registers every URI it opens; MLFLOW_TRACKING_URI in the environment serves as well)
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


def remember_uri(uri: str) -> None:
    """Keep the real URI behind its masked form for ``real_uri`` (in this process's memory only)."""
    _REAL_URIS[mask_uri(uri)] = uri


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


def sqlite_uri(db: Path) -> str:
    """The tracking URI of a sqlite store file (the sweep's default: OUT/mlflow.db)."""
    return f"sqlite:///{Path(db).absolute()}"


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


def _health_request(uri: str) -> urllib.request.Request:
    """The server's /health, asked with the URI's credentials as basic auth (urllib takes none in a URL)."""
    import base64
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    host = parts.netloc.rpartition("@")[2]
    req = urllib.request.Request(urlunsplit(parts._replace(netloc=host)).rstrip("/") + "/health")
    if parts.username is not None:
        token = base64.b64encode(f"{parts.username}:{parts.password or ''}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    return req


def check_tracking_uri(uri: str, timeout: float = 5.0) -> None:
    """Fail before any work when the store cannot be reached or written."""
    if uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(_health_request(uri), timeout=timeout).read()
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


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (None for other stores)."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def artifact_root(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside a sqlite store's file (OUT/mlartifacts for the
    default store); None (the server's or MLflow's choice) for other stores."""
    db = sqlite_path(uri)
    return (db.absolute().parent / ARTIFACTS_DIR).as_uri() if db else None


def relocate_store(db: Path) -> int:
    """Point a copied or moved sqlite store at the artifacts beside it: every artifact location under an
    experiment's old ``.../mlartifacts`` is rewritten to this folder's. Returns the rows changed."""
    db = Path(db).absolute()
    new = (db.parent / ARTIFACTS_DIR).as_uri()
    if not db.is_file():
        return 0
    changed = 0
    with sqlite3.connect(db) as con:
        try:
            olds = {r[0] for r in con.execute("SELECT artifact_location FROM experiments")}
        except sqlite3.Error:  # not (yet) an MLflow store
            return 0
        for old in sorted(o for o in olds if o and o.rstrip("/").endswith("/" + ARTIFACTS_DIR) and o != new):
            for table, col in _LOCATION_COLUMNS:
                try:
                    cur = con.execute(f"UPDATE {table} SET {col} = ? || substr({col}, ?) WHERE {col} = ? "
                                      f"OR substr({col}, 1, ?) = ?", (new, len(old) + 1, old, len(old) + 1, old + "/"))
                    changed += cur.rowcount
                except sqlite3.OperationalError:  # a table this MLflow version does not have
                    pass
    return changed


def is_store(db: Path) -> bool:
    """Whether the sqlite file ``db`` is an MLflow tracking store."""
    try:
        with sqlite3.connect(f"file:{Path(db).absolute()}?mode=ro", uri=True) as con:
            return con.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='experiments'").fetchone() \
                is not None
    except sqlite3.Error:
        return False


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 0.1}}`` -> ``{"optim.lr": 0.1}`` (MLflow params)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class Tracker:
    """Thin wrapper over MlflowClient for the sweep's run tree."""

    def __init__(self, uri: str, experiment: str):
        from mlflow.tracking import MlflowClient

        remember_uri(uri)
        self.uri = uri
        db = sqlite_path(uri)
        if db is not None:
            relocate_store(db)  # a copied or moved run folder: its artifacts are beside the store, not where they were
        self.client = MlflowClient(tracking_uri=uri)
        exp = self.client.get_experiment_by_name(experiment)
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(
            experiment, artifact_location=artifact_root(uri))
        if exp is None or exp.tags.get(TAG_EXPERIMENT_KIND) != MODEL_DEVELOPMENT:
            # the MLflow UI opens a model-development experiment on its training runs (else on GenAI traces)
            self.client.set_experiment_tag(self.experiment_id, TAG_EXPERIMENT_KIND, MODEL_DEVELOPMENT)

    def find(self, **tags: str) -> str | None:
        flt = " and ".join(f"tags.`{k}` = {filter_value(v)}" for k, v in tags.items())
        runs = self.client.search_runs([self.experiment_id], filter_string=flt, max_results=1)
        return runs[0].info.run_id if runs else None

    def count(self, **tags: str) -> int:
        flt = " and ".join(f"tags.`{k}` = {filter_value(v)}" for k, v in tags.items())
        return len(self.client.search_runs([self.experiment_id], filter_string=flt, max_results=50000))

    def run(
        self, name: str, tags: dict[str, str], params: dict[str, Any] | None = None, parent: str | None = None
    ) -> str:
        """The run with these tags, created if missing (resume-safe)."""
        existing = self.find(**tags)
        if existing:
            return existing
        all_tags = {**tags, **({"mlflow.parentRunId": parent} if parent else {})}
        run_id = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags).info.run_id
        self.params(run_id, params or {})
        return run_id

    def params(self, run_id: str, values: dict[str, Any]) -> None:
        """Parameters in batches (MLflow takes 100 per call; a value at most 6000 characters)."""
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in values.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100], synchronous=True)

    def tags(self, run_id: str, values: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in values.items()], synchronous=True)

    def metrics(self, run_id: str, values: dict[str, float], step: int = 0) -> None:
        self.series(run_id, [(k, v, step) for k, v in values.items()])

    def series(self, run_id: str, points: list[tuple[str, float, int]]) -> None:
        """(name, value, step) points in batches; NaN and non-numbers left out, '/' in names made '_'."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k.replace("/", "_"), float(v), now, int(step)) for k, v, step in points
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(float(v))]
        for i in range(0, len(items), 1000):
            self.client.log_batch(run_id, metrics=items[i : i + 1000], synchronous=True)

    def dataset(self, run_id: str, data_root: Path, context: str = "train") -> None:
        """The prepared dataset as the run's input (MLflow's dataset tracking): its folder name, its
        location and a digest of its dataset.yaml (the manifest prepare-data writes)."""
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag

        root = Path(data_root)
        digest = hashlib.sha256((root / "dataset.yaml").read_bytes()).hexdigest()[:16]
        with warnings.catch_warnings():  # MLflow registers two equal local sources and warns which it picked
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(str(root))
        ds = MetaDataset(source, name=root.name, digest=digest)
        tag = InputTag("mlflow.data.context", context)
        self.client.log_inputs(run_id, [DatasetInput(ds._to_mlflow_entity(), [tag])])

    def finish(self, run_id: str, state: str, status: str = "FINISHED", reason: str | None = None) -> None:
        self.client.set_tag(run_id, TAG_STATE, state)
        if reason:
            self.client.set_tag(run_id, "dkan.failure_reason", reason[:4000])
        self.client.set_terminated(run_id, status)


UI_HOST, UI_PORT = "127.0.0.1", 5000  # where ``mlflow ui`` serves (loopback; its defaults, said aloud)


def experiment_id(uri: str, name: str) -> str | None:
    """The id of the experiment ``name`` in the store (None when it has none or cannot be read); creates nothing."""
    from mlflow.tracking import MlflowClient

    try:
        exp = MlflowClient(tracking_uri=real_uri(uri)).get_experiment_by_name(name)
    except Exception:  # noqa: BLE001 - only an address to print: a store that cannot be read gives none
        return None
    return exp.experiment_id if exp else None


def runs_address(uri: str, experiment: str) -> str:
    """How a person opens the experiment's runs table: a server's address, else the ``mlflow ui`` command on
    127.0.0.1 and the address it serves. The address names the runs table (``#/experiments/<id>/runs``):
    MLflow 3.17's UI opens an experiment on its GenAI overview otherwise, even one tagged model development."""
    from urllib.parse import urlsplit, urlunsplit

    eid = experiment_id(uri, experiment)
    page = f"/#/experiments/{eid}/runs" if eid is not None else f" (experiment {experiment})"
    if uri.startswith(("http://", "https://")):
        parts = urlsplit(uri)  # the address without credentials: the browser asks for them
        return f"open {urlunsplit(parts._replace(netloc=parts.netloc.rpartition('@')[2])).rstrip('/')}{page}"
    return (f"run `mlflow ui --backend-store-uri {mask_uri(uri)} --host {UI_HOST} --port {UI_PORT}`, then open "
            f"http://{UI_HOST}:{UI_PORT}{page}")


def main(argv: list[str] | None = None) -> int:
    """``python -m sweeps.tracking relocate RUN_DIR``: after copying or moving a run folder, point its
    MLflow store at the artifacts beside it (then ``mlflow ui --backend-store-uri sqlite:///RUN_DIR/mlflow.db``)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m sweeps.tracking", description=main.__doc__)
    p.add_argument("command", choices=["relocate"])
    p.add_argument("run_dir", type=Path)
    args = p.parse_args(argv)
    db = args.run_dir / MLFLOW_DB
    if not db.is_file():
        print(f"error: {db} not found. Fix: pass the --out folder of a sweep (it holds mlflow.db)", file=sys.stderr)
        return 2
    if not is_store(db):
        print(f"error: {db} is not an MLflow store (no experiments table). Fix: pass the --out folder of a sweep",
              file=sys.stderr)
        return 2
    if not os.access(db, os.W_OK) or not os.access(db.parent, os.W_OK):
        print(f"error: {db}: read-only here, so it cannot be relocated. Fix: copy the run folder somewhere "
              "writable first", file=sys.stderr)
        return 2
    print(f"{db}: {relocate_store(db)} artifact locations now under {db.parent / ARTIFACTS_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
