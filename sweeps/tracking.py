"""MLflow: one experiment per dataset; a run per split's base model (kind ``base``), a parent run per
(split, K) study (``sweep``) with a child run per trial (``trial``) and per test row (``test``).

With a sqlite store (the default: OUT/mlflow.db) the artifacts live beside it in OUT/mlartifacts, so
the run folder is self-contained; ``relocate_store`` points a copied or moved store at its new folder
(a sweep does it by itself on start). With a server (http) the server decides where artifacts go.
Runs are found again by tags, so a resumed sweep adds no duplicate runs.
"""

from __future__ import annotations

import hashlib
import math
import os
import sqlite3
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.tune import Callback

from dkan.errors import DkanError
from dkan.evaluation.aggregate import aggregate_seeds
from dkan.names import HEADLINE

TAG_KEY, TAG_TRIAL, TAG_STATE, TAG_KIND = "dkan.sweep_key", "dkan.trial_id", "dkan.state", "dkan.run_kind"
TAG_SELECTED, TAG_NOTE, TAG_CODE = "dkan.selected", "mlflow.note.content", "dkan.code_version"
ARTIFACTS_DIR = "mlartifacts"  # beside a sqlite store's file
# MLflow's columns that hold artifact locations (absolute URIs): rewritten when a store moves
_LOCATION_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                     ("logged_models", "artifact_location"), ("model_versions", "storage_location"),
                     ("model_versions", "source"))


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

        _REAL_URIS[mask_uri(uri)] = uri
        self.uri = uri
        db = sqlite_path(uri)
        if db is not None:
            relocate_store(db)  # a copied or moved run folder: its artifacts are beside the store, not where they were
        self.client = MlflowClient(tracking_uri=uri)
        exp = self.client.get_experiment_by_name(experiment)
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(
            experiment, artifact_location=artifact_root(uri))

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


class TrialLogger(Callback):
    """Tune callback (runs in the driver): trial runs as children of the sweep's parent run."""

    outage = False  # class default: a logger pickled by an older version restores without the attribute

    def __init__(self, uri: str, experiment: str, parent_id: str, sweep_key: str, n_seeds: int):
        self.uri, self.experiment, self.parent_id = mask_uri(uri), experiment, parent_id  # no password pickled
        _REAL_URIS[self.uri] = uri
        self.key, self.n_seeds = sweep_key, n_seeds
        self._tracker: Tracker | None = None
        self.run_ids: dict[str, str] = {}
        self.last: dict[str, dict] = {}
        self.outage = False  # the store failed on the last call

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
            tags = {TAG_KEY: self.key, TAG_TRIAL: trial.trial_id, TAG_KIND: "trial"}
            # numbered in the order the study's trials started (counted in the store: a resume goes on counting)
            n = self.tracker.count(**{TAG_KEY: self.key, TAG_KIND: "trial"}) + 1 if not self.tracker.find(**tags) else 0
            self.run_ids[trial.trial_id] = self.tracker.run(trial_name(n, trial.config), tags, params, self.parent_id)
        return self.run_ids[trial.trial_id]

    def _guard(self, what: str, fn: Callable[[], None]) -> None:
        """Run one logging call; while the store is unreachable, warn once and let the sweep go on."""
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - a tracking outage must not stop the trials
            if not self.outage:
                print(f"warning: MLflow store {self.uri} unreachable while logging {what} ({type(e).__name__}: "
                      f"{str(e)[:200]}); the sweep goes on. Each trial's final state, metrics, config and cost are "
                      "written when the study's search ends (or by --resume); per-seed points sent during the "
                      "outage are missing", flush=True)
            self.outage = True
            return
        if self.outage:
            print(f"MLflow store {self.uri} reachable again", flush=True)
            self.outage = False

    def on_trial_start(self, iteration, trials, trial, **info):
        self._guard("a trial's start", lambda: self._run(trial))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.last[trial.trial_id] = result
        self._guard("a trial's result", lambda: self._result(trial, result))

    def _result(self, trial, result: dict[str, Any]) -> None:
        run_id = self._run(trial)
        step = int(result.get("seeds_done", 0))
        seed = int(result.get("last_seed", step))
        self.tracker.metrics(run_id, {k: v for k, v in result.items() if k.startswith(("val_", "test_"))}, step=step)
        per_seed = result.get(f"seed{seed}_AP_all")
        if per_seed is not None:
            self.tracker.metrics(run_id, {"seed_AP_all": per_seed}, step=seed)

    def on_trial_complete(self, iteration, trials, trial, **info):
        state = trial_state(int(self.last.get(trial.trial_id, {}).get("seeds_done", 0)), self.n_seeds)
        self._guard("a trial's end", lambda: self.tracker.finish(self._run(trial), state))

    def on_trial_error(self, iteration, trials, trial, **info):
        reason = str(getattr(trial, "error_msg", None) or getattr(trial, "error_file", None) or "error")
        self._guard("a trial's error",
                    lambda: self.tracker.finish(self._run(trial), "failed", status="FAILED", reason=reason))


def trial_state(seeds_done: int, n_seeds: int, failed: bool = False) -> str:
    """A trial run's ``dkan.state``: completed, stopped early (n/N seeds) or failed."""
    if failed:
        return "failed"
    return "completed" if seeds_done >= n_seeds else f"stopped early ({seeds_done}/{n_seeds} seeds)"


def trial_name(n: int, config: dict[str, Any]) -> str:
    """"trial 3: fka 0.44 / lka 0.014": the study's n-th trial and its distillation weights."""
    w = [f"{k.split('_')[0]} {float(config[k]):.2g}" for k in ("fka_weight", "lka_weight") if k in config]
    return f"trial {n}: {' / '.join(w)}" if w else f"trial {n}"


def log_trials(tracker: Tracker, key: str, trials: list[dict[str, Any]], selected: str | None, note: str,
               data_root: Path, code_version: str, cost_per_s: tuple[float, float]) -> None:
    """What each trial run gets once its study's search is over (resume-safe; done once per run): its
    full fine-tune config (params and config.yaml), code version, dataset, cost (CPU/GPU seconds:
    ``cost_per_s`` = (CPUs, GPUs) a trial holds, times its wall time); the selected one tagged and described.

    ``trials``: {"trial_id", "config": the fine-tune config dict of its first seed, "wall_s", and optional
    "state" (``trial_state``), "final" (its last val metrics) and "seeds_done"}: a run whose end or last
    result never reached the store (an outage) gets them here."""
    import yaml

    for t in trials:
        run_id = tracker.find(**{TAG_KEY: key, TAG_TRIAL: t["trial_id"]})
        if run_id is None:
            continue
        run = tracker.client.get_run(run_id)
        tags = run.data.tags
        final = {k: v for k, v in (t.get("final") or {}).items() if run.data.metrics.get(k) != v}
        if final:  # its last result never reached the store (an outage while it ran)
            tracker.metrics(run_id, final, step=int(t.get("seeds_done", 0)))
        if run.info.status == "RUNNING" and t.get("state"):  # its end never reached the store
            failed = t["state"] == "failed"
            tracker.finish(run_id, t["state"], status="FAILED" if failed else "FINISHED")
        if "dkan.logged" not in tags:
            tracker.params(run_id, flatten(t["config"]))
            tracker.client.log_text(run_id, yaml.safe_dump(t["config"], sort_keys=False), "config.yaml")
            tracker.dataset(run_id, data_root, "train")
            wall = float(t.get("wall_s") or 0.0)
            tracker.metrics(run_id, {"wall_s": wall, "cost_cpu_s": wall * cost_per_s[0],
                                     "cost_gpu_s": wall * cost_per_s[1]})
            tracker.tags(run_id, {TAG_CODE: code_version, "dkan.logged": "true"})
        if t["trial_id"] == selected:
            tracker.tags(run_id, {TAG_SELECTED: "true", TAG_NOTE: note})


def track_search(tracker: Tracker, plan, study, grid, tuned, best: dict[str, Any], verdicts: list[str]) -> None:
    """``log_trials`` for a study's finished search (``plan``/``study``: sweeps.plan's Plan and Study,
    ``tuned``: the test phase's Trial, ``best``: the selected trial's last result)."""
    from dataclasses import asdict

    from dkan import runfolder
    from dkan.names import HPARAMS
    from sweeps.jobs import finetune_job
    from sweeps.plan import DRIVER_CPU
    from sweeps.report import code_version

    first = plan.seeds[0]
    trials = []
    for r in grid:
        if not r.metrics or "trial_id" not in r.metrics:
            continue
        tid = r.metrics["trial_id"]
        folder = study.runs_dir / tid / f"seed{first}"
        # the seed's own config.yaml (threads and device as run); built again if the trial never started it
        cfg = _read_yaml(folder / runfolder.CONFIG) or asdict(finetune_job(
            study.template, "dkan", first, folder, plan.select_split, {k: r.config[k] for k in HPARAMS}).cfg)
        done = int(r.metrics.get("seeds_done", 0))
        final = {k: v for k, v in r.metrics.items() if k.startswith("val_") and isinstance(v, (int, float))}
        trials.append({"trial_id": tid, "config": cfg, "wall_s": r.metrics.get("time_total_s", 0.0),
                       "state": trial_state(done, len(plan.seeds), r.error is not None), "seeds_done": done,
                       "final": final})
    res = plan.resources
    hp = ", ".join(f"{k}={v:.4g}" for k, v in tuned.hparams.items())
    note = (f"**Selected** for {study.key}: the best mean {plan.objective} over the seeds it ran "
            f"({float(best.get(plan.objective, math.nan)):.4f}), among the trials that ran all {len(plan.seeds)} "
            f"seeds. Hyperparameters: {hp}.\n\nOn test:\n" + "\n".join(f"- {v}" for v in verdicts))
    log_trials(tracker, study.key, trials, tuned.trial_id, note, plan.data_root, code_version(),
               (res.workers * res.cpus_per_worker + DRIVER_CPU, res.workers * res.gpus_per_worker))


def _read_yaml(path: Path) -> dict | None:
    import yaml

    try:
        return yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return None


def log_base_run(tracker: Tracker, out: Path, split: str, ckpt: Path, data_root: Path) -> str:
    """The base model's run (kind ``base``): its config (params and config.yaml), val metrics, the loss
    curve (metric ``loss`` by iteration, from the run folder's history) and dataset; found again on resume."""
    import yaml

    from dkan import runfolder
    from dkan.model.checkpoint import load_checkpoint

    tags = {TAG_KEY: f"{out}|base|{split}", TAG_KIND: "base"}
    found = tracker.find(**tags)
    if found:
        return found
    folder = Path(ckpt).parent
    cfg = (yaml.safe_load((folder / runfolder.CONFIG).read_text()) if (folder / runfolder.CONFIG).is_file()
           else load_checkpoint(Path(ckpt), "base checkpoint", "pass a model_final.pt")["meta"]["config"])
    run_id = tracker.run(f"base model: {split}", tags, {"split": split, **flatten(cfg)})
    tracker.client.log_text(run_id, yaml.safe_dump(cfg, sort_keys=False), "config.yaml")
    tracker.dataset(run_id, data_root, "train")
    history = runfolder.read_jsonl(folder / runfolder.HISTORY)
    tracker.series(run_id, [(k, v, int(h["iteration"])) for h in history for k, v in h.items() if k != "iteration"])
    m = runfolder.done_metrics(folder) or {}
    tracker.metrics(run_id, {f"val_{k}" if "AP" in k else k: v for k, v in m.items()})
    tracker.tags(run_id, {"dkan.checkpoint": str(ckpt)})
    tracker.finish(run_id, "completed")
    return run_id


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
        if Path(f).is_dir():  # a bundle: its config and class list (the weights are the logged models)
            for name in ("config.yaml", "classes.txt"):
                if (Path(f) / name).is_file():
                    tracker.client.log_artifact(parent, str(Path(f) / name), "bundle")
        else:
            tracker.client.log_artifact(parent, str(f))
    for i, sentence in enumerate(verdicts):
        tracker.client.set_tag(parent, f"dkan.verdict.{i}", sentence[:4000])
    selection = {f"best_{k}": v for k, v in best.items() if k.startswith(("val_AP", "test_AP"))}
    tracker.metrics(parent, selection | {"seed_finetunes": finetunes})
    tracker.finish(parent, "completed")


def main(argv: list[str] | None = None) -> int:
    """``python -m sweeps.tracking relocate RUN_DIR``: after copying or moving a run folder, point its
    MLflow store at the artifacts beside it (then ``mlflow ui --backend-store-uri sqlite:///RUN_DIR/mlflow.db``)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m sweeps.tracking", description=main.__doc__)
    p.add_argument("command", choices=["relocate"])
    p.add_argument("run_dir", type=Path)
    args = p.parse_args(argv)
    db = args.run_dir / "mlflow.db"
    if not db.is_file():
        print(f"error: {db} not found. Fix: pass the --out folder of a sweep (it holds mlflow.db)")
        return 2
    print(f"{db}: {relocate_store(db)} artifact locations now under {db.parent / ARTIFACTS_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
