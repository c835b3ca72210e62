"""Run a trained detector on new images: `dkan predict`.

The model comes through ``dkan.inference.load_model`` (a checkpoint, a bundle or an MLflow model URI);
images through ``dkan.data.images`` (grayscale and 16-bit files become the 3-channel input the model
was trained on). Output: COCO-style JSON (``images``, ``categories``, ``annotations`` with ``bbox``
xywh and ``score``); an unreadable image is reported by name and the others are done.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from dkan.data.coco import CocoDict, make_categories
from dkan.data.images import IMAGE_ERRORS, IMAGE_SUFFIXES, collect_images, display_image, read_image
from dkan.errors import DkanError
from dkan.evaluation.coco_ap import to_coco_results
from dkan.flags import at_least, fraction, output_file, output_folder
from dkan.inference import LoadedModel, detect, load_model


class PredictError(DkanError, ValueError):
    pass


@dataclass
class Prediction:
    """COCO-style detections of a set of images plus the images that could not be read."""

    coco: CocoDict
    failed: list[dict[str, str]]  # [{"file_name", "error"}]

    @property
    def n_images(self) -> int:
        return len(self.coco["images"])


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
    """The COCO JSON plus a ``failed`` list (written whole or not at all)."""
    from dkan import runfolder

    runfolder.write_text_atomic(Path(path), json.dumps({**pred.coco, "failed": pred.failed}, indent=1))


def run_cli(args: Any) -> int:
    """`dkan predict`: 0 when at least one image was read, 1 when none could be; errors in the model
    or an input with no images at all raise (the CLI prints them, exit 2)."""
    import sys

    at_least(args.batch_size, "--batch-size", 1)
    fraction(args.score_thresh, "--score-thresh")
    fraction(args.draw_thresh, "--draw-thresh")
    paths = collect_images(args.images)
    if not paths:
        raise PredictError(
            f"{' '.join(map(str, args.images))}: no images found (suffixes {', '.join(IMAGE_SUFFIXES)}). "
            "Fix: pass image files, folders holding them, or a .txt list of paths"
        )
    inputs = [*paths, *args.images]  # the images and the folders and lists naming them: never written over
    output_file(args.out, "--out", inputs)  # before the model is loaded: not after an hour of inference
    if args.draw:
        output_folder(args.draw, "--draw", paths)
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
