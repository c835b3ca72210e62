"""The bundle format, written and read here only: one study's shipped model in a folder anyone can copy.

    config.yaml     the fine-tune config that made model.pt; its paths relative to this folder
                    (base_checkpoint: base_model.pt, out: reproduce), with a ``provenance`` section
    model.pt        the selected model (a fit checkpoint: {"model", "meta"}); a fine-tune's is a delta
                    whose base reference is ``base_model.pt`` beside it (dkan.model.checkpoint)
    base_model.pt   the base model it was fine-tuned from
    classes.txt     one class name per line, in label order
    manifest.json   every file above with its size and sha256, written last: a folder with a manifest is
                    complete, and every load checks it (``check_bundle``), so nothing runs on a changed bundle

``provenance.bundle`` (the format version) marks a config as a bundle's: ``resolve_paths`` then reads
its relative paths against the YAML's folder, so `dkan finetune --config COPY/config.yaml` re-makes
model.pt from any copy and `dkan predict --bundle COPY` runs it. A hand-made bundle (a YAML beside one
model file, no ``model_file``, no ``provenance.bundle``) is read too; it needs no manifest (one is checked
when present), but its classes are checked against its model's like an exported bundle's.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dkan import runfolder
from dkan.config import read_yaml
from dkan.errors import DkanError

CONFIG, MODEL, BASE, CLASSES = "config.yaml", "model.pt", "base_model.pt", "classes.txt"
MANIFEST = "manifest.json"  # {"files": {name: {"size": bytes, "sha256": hex}}}
MANIFEST_BYTES = 1 << 20  # a manifest lists a few files: anything larger is not one
REEXPORT = ("re-export it: `dkan sweep --resume --out RUN_FOLDER` (the sweep that made it) writes the bundle "
            "again, or copy the whole original bundle folder again")
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
    """The bundle in ``folder``: weights placed (hard links where possible), classes.txt, config.yaml, then
    manifest.json (written last and atomically: a folder with a manifest is complete)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)  # a folder being rewritten is never taken for a complete one
    place(Path(base), folder / BASE)
    if model is not None:
        place_model(Path(model), folder / MODEL, folder / BASE)
    if classes:
        runfolder.write_text_atomic(folder / CLASSES, "".join(f"{c}\n" for c in classes))
    cfg = {**config, "base_checkpoint": BASE, "out": "reproduce"}
    cfg["provenance"] = {"bundle": FORMAT, "model_file": MODEL if model is not None else None, "classes": classes,
                         **provenance}
    runfolder.write_yaml(folder / CONFIG, cfg)
    names = [n for n in (CONFIG, MODEL, BASE, CLASSES) if (folder / n).is_file()]
    write_manifest(folder / MANIFEST, {n: folder / n for n in names})
    return folder


def _digest(path: Path) -> dict[str, Any]:
    """A file's size and sha256, read now (never a cached hash: the check is against what is on disk)."""
    with open(path, "rb") as f:
        return {"size": os.fstat(f.fileno()).st_size, "sha256": hashlib.file_digest(f, "sha256").hexdigest()}


def write_manifest(path: Path, files: dict[str, Path]) -> Path:
    """``path``: every one of ``files`` (name -> file) with its size and sha256."""
    return runfolder.write_json(Path(path), {"files": {name: _digest(Path(f)) for name, f in files.items()}})


def read_manifest(path: Path, fix: str) -> dict[str, dict[str, Any]]:
    """The files a manifest lists (name -> {"size", "sha256"}); a missing or malformed one refused."""
    import json

    path = Path(path)
    if not path.is_file():
        raise BundleError(f"{path}: missing: the bundle carries no manifest of its files' sizes and hashes (exported "
                          f"before bundles had one, or not by dkan), so it cannot be checked. Fix: {fix}")
    try:
        if path.stat().st_size > MANIFEST_BYTES:
            raise ValueError("too large")
        files = json.loads(path.read_text())["files"]
        ok = isinstance(files, dict) and all(isinstance(v, dict) and isinstance(v.get("size"), int)
                                             and isinstance(v.get("sha256"), str) for v in files.values())
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise BundleError(f"{path}: not a bundle manifest (a JSON object {{\"files\": {{name: {{\"size\", "
                          f"\"sha256\"}}}}}}). Fix: {fix}")
    return files


def check_files(manifest: Path, files: dict[str, Path], fix: str, skip: tuple[str, ...] = (),
                what: str = "bundle") -> None:
    """Every file the manifest lists (but ``skip``) is ``files[name]`` with its recorded size and sha256
    (``what``: the bundle or the MLflow model, as the message names it)."""
    for name, want in read_manifest(manifest, fix).items():
        if name in skip:
            continue
        path = files.get(name)
        if path is None or not path.is_file():
            raise BundleError(f"{path or name}: listed in {manifest} but missing. Fix: {fix}")
        got = _digest(path)
        if got != {"size": want["size"], "sha256": want["sha256"]}:
            how = (f"{got['size']} bytes, {want['size']} when written" if got["size"] != want["size"]
                   else f"content hash {got['sha256'][:12]}, {want['sha256'][:12]} when written")
            raise BundleError(f"{path}: changed since the {what} was written ({how}): nothing runs on a changed "
                              f"{what}. Fix: {fix}")


def check_bundle(config_path: Path, config: Any, skip: tuple[str, ...] = ()) -> None:
    """A bundle's files against its manifest (beside ``config_path``): required of an exported bundle
    (``provenance.bundle``), checked in a hand-made one when present. ``skip``: names not compared (the
    config `dkan finetune --config` is handed, which its user may edit)."""
    config_path = Path(config_path)
    manifest = config_path.parent / MANIFEST
    if not manifest.is_file() and not is_bundle_config(config):
        return
    if config_path.name not in read_manifest(manifest, REEXPORT):
        raise BundleError(f"{manifest}: does not list {config_path.name}. Fix: {REEXPORT}")
    files = {p.name: p for p in config_path.parent.iterdir()}
    check_files(manifest, files, REEXPORT, skip)


def check_mlflow_model(folder: Path) -> None:
    """A downloaded MLflow model (``folder`` holding ``MLmodel``) against the manifest logged with it, when it
    has one (every model dkan logs does; a plain artifact folder has none and is read as before)."""
    from dkan import yamlio

    mlmodel = Path(folder) / "MLmodel"
    try:
        spec = yamlio.read(mlmodel, "MLflow model file") if mlmodel.is_file() else None
    except (DkanError, OSError):
        spec = None
    flavor = ((spec or {}).get("flavors") or {}).get("python_function") if isinstance(spec, dict) else None
    artifacts = (flavor or {}).get("artifacts") if isinstance(flavor, dict) else None
    if not isinstance(artifacts, dict) or "manifest" not in artifacts:
        return
    files = {k: Path(folder) / str(v.get("path", "")) for k, v in artifacts.items() if isinstance(v, dict)}
    check_files(files["manifest"], files, "log the model again, or use the study's bundle (`dkan predict --bundle "
                "RUN_FOLDER/best_configs/KEY`)", what="MLflow model")


def check_classes(named: dict[str, list[str] | int]) -> None:
    """The class lists a bundle holds (where -> names, or a count where only the number is known, e.g. the
    checkpoint's head) agree with the first one given; the first that differs is named."""
    def show(c: list[str] | int) -> str:
        return f"{c} classes" if isinstance(c, int) else f"{len(c)} classes {list(c)[:8]}"[:300]

    def count(c: list[str] | int) -> int:
        return c if isinstance(c, int) else len(c)

    items = [(where, c) for where, c in named.items() if c]
    for where, classes in items[1:]:
        first, ref = items[0]
        both_named = not isinstance(classes, int) and not isinstance(ref, int)
        if (list(classes) != list(ref)) if both_named else (count(classes) != count(ref)):
            raise BundleError(f"{where}: {show(classes)}, but {first} has {show(ref)}: the bundle's files do not "
                              f"belong together. Fix: {REEXPORT}")


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
    check_bundle(path, cfg)
    return Bundle(path, cfg, _model_file(path, cfg))


def classes_of(bundle: Bundle, ckpt: dict[str, Any]) -> dict[str, list[str] | int]:
    """Where each class list of a bundle lives -> it: config.yaml's provenance, classes.txt, the model
    file's meta, and the number its box predictor's head scores (a count: the head holds no names)."""
    out: dict[str, list[str] | int] = {f"{bundle.config_path} (provenance.classes)": bundle.classes or []}
    txt = bundle.config_path.parent / CLASSES
    if txt.is_file():
        out[str(txt)] = [line.strip() for line in txt.read_text(errors="replace")[:1 << 20].splitlines()
                         if line.strip()]
    out[f"{bundle.model_file} (meta.classes)"] = list((ckpt.get("meta") or {}).get("classes") or [])
    state = ckpt.get("model", ckpt)
    head = state.get("roi_heads.box_predictor.cls_score.weight") if isinstance(state, dict) else None
    if head is not None and getattr(head, "ndim", 0) == 2:
        out[f"{bundle.model_file} (its box predictor's head)"] = int(head.shape[0]) - 1  # + background
    return out


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
