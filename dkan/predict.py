"""Run a trained detector on new images: `dkan predict`.

A model comes from a fit checkpoint (``model_final.pt``), an exported bundle (a best-config YAML
beside its model file) or an MLflow model URI whose files hold such a checkpoint. Images go
through the dataset's own loader (grayscale and 16-bit files become the 3-channel uint8 the model
was trained on). Output: COCO-style JSON (``images``, ``categories``, ``annotations`` with
``bbox`` xywh and ``score``); an unreadable image is reported by name and the others are done.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.models.detection import FasterRCNN
from tqdm import tqdm

from dkan.config import BaseTrainConfig, FinetuneConfig, ModelConfig, from_dict, read_yaml
from dkan.data.coco import CocoDict, ImageRecord, make_categories
from dkan.data.dataset import DetectionDataset
from dkan.errors import DkanError
from dkan.evaluation.coco_ap import to_coco_results
from dkan.model.checkpoint import load_checkpoint
from dkan.model.detector import build_detector

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
CHECKPOINT_SUFFIXES = (".pt", ".pth")
# what reading an image can raise: missing/unreadable/truncated files (OSError), bad modes, bombs
IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class PredictError(DkanError, ValueError):
    pass


@dataclass
class LoadedModel:
    """A detector ready for inference (eval mode) and its class names (label i is classes[i - 1])."""

    model: FasterRCNN
    classes: tuple[str, ...]
    source: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Prediction:
    """COCO-style detections of a set of images plus the images that could not be read."""

    coco: CocoDict
    failed: list[dict[str, str]]  # [{"file_name", "error"}]

    @property
    def n_images(self) -> int:
        return len(self.coco["images"])


# ---------------------------------------------------------------- models


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
        cls = FinetuneConfig if meta.get("stage") == "finetune" else BaseTrainConfig
        model_cfg = from_dict(cls, meta["config"], where).model
        classes = meta["classes"]
    if model_cfg is None or not classes:
        raise PredictError(
            f"{where}: no model config or class list (a bare state dict). Fix: pass the model_final.pt "
            "written by `dkan finetune` / `dkan base-train`, which carries both"
        )
    # the backbone's pretrained weights come with the state dict: never look for the training machine's files
    model = build_detector(dataclasses.replace(model_cfg, weights=None), len(classes))
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise PredictError(
            f"{where}: weights do not fit the model config ({str(e)[:300]}). "
            "Fix: pass the checkpoint together with the config it was trained with"
        ) from e
    from dkan.engine.setup import resolve_device

    model.eval().to(resolve_device(str(device)))
    return LoadedModel(model, tuple(classes), where, meta)


def load_checkpoint_model(path: Path, device: str | torch.device = "cpu") -> LoadedModel:
    """A ``model_final.pt`` from ``dkan base-train`` / ``dkan finetune`` (read with weights only)."""
    ckpt = load_checkpoint(Path(path), "model checkpoint", "pass a model_final.pt written by base-train or finetune")
    return model_from_checkpoint(ckpt, str(path), device)


def bundle_model_file(bundle: Path) -> tuple[Path, dict[str, Any]]:
    """(model file, config dict) of a bundle: a folder with one best-config YAML, or the YAML itself.

    The model file is ``provenance.model_file`` (relative to the YAML) when given, else the only
    ``model*.pt``/``*.pt`` in the folder other than the config's ``base_checkpoint``.
    """
    bundle = Path(bundle)
    if bundle.is_dir():
        yamls = sorted(bundle.glob("*.yaml")) + sorted(bundle.glob("*.yml"))
        if len(yamls) != 1:
            raise PredictError(
                f"{bundle}: a bundle holds exactly one config YAML, found {[p.name for p in yamls]}. "
                "Fix: pass the YAML file itself as --bundle"
            )
        config_path = yamls[0]
    else:
        config_path = bundle
    cfg = read_yaml(config_path, "bundle config", PredictError)
    here = config_path.parent
    named = (cfg.get("provenance") or {}).get("model_file")
    if named:
        path = Path(named) if Path(named).is_absolute() else here / named
        if not path.is_file():
            raise PredictError(
                f"{config_path}: provenance.model_file {named!r} not found at {path}. "
                "Fix: copy the whole bundle folder, model files included"
            )
        return path, cfg
    base = Path(str(cfg.get("base_checkpoint", ""))).name
    found = [p for p in sorted(here.rglob("*")) if p.suffix in CHECKPOINT_SUFFIXES and p.name != base]
    preferred = [p for p in found if p.name.startswith("model")]
    found = preferred if len(preferred) == 1 else found
    if len(found) != 1:
        raise PredictError(
            f"{here}: expected one model file (*.pt besides the base checkpoint {base!r}), "
            f"found {[str(p.relative_to(here)) for p in found]}. Fix: set provenance.model_file in "
            f"{config_path.name}, or pass the model with --checkpoint"
        )
    return found[0], cfg


def load_bundle_model(bundle: Path, device: str | torch.device = "cpu") -> LoadedModel:
    """The selected model of an exported bundle (see ``bundle_model_file``)."""
    path, cfg = bundle_model_file(Path(bundle))
    ckpt = load_checkpoint(path, "bundle model", "copy the whole bundle folder, model files included")
    model_cfg = from_dict(ModelConfig, cfg["model"], f"{bundle}: model") if "model" in cfg else None
    classes = (cfg.get("provenance") or {}).get("classes")
    return model_from_checkpoint(ckpt, str(path), device, model_cfg, classes)


def load_model_uri(uri: str, device: str | torch.device = "cpu", tracking_uri: str | None = None) -> LoadedModel:
    """An MLflow model (``models:/name/version``, ``runs:/id/path`` or any artifact URI) whose files
    hold a fit checkpoint; the files are downloaded and the checkpoint read with weights only."""
    import mlflow  # optional: only this path needs it

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="dkan-model-") as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        except Exception as e:  # MlflowException, connection and permission errors alike
            raise PredictError(
                f"model URI {uri!r}: cannot download ({str(e)[:300]}). Fix: check the name/version "
                "and --tracking-uri (or MLFLOW_TRACKING_URI)"
            ) from e
        files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.suffix in CHECKPOINT_SUFFIXES)
        for path in sorted(files, key=lambda p: (p.name != "model_final.pt", str(p))):
            ckpt = load_checkpoint(path, "model file", "log the fit checkpoint (model_final.pt) with the model")
            if isinstance(ckpt, dict) and "meta" in ckpt and "model" in ckpt:
                return model_from_checkpoint(ckpt, f"{uri} ({path.name})", device)
    raise PredictError(
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
        raise PredictError("model: give exactly one of --checkpoint, --bundle, --model-uri. Fix: pick one")
    if checkpoint is not None:
        return load_checkpoint_model(Path(checkpoint), device)
    if bundle is not None:
        return load_bundle_model(Path(bundle), device)
    return load_model_uri(str(model_uri), device, tracking_uri)


# ---------------------------------------------------------------- images


def collect_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given; folders -> their image files (recursively, sorted); a ``.txt`` -> one path per
    line (relative to the list's folder; blank lines and ``#`` comments skipped). Missing paths are
    kept, so they are reported as unreadable alongside the others."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES))
        elif p.suffix.lower() == ".txt" and p.is_file():
            for line in p.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    out.append(Path(line) if Path(line).is_absolute() else p.parent / line)
        else:
            out.append(p)
    return out


def read_image(path: Path) -> torch.Tensor:
    """float32 3xHxW in [0, 1]: exactly the evaluation-time model input of the training dataset's
    loader and transforms (grayscale -> 3 equal channels, 16-bit scaled by its range)."""
    return DetectionDataset([ImageRecord(Path(path), 0, 0, (), (), 0)], [], cache=False)[0][0].as_subclass(torch.Tensor)


def display_image(img: torch.Tensor) -> np.ndarray:
    """A model input (float 3xHxW in [0, 1]) -> HxWx3 uint8 for drawing."""
    return (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


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


def predict_images(
    loaded: LoadedModel,
    paths: Sequence[Path],
    batch_size: int = 4,
    score_thresh: float | None = None,
    progress: bool = True,
    draw_dir: Path | None = None,
    draw_thresh: float = 0.3,
) -> Prediction:
    """Detections of every readable image in ``paths``; unreadable ones land in ``Prediction.failed``.
    ``score_thresh`` replaces the model's own (``model.box_score_thresh``, 0.05 by default)."""
    model = loaded.model
    if score_thresh is not None:
        model.roi_heads.score_thresh = float(score_thresh)
    images: list[dict] = []
    annotations: list[dict] = []
    failed: list[dict[str, str]] = []
    bar = tqdm(total=len(paths), desc="predict", unit="img", disable=not progress)
    drawn: set[str] = set()
    for start in range(0, len(paths), max(1, batch_size)):
        batch: list[tuple[int, Path, torch.Tensor]] = []
        for i, path in enumerate(paths[start : start + batch_size], start=start + 1):
            try:
                batch.append((i, path, read_image(path)))
            except IMAGE_ERRORS as e:
                failed.append({"file_name": str(path), "error": f"{type(e).__name__}: {e}"})
                bar.write(f"cannot read {path}: {e} (skipped)")
        outs = detect(model, [img for _, _, img in batch]) if batch else []
        for (image_id, path, img), out in zip(batch, outs):
            images.append(
                {"id": image_id, "file_name": str(path), "height": int(img.shape[1]), "width": int(img.shape[2])}
            )
            for det in to_coco_results(image_id, out):
                det.update(id=len(annotations) + 1, area=det["bbox"][2] * det["bbox"][3], iscrowd=0)
                annotations.append(det)
            if draw_dir is not None:
                _draw_one(img, out, loaded.classes, Path(draw_dir), path, drawn, draw_thresh)
        bar.update(len(paths[start : start + batch_size]))
    bar.close()
    coco = {
        "info": {"model": loaded.source, "score_thresh": float(model.roi_heads.score_thresh)},
        "images": images,
        "categories": make_categories(loaded.classes),
        "annotations": annotations,
    }
    return Prediction(coco, failed)


def _draw_one(
    img: torch.Tensor,
    out: dict[str, torch.Tensor],
    classes: Sequence[str],
    draw_dir: Path,
    path: Path,
    taken: set[str],
    thresh: float,
) -> None:
    from dkan.plots import draw_boxes

    keep = out["scores"] >= thresh
    names = [classes[int(lab) - 1] for lab in out["labels"][keep]]
    picture = draw_boxes(display_image(img), out["boxes"][keep].tolist(), names, out["scores"][keep].tolist(), classes)
    name, n = f"{path.stem}.png", 1
    while name in taken:  # two inputs with one file name (different folders) keep both drawings
        n += 1
        name = f"{path.stem}_{n}.png"
    taken.add(name)
    draw_dir.mkdir(parents=True, exist_ok=True)
    picture.save(draw_dir / name)


def write_prediction(pred: Prediction, path: Path) -> None:
    """The COCO JSON plus a ``failed`` list (written atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({**pred.coco, "failed": pred.failed}, indent=1))
    tmp.replace(path)


# ---------------------------------------------------------------- evaluation-set detections (PR curves, drawings)


@dataclass
class EvalDetections:
    gt: CocoDict  # category ids = the model's labels
    records: list[ImageRecord]
    detections: list[dict]  # COCO results
    classes: tuple[str, ...]


def evaluation_detections(
    checkpoint: Path, split: str = "test", data_root: str | None = None, device: str = "auto", batch_size: int = 8
) -> EvalDetections:
    """The raw detections behind ``dkan evaluate``: the same ground truth, for PR curves and drawings."""
    from dkan.data.prepared import PreparedData
    from dkan.engine.setup import eval_ground_truth

    ckpt = load_checkpoint(
        Path(checkpoint), "model checkpoint", "pass a model_final.pt written by base-train or finetune"
    )
    loaded = model_from_checkpoint(ckpt, str(checkpoint), device)
    meta = loaded.meta
    cls = FinetuneConfig if meta["stage"] == "finetune" else BaseTrainConfig
    cfg = from_dict(cls, meta["config"], str(checkpoint))
    data = PreparedData.load(Path(data_root or cfg.data.root))
    shots = data.fewshot(cfg.fewshot_seed, cfg.shots) if meta["stage"] == "finetune" else None
    gt = eval_ground_truth(data, split, loaded.classes, shots)
    records = data.records(gt)
    return EvalDetections(gt, records, detect_records(loaded.model, records, batch_size), loaded.classes)


# ---------------------------------------------------------------- command line


def run_cli(args: Any) -> int:
    """`dkan predict`: 0 when at least one image was read, 1 when none could be; errors in the model
    or an input with no images at all raise (the CLI prints them, exit 2)."""
    import sys

    paths = collect_images(args.images)
    if not paths:
        raise PredictError(
            f"{' '.join(map(str, args.images))}: no images found (suffixes {', '.join(IMAGE_SUFFIXES)}). "
            "Fix: pass image files, folders holding them, or a .txt list of paths"
        )
    loaded = load_model(
        Path(args.checkpoint) if args.checkpoint else None,
        Path(args.bundle) if args.bundle else None,
        args.model_uri,
        args.device,
        args.tracking_uri,
    )
    pred = predict_images(
        loaded,
        paths,
        args.batch_size,
        args.score_thresh,
        progress=True,
        draw_dir=Path(args.draw) if args.draw else None,
        draw_thresh=args.draw_thresh,
    )
    write_prediction(pred, Path(args.out))
    for f in pred.failed:
        print(f"cannot read {f['file_name']}: {f['error']}", file=sys.stderr)
    n_det = len(pred.coco["annotations"])
    print(
        f"{pred.n_images} images, {n_det} detections -> {args.out}"
        + (f"; drawings in {args.draw}" if args.draw else "")
    )
    if not pred.n_images:
        print(
            f"error: no image could be read ({len(pred.failed)} failed). Fix: check the paths and file formats",
            file=sys.stderr,
        )
        return 1
    if pred.failed:
        print(
            f"warning: {len(pred.failed)} of {len(paths)} images could not be read "
            f"(listed under 'failed' in {args.out})",
            file=sys.stderr,
        )
    return 0
