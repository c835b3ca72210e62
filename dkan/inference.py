"""A trained detector ready for inference, from any of its three homes, and its raw detections.

A model comes from a fit checkpoint (``model_final.pt``), an exported bundle (``dkan.bundle``) or an
MLflow model URI whose files hold such a checkpoint; every checkpoint is read with weights only.
``detect`` runs it on model inputs (``dkan.data.images.read_image``); ``evaluation_detections`` gives
the detections behind ``dkan evaluate`` (PR curves, drawings).
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torchvision.models.detection import FasterRCNN
from tqdm import tqdm

from dkan.bundle import CHECKPOINT_SUFFIXES, check_classes, check_mlflow_model, classes_of, read_bundle
from dkan.config import ModelConfig, config_class, from_dict
from dkan.data.coco import CocoDict, ImageRecord
from dkan.data.images import read_image
from dkan.engine.evaluate_checkpoint import evaluand_from_checkpoint
from dkan.engine.setup import resolve_device
from dkan.errors import DkanError
from dkan.evaluation.coco_ap import to_coco_results
from dkan.model.checkpoint import load_checkpoint
from dkan.model.detector import build_detector


class ModelError(DkanError, ValueError):
    """A model that cannot be loaded: no config or classes, weights that do not fit, a URI that fails."""


@dataclass
class LoadedModel:
    """A detector ready for inference (eval mode) and its class names (label i is classes[i - 1])."""

    model: FasterRCNN
    classes: tuple[str, ...]
    source: str
    meta: dict[str, Any] = field(default_factory=dict)


def model_from_checkpoint(
    ckpt: dict[str, Any],
    where: str,
    device: str | torch.device = "cpu",
    model_cfg: ModelConfig | None = None,
    classes: Sequence[str] | None = None,
) -> LoadedModel:
    """A fit payload ``{"model": state_dict, "meta": {...}}`` -> LoadedModel. ``model_cfg`` and ``classes``
    are needed only when the payload has no ``meta`` (a bare state dict)."""
    state = ckpt.get("model", ckpt)
    meta = ckpt.get("meta") or {}
    if meta:
        model_cfg = from_dict(config_class(meta.get("stage", "")), meta["config"], where).model
        classes = meta["classes"]
    if model_cfg is None or not classes:
        raise ModelError(
            f"{where}: no model config or class list (a bare state dict). Fix: pass the model_final.pt "
            "written by `dkan finetune` / `dkan base-train`, which carries both"
        )
    # the backbone's pretrained weights come with the state dict: never look for the training machine's files
    model = build_detector(dataclasses.replace(model_cfg, weights=None), len(classes))
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ModelError(
            f"{where}: weights do not fit the model config ({str(e)[:300]}). "
            "Fix: pass the checkpoint together with the config it was trained with"
        ) from e
    model.eval().to(resolve_device(str(device)))
    return LoadedModel(model, tuple(classes), where, meta)


def load_checkpoint_model(path: Path, device: str | torch.device = "cpu") -> LoadedModel:
    """A ``model_final.pt`` from ``dkan base-train`` / ``dkan finetune`` (read with weights only)."""
    ckpt = load_checkpoint(Path(path), "model checkpoint", "pass a model_final.pt written by base-train or finetune")
    return model_from_checkpoint(ckpt, str(path), device)


def load_bundle_model(bundle: Path, device: str | torch.device = "cpu") -> LoadedModel:
    """The selected model of an exported bundle (``dkan.bundle.read_bundle``)."""
    b = read_bundle(Path(bundle))
    ckpt = load_checkpoint(b.model_file, "bundle model", "copy the whole bundle folder, model files included")
    check_classes(classes_of(b, ckpt))  # config.yaml, classes.txt and the model agree
    model_cfg = from_dict(ModelConfig, b.config["model"], f"{bundle}: model") if "model" in b.config else None
    return model_from_checkpoint(ckpt, str(b.model_file), device, model_cfg, b.classes)


@contextmanager
def using_tracking_uri(uri: str | None) -> Iterator[None]:
    """MLflow's global tracking URI set to ``uri`` (None: left alone) inside the block, then given back as it
    was: ``mlflow.set_tracking_uri`` mirrors it into MLFLOW_TRACKING_URI, so that variable is the state."""
    import os

    import mlflow

    if not uri:
        yield
        return
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)  # None: unset again, as before


def load_model_uri(uri: str, device: str | torch.device = "cpu", tracking_uri: str | None = None) -> LoadedModel:
    """An MLflow model (``models:/name/version``, ``runs:/id/path`` or any artifact URI) whose files
    hold a fit checkpoint; the files are downloaded and the checkpoint read with weights only."""
    import os

    import mlflow  # optional: only this path needs it

    tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri.startswith(("models:/", "runs:/")) and not tracking_uri:  # MLflow would make ./mlflow.db and find nothing
        raise ModelError(f"model URI {uri!r}: a registry or run URI needs its store. Fix: pass --tracking-uri (e.g. "
                         "sqlite:///RUN_DIR/mlflow.db) or set MLFLOW_TRACKING_URI")
    store = tracking_uri.removeprefix("sqlite:///") if tracking_uri and tracking_uri.startswith("sqlite:///") else None
    if store and not Path(store).is_file():  # never create an empty store on a lookup
        raise ModelError(f"--tracking-uri {tracking_uri}: no MLflow store at {store}. Fix: pass the mlflow.db of "
                         "the sweep's run folder")
    # MLflow 3.17 resolves models:/ through the global registry URI (by default the global tracking URI),
    # whatever download_artifacts is passed: the tracking URI is set for the download and given back after it
    with tempfile.TemporaryDirectory(prefix="dkan-model-") as tmp:
        try:
            with using_tracking_uri(tracking_uri):
                local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp,
                                                                 tracking_uri=tracking_uri))
        except Exception as e:  # MlflowException, connection and permission errors alike
            raise ModelError(
                f"model URI {uri!r}: cannot download ({str(e)[:300]}). Fix: check the name/version "
                "and --tracking-uri (or MLFLOW_TRACKING_URI)"
            ) from e
        if local.is_dir():
            check_mlflow_model(local)  # its files as logged (the manifest dkan logs with every model)
        files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.suffix in CHECKPOINT_SUFFIXES)
        for path in sorted(files, key=lambda p: (p.name != "model_final.pt", str(p))):
            ckpt = load_checkpoint(path, "model file", "log the fit checkpoint (model_final.pt) with the model")
            if isinstance(ckpt, dict) and "meta" in ckpt and "model" in ckpt:
                return model_from_checkpoint(ckpt, f"{uri} ({path.name})", device)
    raise ModelError(
        f"model URI {uri!r}: no fit checkpoint (a .pt with 'model' and 'meta') among its files. "
        "Fix: log model_final.pt as an artifact of the MLflow model"
    )


def load_model(
    checkpoint: Path | None = None,
    bundle: Path | None = None,
    model_uri: str | None = None,
    device: str | torch.device = "auto",
    tracking_uri: str | None = None,
) -> LoadedModel:
    """Exactly one of a checkpoint file, a bundle (folder or YAML) or an MLflow model URI."""
    if sum(x is not None for x in (checkpoint, bundle, model_uri)) != 1:
        raise ModelError("model: give exactly one of --checkpoint, --bundle, --model-uri. Fix: pick one")
    if checkpoint is not None:
        return load_checkpoint_model(Path(checkpoint), device)
    if bundle is not None:
        return load_bundle_model(Path(bundle), device)
    return load_model_uri(str(model_uri), device, tracking_uri)


@torch.no_grad()
def detect(
    model: FasterRCNN, images: Sequence[torch.Tensor], device: torch.device | None = None
) -> list[dict[str, torch.Tensor]]:
    """Model inputs (``read_image``) -> torchvision outputs on the CPU (boxes xyxy in image pixels, labels, scores)."""
    device = device or next(model.parameters()).device
    outs = model([im.to(device) for im in images])
    return [{k: v.cpu() for k, v in o.items()} for o in outs]


def detect_records(
    model: FasterRCNN, records: Sequence[ImageRecord], batch_size: int = 8, progress: bool = False
) -> list[dict]:
    """COCO results (image_id = record.image_id) of a dataset's records, e.g. a test split, for PR curves."""
    model.eval()
    results: list[dict] = []
    for start in tqdm(range(0, len(records), batch_size), disable=not progress, desc="detect"):
        batch = records[start : start + batch_size]
        outs = detect(model, [read_image(r.path) for r in batch])
        for r, o in zip(batch, outs):
            results.extend(to_coco_results(r.image_id, o))
    return results


@dataclass
class EvalDetections:
    gt: CocoDict  # category ids = the model's labels
    records: list[ImageRecord]
    detections: list[dict]  # COCO results
    classes: tuple[str, ...]


def evaluation_detections(
    checkpoint: Path, split: str = "test", data_root: str | None = None, device: str = "auto", batch_size: int = 8
) -> EvalDetections:
    """The raw detections behind ``dkan evaluate``: the same model, images and ground truth
    (``evaluand_from_checkpoint``), for PR curves and drawings."""
    ev = evaluand_from_checkpoint(Path(checkpoint), split, data_root, device)
    return EvalDetections(ev.gt, ev.records, detect_records(ev.model, ev.records, batch_size),
                          (*ev.base, *ev.novel))
