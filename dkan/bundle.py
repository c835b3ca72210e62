"""The bundle format, written and read here only: one study's shipped model in a folder anyone can copy.

    config.yaml     the fine-tune config that made model.pt; its paths relative to this folder
                    (base_checkpoint: base_model.pt, out: reproduce), with a ``provenance`` section
    model.pt        the selected model (a fit checkpoint: {"model", "meta"}); a fine-tune's is a delta
                    whose base reference is ``base_model.pt`` beside it (dkan.model.checkpoint)
    base_model.pt   the base model it was fine-tuned from
    classes.txt     one class name per line, in label order

``provenance.bundle`` (the format version) marks a config as a bundle's: ``resolve_paths`` then reads
its relative paths against the YAML's folder, so `dkan finetune --config COPY/config.yaml` re-makes
model.pt from any copy and `dkan predict --bundle COPY` runs it. A hand-made bundle (a YAML beside one
model file, no ``model_file``) is read too.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dkan import runfolder
from dkan.config import read_yaml
from dkan.errors import DkanError

CONFIG, MODEL, BASE, CLASSES = "config.yaml", "model.pt", "base_model.pt", "classes.txt"
FORMAT = 1  # provenance.bundle: paths in the config are relative to its folder
CHECKPOINT_SUFFIXES = (".pt", ".pth")


class BundleError(DkanError, ValueError):
    pass


@dataclass(frozen=True)
class Bundle:
    config_path: Path
    config: dict[str, Any]  # as written (relative paths); ``resolve_paths`` for absolute ones
    model_file: Path | None  # None: a bundle exported before any model was selected

    @property
    def provenance(self) -> dict[str, Any]:
        return self.config.get("provenance") or {}

    @property
    def classes(self) -> list[str] | None:
        return self.provenance.get("classes") or None


def write_bundle(folder: Path, config: dict[str, Any], base: Path, model: Path | None, classes: list[str],
                 provenance: dict[str, Any]) -> Path:
    """The bundle in ``folder``: weights placed (hard links where possible), classes.txt, then config.yaml
    (written last and atomically: a folder with a config.yaml is complete)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    place(Path(base), folder / BASE)
    if model is not None:
        place_model(Path(model), folder / MODEL, folder / BASE)
    if classes:
        runfolder.write_text_atomic(folder / CLASSES, "".join(f"{c}\n" for c in classes))
    cfg = {**config, "base_checkpoint": BASE, "out": "reproduce"}
    cfg["provenance"] = {"bundle": FORMAT, "model_file": MODEL if model is not None else None, "classes": classes,
                         **provenance}
    runfolder.write_yaml(folder / CONFIG, cfg)
    return folder


def place(src: Path, dst: Path) -> None:
    """``src`` at ``dst``: a hard link where the file system allows (no second copy of the weights), else a copy."""
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def place_model(src: Path, dst: Path, base: Path) -> None:
    """A fit checkpoint at ``dst``: a delta is rewritten to name ``base`` (beside it) as its base when that
    is the base it was made from (the folder then holds both: self-contained), else written whole."""
    from dkan.model.checkpoint import DELTA, file_sha256, load_checkpoint, rebased, save_checkpoint

    stored = rebased(src, base.name)
    if DELTA not in stored:
        place(src, dst)
    elif base.is_file() and stored[DELTA]["sha256"] == file_sha256(base):
        save_checkpoint(dst, stored)
    else:
        save_checkpoint(dst, load_checkpoint(src, "model", "pass the fine-tune's model_final.pt"))


def is_bundle_config(data: Any) -> bool:
    return isinstance(data, dict) and bool((data.get("provenance") or {}).get("bundle"))


def resolve_paths(data: Any, config_path: Path) -> Any:
    """A bundle's config with data.root, base_checkpoint and out resolved against its folder; any other
    config (not a bundle's: relative to the working directory) as it is."""
    if not is_bundle_config(data):
        return data
    here = Path(config_path).absolute().parent

    def resolve(v):
        return str(here / v) if isinstance(v, str) and v and not Path(v).is_absolute() else v

    data = {**data, **{k: resolve(data[k]) for k in ("base_checkpoint", "out") if k in data}}
    if isinstance(data.get("data"), dict) and "root" in data["data"]:
        data["data"] = {**data["data"], "root": resolve(data["data"]["root"])}
    return data


def read_bundle(path: Path) -> Bundle:
    """A bundle: its folder (holding exactly one config YAML) or the YAML itself.

    The model file is ``provenance.model_file`` (relative to the YAML) when given, else the only
    ``model*.pt``/``*.pt`` in the folder other than the config's ``base_checkpoint``."""
    path = Path(path)
    if path.is_dir():
        yamls = sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml"))
        if len(yamls) != 1:
            raise BundleError(f"{path}: a bundle holds exactly one config YAML, found {[p.name for p in yamls]}. "
                              "Fix: pass the YAML file itself as --bundle")
        path = yamls[0]
    cfg = read_yaml(path, "bundle config", BundleError)
    if not isinstance(cfg, dict):
        raise BundleError(f"{path}: a bundle config is a mapping, not {type(cfg).__name__}. Fix: pass a bundle's "
                          "config.yaml")
    return Bundle(path, cfg, _model_file(path, cfg))


def _model_file(config_path: Path, cfg: dict[str, Any]) -> Path:
    here = config_path.parent
    prov = cfg.get("provenance") or {}
    named = prov.get("model_file")
    if named:
        path = Path(named) if Path(named).is_absolute() else here / named
        if not path.is_file():
            raise BundleError(f"{config_path}: provenance.model_file {named!r} not found at {path}. "
                              "Fix: copy the whole bundle folder, model files included")
        return path
    base = Path(str(cfg.get("base_checkpoint", ""))).name
    found = [p for p in sorted(here.rglob("*")) if p.suffix in CHECKPOINT_SUFFIXES and p.name != base]
    preferred = [p for p in found if p.name.startswith("model")]
    found = preferred if len(preferred) == 1 else found
    if len(found) != 1:
        raise BundleError(
            f"{here}: expected one model file (*.pt besides the base checkpoint {base!r}), "
            f"found {[str(p.relative_to(here)) for p in found]}. Fix: set provenance.model_file in "
            f"{config_path.name}, or pass the model with --checkpoint")
    return found[0]


def find_bundles(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(config path, provenance) of every bundle config under ``folder`` (a run folder's best_configs); a link
    pointing out of ``folder`` is refused."""
    from dkan import yamlio

    out, top = [], Path(folder).resolve()
    for path in sorted(Path(folder).rglob("*.y*ml")) if Path(folder).is_dir() else []:
        if top not in path.resolve().parents:  # a link out of the folder: its target is never read
            raise BundleError(f"{path}: links outside {folder} (to {path.resolve()}). Fix: remove the link")
        try:
            cfg = yamlio.read(path) or {}
        except (yamlio.BadYaml, OSError):
            continue
        if isinstance(cfg, dict) and ("provenance" in cfg or "base_checkpoint" in cfg):  # not an MLmodel's conda.yaml
            out.append((path, cfg.get("provenance") or {}))
    return out
