"""Nested dataclass configs, saved and loaded as YAML. Unknown keys are errors.

One config type per job: ``BaseTrainConfig`` (base classes) and ``FinetuneConfig`` (K-shot,
DKAN or TFA), both a ``TrainConfig`` (what every run has). ``dkan.profiles`` fills the ``paper`` and
``cpu-quick`` profiles. ``with_values`` sets dotted keys to typed values (the sweep's points, ``--set``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dkan import yamlio
from dkan.errors import DkanError
from dkan.names import BOX_HEADS, CHECKPOINT_FORMATS, COSINE_NORMS, LKA_STUDENT, METHODS, PRECISIONS

T = TypeVar("T")


class ConfigError(DkanError, ValueError):
    pass


@dataclass
class ModelConfig:
    """torchvision Faster R-CNN + FPN; sizes fit 200 px images with 9 px to full-image defects."""

    backbone: str = "resnet18"  # resnet101 | resnet50 | resnet18 | mobilenet_v3_large
    weights: str | None = None  # torchvision enum name ("ResNet50_Weights.IMAGENET1K_V2") or a local state-dict file
    fpn_channels: int = 256
    anchor_sizes: list[int] = field(default_factory=lambda: [16, 32, 64, 128, 256])  # one per level P2..P6
    aspect_ratios: list[float] = field(
        default_factory=lambda: [0.25, 0.5, 1.0, 2.0, 4.0]
    )  # scratches are long and thin
    min_size: int = 200  # shorter side at test (and at training when train_min_sizes is empty)
    # multi-scale training: a shorter side drawn per image (torchvision's transform); must end with min_size
    train_min_sizes: list[int] = field(default_factory=list)
    max_size: int = 333
    rpn_pre_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_train: int = 1000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_test: int = 1000
    rpn_batch_size_per_image: int = 256
    box_batch_size_per_image: int = 512
    representation_size: int = 1024
    box_head: str = "fc"  # fc | cosine (the Incremental RCNN classifier)
    cosine_scale: float = 20.0
    # graph: class weights normalised inside the autograd graph; inplace: rows renormalised in place, outside
    # the graph, before each forward (TFA and the authors' CosineSimBBoxHead)
    cosine_norm: str = "graph"
    # with pretrained weights: stem + the first N ResNet stages frozen (the authors' frozen_stages=1)
    frozen_stages: int = 0
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    box_detections_per_img: int = 100


@dataclass
class DataConfig:
    root: str = "data/synthetic"  # a folder written by `dkan prepare-data`
    split: int | None = 1  # NEU-DET class split 1-3; or give base (and novel) classes
    base: list[str] | None = None
    novel: list[str] | None = None
    hflip: float = 0.5
    vflip: float = 0.5


@dataclass
class OptimConfig:
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 8
    iterations: int = 1000
    lr_steps: list[int] = field(default_factory=list)  # iterations at which lr *= gamma
    epochs: float = 0.0  # > 0: iterations = epochs * images / batch_size (and lr_step_epochs likewise)
    lr_step_epochs: list[float] = field(default_factory=list)
    gamma: float = 0.1
    warmup_iters: int = 100
    warmup_factor: float = 0.001
    clip_grad_norm: float = 0.0  # > 0: clip the gradient norm (keeps from-scratch training finite)

    def rescaled(self, iterations: int) -> "OptimConfig":
        """This schedule's shape at another length (the one rule for every shortened or lengthened run):
        the learning-rate steps at the same fractions of the run, the warm-up as long as before but at
        most a tenth of the run (at least one iteration). An epoch-based schedule becomes iteration-based."""
        if iterations < 1:
            raise ConfigError(f"iterations {iterations}: a schedule needs at least 1. Fix: pass 1 or more")
        if self.epochs > 0:
            fractions = [e / self.epochs for e in self.lr_step_epochs]
        else:
            fractions = [s / self.iterations for s in self.lr_steps]
        return dataclasses.replace(
            self, iterations=iterations, epochs=0.0, lr_step_epochs=[],
            lr_steps=[round(f * iterations) for f in fractions],
            warmup_iters=min(self.warmup_iters, max(1, iterations // 10)),
        )


def authors_defaults(split: int | None = None) -> dict[str, float]:
    """The authors' DKAN loss settings for a NEU-DET class split (DistillConfig fields); any other split
    or data set: split 1's. The one home of these values (the config defaults, the profiles and the
    sweep's first trial read them here).

    Chan-Sun/DKAN configs/distill/split_{1,2,3}/dkan_*shot_fine_tuning.py: split 1: FKA weight=1,
    tau=5; LKA (ICKLDivergence) loss_weight=0.01, tau=5. Splits 2 and 3: FKA weight=5, tau=1.0; LKA
    keeps loss_weight=0.01 and its own tau=5 (written out in the LKA entry, not the shared ``tau``).
    """
    if split in (2, 3):
        return {"fka_weight": 5.0, "fka_tau": 1.0, "lka_weight": 0.01, "lka_tau": 5.0}
    return {"fka_weight": 1.0, "fka_tau": 5.0, "lka_weight": 0.01, "lka_tau": 5.0}


_SPLIT1 = authors_defaults(1)


@dataclass
class DistillConfig:
    method: str = "dkan"  # dkan | tfa (last layer only, no teacher) | plain (DKAN's trained parts, no teacher)
    fka_weight: float = _SPLIT1["fka_weight"]
    fka_tau: float = _SPLIT1["fka_tau"]
    lka_weight: float = _SPLIT1["lka_weight"]
    lka_tau: float = _SPLIT1["lka_tau"]
    # LKA's student logits: "scaled" (ours: the cosine head's logits, scale x cos, as it classifies) or "raw"
    # (the authors' code: the cosines before the scale, against the teacher's FC logits; docs/method.md "Differences")
    lka_student: str = "scaled"


@dataclass
class _Trained:
    """What is trained, on what, and how: the first three keys of every config."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class TrainConfig(_Trained):
    """What every training run has, base training and fine-tuning alike (``dkan.engine.train.fit``)."""

    out: str = "runs/base"
    seed: int = 0
    eval_split: str = "val"
    checkpoint_every: int = 200
    device: str = "auto"
    threads: int = 0  # torch CPU threads (0: torch's default); results depend on it at the last bit
    precision: str = "auto"  # auto (bf16 on a GPU that has it, else fp32) | fp32 | bf16 | fp16 (dkan.engine.precision)


@dataclass
class BaseTrainConfig(TrainConfig):
    """Base training on the base classes of a split (``train`` = trainval less val)."""


@dataclass
class _FinetuneLead(_Trained):
    """A fine-tune's own keys that come before the common ones. A dataclass lists its bases' fields first (in
    reverse MRO), so they sit in a base of their own: config.yaml keeps the key order it always had."""

    distill: DistillConfig = field(default_factory=DistillConfig)
    base_checkpoint: str = "runs/base/model_final.pt"
    shots: int = 5
    fewshot_seed: int = 1
    freeze_backbone: bool = True


@dataclass
class FinetuneConfig(TrainConfig, _FinetuneLead):
    """K-shot fine-tuning of all classes from a base checkpoint, DKAN or TFA."""

    model: ModelConfig = field(default_factory=lambda: ModelConfig(box_head="cosine"))
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(lr=0.001, batch_size=8, iterations=4000, lr_steps=[3600], warmup_iters=20)
    )
    out: str = "runs/finetune"
    # frozen-feature caches (dkan.distill.cache), MiB each (training set; evaluation set across a worker's seeds):
    # -1 = the device's default (cpu 2048, cuda a quarter of its memory up to 16384), 0 = off
    cache_mb: int = -1
    # model_final.pt: delta = the tensors the fine-tune changed + the base model's path and hash
    # (dkan.model.checkpoint; every reader composes the two), full = every tensor
    checkpoint_format: str = "delta"
    provenance: dict[str, Any] | None = None  # where an exported config came from (ignored by training)


def config_class(stage: str) -> type[TrainConfig]:
    """The config type of a checkpoint's ``meta["stage"]``: a fine-tune's, else base training's."""
    return FinetuneConfig if stage == "finetune" else BaseTrainConfig


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build a dataclass from a dict, recursively; unknown keys and wrong types are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    cfg = cls(**kwargs)
    _check_values(cfg, where)
    return cfg


def _check_values(cfg: Any, where: str) -> None:
    """Ranges a value must lie in, checked when a config is read, before any work."""
    rules: list[tuple[str, bool, str]] = []  # (field, ok, requirement)
    if isinstance(cfg, OptimConfig):
        rules = [
            ("batch_size", cfg.batch_size >= 1, "at least 1"),
            ("iterations", cfg.iterations >= 1 or cfg.epochs > 0, "at least 1 (or set optim.epochs > 0)"),
            ("epochs", cfg.epochs >= 0, "0 (use iterations) or more"),
            ("lr", cfg.lr > 0, "a positive number such as 0.02"), ("warmup_iters", cfg.warmup_iters >= 0, "0 or more"),
        ]
    elif isinstance(cfg, DistillConfig):
        rules = [("method", cfg.method in METHODS, f"one of {METHODS}"),
                 ("lka_student", cfg.lka_student in LKA_STUDENT, f"one of {LKA_STUDENT}")]
    elif isinstance(cfg, ModelConfig):
        rules = [("box_head", cfg.box_head in BOX_HEADS, f"one of {BOX_HEADS}"),
                 ("cosine_norm", cfg.cosine_norm in COSINE_NORMS, f"one of {COSINE_NORMS}")]
    elif isinstance(cfg, FinetuneConfig):
        rules = [
            ("shots", cfg.shots >= 1, "at least 1 (K per class)"),
            ("fewshot_seed", cfg.fewshot_seed >= 1, "1 or more (the few-shot seeds prepare-data writes start at 1)"),
            ("cache_mb", cfg.cache_mb >= -1, "-1 (the device's default), 0 (off) or a size in MiB"),
            ("checkpoint_format", cfg.checkpoint_format in CHECKPOINT_FORMATS, f"one of {CHECKPOINT_FORMATS}"),
        ]
    if isinstance(cfg, TrainConfig):
        rules.append(("precision", cfg.precision in PRECISIONS, f"one of {PRECISIONS}"))
    for name, ok, need in rules:
        if not ok:
            raise ConfigError(f"{where}.{name}: {getattr(cfg, name)!r} is out of range. Fix: set it to {need}")


def _coerce(tp: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, where)
    if origin is dict or tp is Any:
        if origin is dict and not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
        try:
            value = float(value.strip())
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}. Fix: write a number such as 0.02") from None
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}. Fix: write a number such as 0.02")
        return float(value)
    if tp in (int, str, bool) and not (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}. Fix: give a value of that type")
    if tp is float and not isinstance(value, float):
        raise ConfigError(f"{where}: expected a number, got {value!r}. Fix: write a number such as 0.02")
    return value


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_yaml(cfg: Any, path: Path) -> None:
    """The config as YAML, written atomically."""
    from dkan.runfolder import write_yaml

    write_yaml(path, to_dict(cfg))


def read_yaml(path: Path, what: str = "config file", error: type[Exception] = ConfigError) -> Any:
    """A YAML file's content ({} when empty), with ``error`` naming the file when missing, malformed or refused
    (too large, anchors or aliases: ``dkan.yamlio``, the one reader of YAML a user hands in)."""
    try:
        return yamlio.read(Path(path), what) or {}
    except yamlio.BadYaml as e:
        raise error(str(e)) from e


def load_yaml(cls: type[T], path: Path) -> T:
    return from_dict(cls, read_yaml(path), str(path))


def with_values(cfg: T, values: Mapping[str, Any], where: str = "config",
                labels: Mapping[str, str] | None = None) -> T:
    """``cfg`` with dotted keys set to values (``{"optim.lr": 0.01}``), checked as ``from_dict`` checks a file:
    an unknown key, a wrong type or a value out of range is a ``ConfigError`` naming ``where`` (a key's own
    errors name ``labels[key]`` when given, such as the ``--set`` item it came from)."""
    data = to_dict(cfg)
    for key, value in values.items():
        label = (labels or {}).get(key, f"{where} {key!r}")
        node = data
        *parents, leaf = key.strip().split(".")
        for p in parents:
            if not isinstance(node.get(p), dict):
                raise ConfigError(f"{label}: unknown section {p!r}. Fix: use one of {sorted(node)}")
            node = node[p]
        if leaf not in node:
            raise ConfigError(f"{label}: unknown key {key!r}; known here: {sorted(node)}. Fix: use one of those")
        node[leaf] = value
    return from_dict(type(cfg), data, where)


def apply_overrides(cfg: T, overrides: list[str]) -> T:
    """``["optim.lr=0.01", "model.anchor_sizes=[8,16,32,64,128]"]`` -> a new config (values parsed as YAML,
    then set by ``with_values``)."""
    values: dict[str, Any] = {}
    labels: dict[str, str] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected key=value. Fix: write e.g. --set optim.lr=0.01")
        try:
            value = yamlio.loads(raw, "--set")  # a python tag (!!python/object) or an alias is refused
        except yamlio.BadYaml as e:
            raise ConfigError(f"--set {item!r}: not a plain YAML value ({e.reason}). Fix: give a number, string "
                              "or list") from e
        values[key.strip()], labels[key.strip()] = value, f"--set {item!r}"  # a key given twice: the last wins
    return with_values(cfg, values, "--set", labels)
