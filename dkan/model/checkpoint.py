"""Checkpoints (atomic save, checked load, deltas against a base model) and the base -> all-classes surgery.

A fine-tune's ``model_final.pt`` is a *delta*: the tensors its fine-tune changed, plus its base model's
path and content hash under ``"delta"`` (a TFA seed stores its box predictor; DKAN and plain their FPN,
RPN and RoI head; the frozen body is the base model's, byte for byte). ``load_checkpoint`` composes it
with the base for every reader and refuses a base whose content changed. A relative base path is read
from the delta's own folder (a bundle: ``model.pt`` beside ``base.pt``).
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dkan.errors import DkanError

PREDICTOR = "roi_heads.box_predictor."


META_KEYS = ("stage", "classes", "base", "novel", "config", "iteration")  # what fit()'s _meta writes
DELTA = "delta"  # {"base": path, "sha256": its content hash, "keys": every key of the composed state, in order}
_digests: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256: a base is hashed once


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
    return _composed(ckpt, path, fix) if DELTA in ckpt else ckpt


def file_sha256(path: Path) -> str:
    """The content hash of a file (cached per process while its size and mtime stay)."""
    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _digests:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _digests[key] = h.hexdigest()
    return _digests[key]


def as_delta(payload: dict[str, Any], base_path: Path) -> dict[str, Any]:
    """``payload`` (a full checkpoint) as a delta against the base model at ``base_path``: only the tensors
    that differ from the base's (in value, shape or dtype) or that the base lacks."""
    base_path = Path(base_path)
    base = load_checkpoint(base_path, "base checkpoint", "pass the base model the fine-tune started from")["model"]
    state = payload["model"]
    changed = {k: v for k, v in state.items() if not _same(v, base.get(k))}
    delta = {"base": str(base_path.resolve()), "sha256": file_sha256(base_path), "keys": list(state)}
    return {**payload, "model": changed, DELTA: delta}


def rebased(path: Path, base_path: str) -> dict[str, Any]:
    """The checkpoint at ``path`` as stored (a delta stays a delta, checked whole first), its base reference
    set to ``base_path`` (e.g. ``base_model.pt``, relative to the folder it is then written to)."""
    load_checkpoint(path, "model", "pass the fine-tune's model_final.pt")  # readable, composable, hash matching
    raw = torch.load(Path(path), map_location="cpu", weights_only=True)
    if DELTA in raw:
        raw[DELTA] = {**raw[DELTA], "base": base_path}
    return raw


def is_delta(path: Path) -> bool:
    """Whether the checkpoint file at ``path`` is stored as a delta (its tensors are not read)."""
    try:
        raw = torch.load(Path(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - unreadable: load_checkpoint names the problem
        return False
    return isinstance(raw, dict) and DELTA in raw


def _same(a: torch.Tensor, b: torch.Tensor | None) -> bool:
    if b is None or a.shape != b.shape or a.dtype != b.dtype:
        return False
    return torch.equal(a.detach().cpu(), b.detach().cpu())


def _composed(ckpt: dict[str, Any], path: Path, fix: str) -> dict[str, Any]:
    """A delta checkpoint with its base model's tensors filled in (bit for bit the full model)."""
    d = ckpt[DELTA]
    if not (isinstance(d, dict) and isinstance(d.get("base"), str) and isinstance(d.get("sha256"), str)
            and isinstance(d.get("keys"), list) and all(isinstance(k, str) for k in d["keys"])):
        raise CheckpointError(f"{path}: a corrupt delta checkpoint (its 'delta' entry is malformed). Fix: {fix}")
    base = Path(d["base"]) if Path(d["base"]).is_absolute() else path.parent / d["base"]
    how = ("it holds only what its fine-tune changed and needs the base model it started from")
    if not base.is_file():
        raise CheckpointError(
            f"{path}: {how}, {base}, which is missing. Fix: put that base model back at {base} (a moved cache: "
            f"$DKAN_CACHE), or use the study's bundle, which holds both")
    if file_sha256(base) != d["sha256"]:
        raise CheckpointError(
            f"{path}: {how}, {base}, but that file changed since (content hash {file_sha256(base)[:12]}, "
            f"expected {d['sha256'][:12]}): composing the two would give a model no one trained. Fix: restore "
            f"the base model that made it, or fine-tune again from the new one")
    full = load_checkpoint(base, "base checkpoint of a delta", f"restore {base}")["model"]
    state, missing = {}, []
    for k in d["keys"]:
        v = ckpt["model"].get(k, full.get(k))
        if v is None:
            missing.append(k)
        state[k] = v
    if missing:
        raise CheckpointError(f"{path}: a corrupt delta checkpoint: {len(missing)} tensor(s) in neither it nor its "
                              f"base {base} (e.g. {missing[0]}). Fix: {fix}")
    out = {k: v for k, v in ckpt.items() if k != DELTA}
    out["model"] = state
    return out


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
