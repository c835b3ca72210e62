"""Turn a config into a ready training setup: data, class order, student and (for DKAN) the frozen teacher."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.models.detection import FasterRCNN

from dkan.config import BaseTrainConfig, ConfigError, DistillConfig, FinetuneConfig, ModelConfig, TrainConfig, from_dict
from dkan.data.coco import CocoDict, ImageRecord
from dkan.data.prepared import PreparedData, without_images_of
from dkan.data.splits import resolve_class_split, restrict_classes
from dkan.distill.step import backbone_is_frozen, freeze
from dkan.model.checkpoint import check_base_checkpoint, load_base_into, load_checkpoint
from dkan.model.detector import build_detector
from dkan.names import LKA_STUDENT, METHODS


@dataclass
class TrainingSetup:
    """What ``fit`` trains and evaluates, built from one config (``build_setup``)."""

    stage: str  # base | finetune
    method: str  # base | dkan | tfa | plain
    student: FasterRCNN
    teacher: FasterRCNN | None
    device: torch.device
    base: tuple[str, ...]
    novel: tuple[str, ...]
    train_records: list[ImageRecord]
    eval_records: list[ImageRecord]
    eval_gt: CocoDict  # category ids = the student's labels
    distill: DistillConfig | None = None  # a fine-tune's losses and their weights (None: base training)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.base + self.novel if self.stage == "finetune" else self.base

    @property
    def n_base(self) -> int:
        return len(self.base)


def eval_ground_truth(
    data: PreparedData, split: str, classes: tuple[str, ...], shots: CocoDict | None = None
) -> CocoDict:
    """The evaluated split, renumbered to the model's classes; on val, a fine-tuned seed's own
    few-shot training images are left out (they are sampled from trainval)."""
    coco = data.split(split)
    if split == "val" and shots is not None:
        coco = without_images_of(coco, shots)
    return restrict_classes(coco, classes, drop_empty=False)


def eval_set(data: PreparedData, cfg: TrainConfig, split: str, classes: tuple[str, ...],
             shots: CocoDict | None = None) -> tuple[list[ImageRecord], CocoDict]:
    """The images and ground truth (``eval_ground_truth``) a model trained under ``cfg`` is scored on:
    the one wiring from a config to its evaluation data (``fit`` and every checkpoint evaluation).
    ``shots``: a fine-tune's few-shot set when already read."""
    if isinstance(cfg, FinetuneConfig) and shots is None:
        shots = data.fewshot(cfg.fewshot_seed, cfg.shots)
    gt = eval_ground_truth(data, split, classes, shots)
    return data.records(gt), gt


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: no CUDA device is available here; use device=cpu or auto")
    return torch.device(name)


def set_train_mode(student: FasterRCNN) -> None:
    """Train mode, except a frozen backbone stays in eval mode (its BatchNorm statistics too)."""
    student.train()
    if backbone_is_frozen(student):
        student.backbone.body.eval()


def freeze_for_method(student: FasterRCNN, method: str, freeze_backbone: bool = True) -> FasterRCNN:
    """Freeze what a fine-tuning method does not train (the optimizer takes the rest).

    tfa: only ``roi_heads.box_predictor`` trains (the authors' TFA configs freeze 'backbone', 'neck',
    'rpn_head' and 'roi_head.bbox_head.shared_fcs'). dkan and plain: FPN, RPN and RoI head train; the
    backbone body is frozen when ``freeze_backbone`` (the authors' student: frozen_stages=4).
    The RPN stays in train mode even when frozen: its proposal counts follow the mode.
    """
    if method not in METHODS:
        raise ConfigError(f"distill.method: {method!r}. Fix: use one of {METHODS}")
    if method == "tfa" or freeze_backbone:
        freeze(student.backbone.body)  # eval mode too: BatchNorm statistics stay
    if method == "tfa":
        for part in (student.backbone.fpn, student.rpn, student.roi_heads.box_head):
            for p in part.parameters():
                p.requires_grad_(False)
    return student


def trainable_parameters(model: torch.nn.Module) -> int:
    """Number of scalars the optimizer updates."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_setup(cfg: TrainConfig) -> TrainingSetup:
    device = resolve_device(cfg.device)
    data = PreparedData.load(Path(cfg.data.root))
    split = resolve_class_split(list(data.classes), cfg.data.split, cfg.data.base, cfg.data.novel)
    if cfg.eval_split not in ("val", "test"):
        raise ConfigError(f"eval_split: {cfg.eval_split!r} is not 'val' or 'test'")
    if isinstance(cfg, BaseTrainConfig):
        train = restrict_classes(data.split("train"), split.base)
        records, gt = eval_set(data, cfg, cfg.eval_split, split.base)
        student = build_detector(cfg.model, len(split.base)).to(device)
        set_train_mode(student)
        return TrainingSetup("base", "base", student, None, device, split.base, (), data.records(train), records, gt)
    if not split.novel:
        raise ConfigError("data.novel: fine-tuning needs novel classes; give a split number or base/novel lists")
    if cfg.distill.method not in METHODS:
        raise ConfigError(f"distill.method: {cfg.distill.method!r} is not one of {METHODS}")
    if cfg.distill.lka_student not in LKA_STUDENT:
        raise ConfigError(f"distill.lka_student: {cfg.distill.lka_student!r}. Fix: use one of {LKA_STUDENT}")
    if cfg.distill.lka_student == "raw" and cfg.model.box_head != "cosine":
        raise ConfigError("distill.lka_student=raw: the raw cosines need model.box_head=cosine. Fix: drop it")
    shots = data.fewshot(cfg.fewshot_seed, cfg.shots)
    train = restrict_classes(shots, split.all, drop_empty=False)
    records, gt = eval_set(data, cfg, cfg.eval_split, split.all, shots)
    teacher, base_state = _teacher(cfg, split.base)
    student = build_detector(cfg.model, len(split.all), pretrained=False)  # its state comes from the base model
    load_base_into(student, base_state, len(split.base), torch.Generator().manual_seed(cfg.seed))
    freeze_for_method(student, cfg.distill.method, cfg.freeze_backbone)
    student.to(device)
    set_train_mode(student)
    teacher = teacher.to(device) if cfg.distill.method == "dkan" else None
    return TrainingSetup(
        "finetune",
        cfg.distill.method,
        student,
        teacher,
        device,
        split.base,
        split.novel,
        data.records(train),
        records,
        gt,
        cfg.distill,
    )


SHARED_MODEL_KEYS = ("backbone", "fpn_channels", "representation_size", "min_size", "max_size", "anchor_sizes",
                     "aspect_ratios")  # what the student takes from the base model it starts from


def check_student_fits(base: ModelConfig, student: ModelConfig, path: Path) -> None:
    """The student must share the teacher's architecture and input size (checked by the sweep's plan too)."""
    for key in SHARED_MODEL_KEYS:
        if getattr(base, key) != getattr(student, key):
            raise ConfigError(
                f"model.{key}: {getattr(student, key)!r} differs from the base model's {getattr(base, key)!r} "
                f"({path}); the student must share the teacher's architecture and input size. Fix: set "
                f"model.{key}={getattr(base, key)!r} (--set), or use a base model trained with these settings"
            )


def _teacher(cfg: FinetuneConfig, base: tuple[str, ...]) -> tuple[FasterRCNN, dict]:
    path = Path(cfg.base_checkpoint)
    ckpt = load_checkpoint(path, "base checkpoint", "run `dkan base-train` first, or pass --base-checkpoint PATH")
    check_base_checkpoint(ckpt, path, base)
    base_model = from_dict(BaseTrainConfig, ckpt["meta"]["config"], str(path)).model
    check_student_fits(base_model, cfg.model, path)
    teacher = build_detector(base_model, len(base), pretrained=False)
    teacher.load_state_dict(ckpt["model"])
    return freeze(teacher), ckpt["model"]
