"""The MLflow pyfunc model of a dkan detector, logged as code (MLflow's models-from-code): this file
is copied into every logged model, so loading one needs the ``dkan`` package, not ``sweeps``.

    model = mlflow.pyfunc.load_model("models:/NEU-DET-split1-5shot/1")
    model.predict(pandas.DataFrame({"image": ["a.jpg", "b.jpg"]}), params={"score_thresh": 0.3})
    model.unwrap_python_model().predict(None, image_array)   # an HxWx3 (or NxHxWx3) array

One row per detection: image (its path, or its index in an array), category, category_id,
score, and the box x, y, width, height in image pixels (COCO's xywh). An image that cannot be read
is skipped with a warning and listed in the frame's ``attrs["failed"]``; the others are detected.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

COLUMNS = ["image", "category", "category_id", "score", "x", "y", "width", "height"]


def as_images(model_input: Any) -> list[tuple[str, Any]]:
    """(name, path or 3xHxW float tensor) pairs of a DataFrame/list of paths or an image array."""
    import torch

    if isinstance(model_input, pd.DataFrame):
        col = model_input["image"] if "image" in model_input else model_input.iloc[:, 0]
        return [(str(p), str(p)) for p in col]
    if isinstance(model_input, np.ndarray) and model_input.dtype.kind in "uif":
        arr = model_input if model_input.ndim == 4 or (model_input.ndim == 3 and model_input.shape[-1] > 4) \
            else model_input[None]
        out = []
        for i, img in enumerate(arr):
            img = np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 else img[..., :3]
            scale = 255.0 if img.dtype.kind in "ui" else 1.0  # integer pixels: 8-bit; floats: already in [0, 1]
            out.append((str(i), torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / scale))
        return out
    return [(str(p), str(p)) for p in np.ravel(np.asarray(model_input, dtype=object))]


class DetectorModel(PythonModel):
    """A dkan checkpoint (artifact ``checkpoint``: a model_final.pt) as an MLflow model."""

    def load_context(self, context) -> None:
        from pathlib import Path

        from dkan.bundle import BundleError, check_files
        from dkan.inference import load_checkpoint_model

        files = {k: Path(v) for k, v in context.artifacts.items()}
        fix = ("use the study's bundle (`dkan predict --bundle RUN_FOLDER/best_configs/KEY`), or log the model again "
               "by running its sweep with this version of dkan")
        if "manifest" not in files:
            raise BundleError(f"{files.get('checkpoint')}: this MLflow model carries no manifest of its files' sizes "
                              f"and hashes (logged before models had one), so it cannot be checked. Fix: {fix}")
        check_files(files["manifest"], files, fix, what="MLflow model")  # nothing runs on a changed model
        self.loaded = load_checkpoint_model(context.artifacts["checkpoint"], os.environ.get("DKAN_DEVICE", "cpu"))

    # a DataFrame hint: MLflow infers no schema from it (the signature logged with the model is the schema)
    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from dkan.data.images import IMAGE_ERRORS, read_image
        from dkan.inference import detect

        model, classes = self.loaded.model, self.loaded.classes
        model.roi_heads.score_thresh = float((params or {}).get("score_thresh", 0.05))
        rows, failed = [], []
        for name, item in as_images(model_input):
            try:
                image = read_image(item) if isinstance(item, str) else item
            except IMAGE_ERRORS as e:  # named and skipped: the other images' detections are kept
                failed.append({"image": name, "error": f"{type(e).__name__}: {e}"})
                logging.getLogger(__name__).warning("cannot read %s: %s (skipped)", name, e)
                continue
            out = detect(model, [image])[0]
            for box, label, score in zip(out["boxes"].tolist(), out["labels"].tolist(), out["scores"].tolist()):
                x1, y1, x2, y2 = box
                rows.append([name, classes[int(label) - 1], int(label), float(score), x1, y1, x2 - x1, y2 - y1])
        frame = pd.DataFrame(rows, columns=COLUMNS).astype({"category_id": "int64", "score": "float64"})
        frame.attrs["failed"] = failed  # the images that could not be read, with their errors
        return frame


mlflow.models.set_model(DetectorModel())
