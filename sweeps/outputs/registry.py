"""Models in MLflow: each study's shipped model and each split's base model, logged as pyfunc models
(``pyfunc_model.py``, with a signature and an input example) and registered in the Model Registry as
``<dataset>-<split>-<K>shot`` / ``<dataset>-<split>-base``.

A logged model's run carries ``dkan.model.*`` tags, so a resumed sweep finds it instead of logging
it again. The shipped model is chosen on the selection split (``sweeps.core.outcome.shipped``).
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
from pathlib import Path

from sweeps.core.layout import RunLayout
from sweeps.core.outcome import ModelRef, Registered, StudyOutcome
from sweeps.core.plan import ClassSplitSpec, Plan
from sweeps.outputs.mlflow_log import log_base_run
from sweeps.shell.tracker import Tracker
from sweeps.tracking import TAG_KEY, TAG_KIND

PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
CHAMPION = "champion"  # the alias of a study's recommended model (registry stages are deprecated)
TAG_MODEL = "dkan.model"  # dkan.model.name / .version / .uri / .seed on the run that logged the model


def registered_name(*parts: str) -> str:
    """A Model Registry name from its parts: characters other than letters, digits, '.', '_', '-' become '-'."""
    return "-".join(re.sub(r"[^A-Za-z0-9._-]+", "-", p).strip("-") for p in parts if p)


def find_logged(tracker: Tracker, run_id: str) -> ModelRef | None:
    """The model a run already logged (a resumed sweep), from its tags."""
    t = tracker.client.get_run(run_id).data.tags
    if f"{TAG_MODEL}.uri" not in t:
        return None
    return ModelRef(t[f"{TAG_MODEL}.name"], t[f"{TAG_MODEL}.version"], t[f"{TAG_MODEL}.uri"], run_id,
                    Path(t[f"{TAG_MODEL}.checkpoint"]), int(t.get(f"{TAG_MODEL}.seed", 0)))


def model_artifacts(checkpoint: Path, tmp: str) -> dict[str, str]:
    """A logged model's files, self-contained: a delta rewritten to name ``base_model.pt`` beside it (MLflow
    keeps a model's artifacts in one folder), with its base model; a full checkpoint alone. The run folder's
    identical files (a split's base model in every study's logged model and bundle) are hard links of one
    (``sweeps.outputs.dedupe``). With them ``manifest``: each file's size and sha256 by artifact name, checked
    when the model loads (``pyfunc_model.DetectorModel.load_context``)."""
    from dkan.bundle import BASE, MANIFEST, place, write_manifest
    from dkan.model.checkpoint import is_delta, rebased, save_checkpoint

    if not is_delta(Path(checkpoint)):
        files = {"checkpoint": str(checkpoint)}
    else:
        stored = rebased(Path(checkpoint), BASE)  # checked whole first: the base is there and unchanged
        base = Path(torch_load_delta_base(checkpoint))
        out, base_copy = Path(tmp) / Path(checkpoint).name, Path(tmp) / BASE
        save_checkpoint(out, stored)
        place(base, base_copy)
        files = {"checkpoint": str(out), "base": str(base_copy)}
    manifest = write_manifest(Path(tmp) / MANIFEST, {k: Path(v) for k, v in files.items()})
    return {**files, "manifest": str(manifest)}


def torch_load_delta_base(checkpoint: Path) -> str:
    """The base model path a delta checkpoint records (resolved against its folder when relative)."""
    import torch

    from dkan.model.checkpoint import DELTA

    base = torch.load(Path(checkpoint), map_location="cpu", weights_only=True, mmap=True)[DELTA]["base"]
    return base if Path(base).is_absolute() else str(Path(checkpoint).parent / base)


def log_detector(tracker: Tracker, run_id: str, checkpoint: Path, name: str, example: Path | None,
                 seed: int = 0) -> ModelRef:
    """``checkpoint`` logged to ``run_id`` as a pyfunc model and registered as ``name`` (its next version)."""
    import mlflow
    import pandas as pd
    import torch
    import torchvision
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    import dkan
    from dkan.inference import using_tracking_uri

    found = find_logged(tracker, run_id)
    if found is not None:
        return found
    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "image")]),
        outputs=Schema([ColSpec("string", "image"), ColSpec("string", "category"), ColSpec("long", "category_id"),
                        *[ColSpec("double", c) for c in ("score", "x", "y", "width", "height")]]),
        params=ParamSchema([ParamSpec("score_thresh", "double", 0.05)]),
    )
    # no requirement inference: it would load the model in a subprocess; the package is installed from the repo
    reqs = [f"dkan-sweep=={dkan.__version__}", f"torch=={torch.__version__.split('+')[0]}",
            f"torchvision=={torchvision.__version__.split('+')[0]}", "pandas", "pillow"]
    # MLflow prints "Successfully registered model" and "Created version" itself: the sweep's console names
    # the registered model once, at the end of the study
    with using_tracking_uri(tracker.uri), mlflow.start_run(run_id=run_id), \
            tempfile.TemporaryDirectory(prefix="dkan-log-") as tmp, contextlib.redirect_stderr(io.StringIO()):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(PYFUNC_FILE), artifacts=model_artifacts(checkpoint, tmp),
            signature=signature, input_example=pd.DataFrame({"image": [str(example)]}) if example else None,
            pip_requirements=reqs, registered_model_name=name,
        )
    version = str(info.registered_model_version)
    ref = ModelRef(name, version, f"models:/{name}/{version}", run_id, Path(checkpoint), seed)
    tracker.tags(run_id, {f"{TAG_MODEL}.name": name, f"{TAG_MODEL}.version": version, f"{TAG_MODEL}.uri": ref.uri,
                          f"{TAG_MODEL}.checkpoint": str(checkpoint), f"{TAG_MODEL}.seed": str(seed),
                          f"{TAG_MODEL}.logged_uri": info.model_uri})
    return ref


def example_image(plan: Plan) -> Path | None:
    """A test image of the dataset: the logged models' input example."""
    from dkan.data.prepared import PreparedData

    data = PreparedData.load(plan.data_root)
    records = data.records(data.split("test"))
    return records[0].path if records else None


def register(plan: Plan, layout: RunLayout, outcome: StudyOutcome) -> Registered:
    """The study's shipped model (the recommended candidate's), logged to its run and registered as
    <dataset>-<split>-<K>shot with the alias ``champion``, beside the split's base model (registered when the
    sweep started)."""
    tracker = Tracker(plan.tracking_uri, plan.dataset)
    model = find_logged(tracker, outcome.parent_run)
    if model is None:
        study = outcome.study
        name = registered_name(plan.dataset, study.split.name, f"{study.shots}shot")
        model = log_detector(tracker, outcome.parent_run, outcome.shipped.checkpoint, name, example_image(plan),
                             outcome.shipped.seed)
    tracker.client.set_registered_model_alias(model.name, CHAMPION, model.version)
    return Registered(model, find_base(tracker, plan.out, outcome.study.split.name))


def register_base(plan: Plan, split: ClassSplitSpec, ckpt: Path) -> ModelRef:
    """The split's base model as an MLflow run of kind ``base`` (config, metrics, loss curve) with the
    model logged and registered as <dataset>-<split>-base; found again on resume."""
    tracker = Tracker(plan.tracking_uri, plan.dataset)
    run_id = log_base_run(tracker, plan.out, split.name, Path(ckpt), plan.data_root)
    return log_detector(tracker, run_id, Path(ckpt), registered_name(plan.dataset, split.name, "base"),
                        example_image(plan))


def find_base(tracker: Tracker, out: Path, split: str) -> ModelRef | None:
    """The base model a sweep logged for ``split`` (None before ``register_base``)."""
    run_id = tracker.find(**{TAG_KEY: f"{out}|base|{split}", TAG_KIND: "base"})
    return find_logged(tracker, run_id) if run_id else None
