"""``Tracker``: a thin MLflow client for the sweep's run tree (MLflow imported lazily, here only). Runs are
found again by their tags (``sweeps.tracking``), so a resumed sweep adds no duplicate runs."""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from pathlib import Path
from typing import Any

from sweeps.tracking import (
    MODEL_DEVELOPMENT,
    TAG_EXPERIMENT_KIND,
    TAG_STATE,
    artifact_root,
    filter_value,
    mask_uri,
    real_uri,
    relocate_store,
    remember_uri,
    sqlite_path,
)


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
