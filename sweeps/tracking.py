"""The MLflow store without MLflow: tracking URIs (checked, masked), the run tree's tags, the sqlite store's
artifacts beside it, ``relocate``. Imports nothing from the rest of ``sweeps`` (the client that writes
the runs, ``Tracker``, is ``sweeps.shell.tracker``: MLflow only there).

With a sqlite store (the default: OUT/mlflow.db) the artifacts live beside it in OUT/mlartifacts, so
the run folder is self-contained; ``relocate_store`` points a copied or moved store at its new folder
(a sweep does it by itself on start; ``python -m sweeps.tracking relocate RUN_DIR`` by hand). With a
server (http) the server decides where artifacts go. Runs are found again by tags, so a resumed sweep
adds no duplicate runs. What the runs hold: ``sweeps.shell.trial_logger`` (trials as they run) and
``sweeps.outputs.mlflow_log`` (the study's results, base models).
"""

from __future__ import annotations

import os
import sqlite3
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from dkan.errors import DkanError

TAG_KEY, TAG_TRIAL, TAG_STATE, TAG_KIND = "dkan.sweep_key", "dkan.trial_id", "dkan.state", "dkan.run_kind"
TAG_SELECTED, TAG_NOTE, TAG_CODE = "dkan.selected", "mlflow.note.content", "dkan.code_version"
TAG_EXPERIMENT_KIND, MODEL_DEVELOPMENT = "mlflow.experimentKind", "custom_model_development"
TAG_PARENT = "mlflow.parentRunId"
# TAG_KEY finds a run again: ``OUT|<study key>`` on a study's run (kind sweep), ``OUT|<key>|test|<row>`` on a test
# row's, ``OUT|base|<split>`` on a base model's, and on a trial run the study key with the trial's Tune id, under
# its study's run (``trial_tags``): the study's run is the one that names the run folder
MLFLOW_DB = "mlflow.db"  # a run folder's sqlite store
ARTIFACTS_DIR = "mlartifacts"  # beside a sqlite store's file
# MLflow's columns that hold artifact locations (absolute URIs): rewritten when a store moves
_LOCATION_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                     ("logged_models", "artifact_location"), ("model_versions", "storage_location"),
                     ("model_versions", "source"))


class TrackingError(DkanError, RuntimeError):
    pass


# real tracking URIs by their masked form: the driver holds passwords in memory only; what Tune pickles
# (sweeps.shell.trial_logger.TrialLogger) keeps the masked one and finds the real one here on resume (Tracker
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


def trial_state(seeds_done: int, n_seeds: int, failed: bool = False) -> str:
    """A trial run's ``dkan.state``: completed, stopped early (n/N seeds) or failed."""
    if failed:
        return "failed"
    return "completed" if seeds_done >= n_seeds else f"stopped early ({seeds_done}/{n_seeds} seeds)"


def trial_tags(key: str, parent: str | None, trial_id: str | None = None) -> dict[str, str]:
    """The tags that find a study's trial runs (one, with ``trial_id``): its study key, under its study's run
    ``parent`` where there is one. Two run folders sharing a store hold the same study keys: without the
    parent they would number and find each other's trials."""
    tags = {TAG_KEY: key, **({TAG_TRIAL: trial_id} if trial_id else {})}
    return {**tags, TAG_PARENT: parent} if parent else tags


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 0.1}}`` -> ``{"optim.lr": 0.1}`` (MLflow params)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


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
