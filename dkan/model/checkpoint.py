"""Checkpoints (atomic save, checked load) and the base -> all-classes surgery."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dkan.errors import DkanError

PREDICTOR = "roi_heads.box_predictor."


META_KEYS = ("stage", "classes", "base", "novel", "config", "iteration")  # what fit()'s _meta writes


class CheckpointError(DkanError, ValueError):
    """A checkpoint that is missing, unreadable, unsafe or not from dkan."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write to a temporary file, then rename: a crash never leaves a truncated checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, what: str = "checkpoint", fix: str = "check the path") -> dict[str, Any]:
    """Load a dkan checkpoint without ever running code from it.

    ``weights_only=True`` unpickles tensors and plain types only: a crafted ``.pt`` (shared
    ``--out``, ``$DKAN_CACHE``) is refused instead of executing its pickled callables.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} not found. Fix: {fix}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refused a global: code or a foreign object
        found = [line.strip() for line in str(e).splitlines() if "GLOBAL" in line or "nsupported" in line]
        raise CheckpointError(
            f"{path}: refused to load {what}: it holds Python objects other than tensors and plain types "
            f"({found[0][:200] if found else type(e).__name__}); a dkan checkpoint never does, and loading it "
            "could run code. "
            f"Fix: use a checkpoint written by dkan from a folder only you can write ({fix})"
        ) from e
    except Exception as e:  # truncated or foreign file
        raise CheckpointError(f"{path}: cannot read {what} ({type(e).__name__}: {e}). Fix: {fix}") from e
    ok = isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict) and isinstance(ckpt.get("meta"), dict)
    if not ok or not all(k in ckpt["meta"] for k in META_KEYS):
        if ok:
            got = f"'meta' without {[k for k in META_KEYS if k not in ckpt['meta']]}"
        elif isinstance(ckpt, dict):
            got = f"a mapping with keys {sorted(map(str, ckpt))[:6]}"
        else:
            got = f"a {type(ckpt).__name__}"
        raise CheckpointError(
            f"{path}: not a dkan checkpoint: expected a mapping with 'model' and 'meta' (as base-train and "
            f"finetune write), got {got}. Fix: {fix} (a bare state dict is not enough: the class list and "
            f"config in 'meta' are needed)"
        )
    return ckpt


def check_base_checkpoint(ckpt: dict[str, Any], path: Path, base: tuple[str, ...]) -> None:
    """The teacher must be a base model of exactly these base classes, in this order."""
    classes = tuple(ckpt.get("meta", {}).get("classes", ()))
    if ckpt.get("meta", {}).get("stage") != "base" or classes != tuple(base):
        raise CheckpointError(
            f"{path}: a base checkpoint of classes {list(classes)} (stage {ckpt.get('meta', {}).get('stage')!r}), "
            f"but this split's base classes are {list(base)}. "
            "Fix: pass the base checkpoint trained on this split (dkan base-train with the same data.split)"
        )


def load_base_into(
    student: nn.Module, base_state: dict[str, torch.Tensor], n_base: int, generator: torch.Generator
) -> None:
    """Base -> all classes (the authors' ``random_init`` surgery).

    Everything but the box predictor is copied. In the predictor the background and base rows
    are copied and the novel rows drawn fresh: N(0, 0.01) for classification, N(0, 0.001) for
    box deltas, zero bias. An FC base head may seed a cosine student (its bias is dropped).
    """
    own = student.state_dict()
    for key, value in base_state.items():
        if key not in own:
            continue
        if key.startswith(PREDICTOR):
            rows = (n_base + 1) * (4 if "bbox_pred" in key else 1)
            if value.shape[0] != rows:
                raise CheckpointError(
                    f"base checkpoint: {key} has {value.shape[0]} rows, expected {rows} for {n_base} base classes. "
                    "Fix: use the base model of this split"
                )
            if key.endswith("bias"):
                fresh = torch.zeros_like(own[key])
            else:
                fresh = torch.randn(own[key].shape, generator=generator) * (0.001 if "bbox_pred" in key else 0.01)
            own[key] = torch.cat([value, fresh[rows:]])
        elif own[key].shape != value.shape:
            raise CheckpointError(
                f"base checkpoint: {key} has shape {tuple(value.shape)}, the model expects {tuple(own[key].shape)}. "
                "Fix: use the same model config as base training"
            )
        else:
            own[key] = value
    student.load_state_dict(own)
