"""The configured detector's FLOPs per image, counted with ``torch.utils.flop_counter.FlopCounterMode`` on
the meta device (no weights, no memory, no download): the input of ``sweeps.core.estimate``'s model of a
sweep's time where this cluster has measured nothing yet.

What one image costs, at the sizes the transform makes of the data's images (resized, padded to 32):

  base step      forward of body, FPN, RPN head and the box head on its sampled RoIs, and the backward of
                 what trains (the counter follows autograd: a frozen stem costs no gradient)
  fine-tune step per method, in the steady state of ``dkan.distill.cache``: the frozen body (plain, DKAN)
                 or body + FPN (TFA) come from memory; DKAN adds the teacher's box head on the student's
                 RoIs (its FPN comes from the cache too). ``finetune_miss``: what a cache miss adds.
  evaluation     inference at the test size, the box head on every kept proposal; ``eval_body``: of it, the
                 frozen body's part, which the evaluations of one base model's fine-tunes share

RoI pooling, NMS and losses are not counted (the counter has no formula for them; they are small next
to the convolutions and the box head). A training size list (multi-scale) is averaged. The counts
take seconds for a ResNet-101; ``cached_flops`` keeps them per configuration.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from dkan import runfolder
from dkan.config import ModelConfig, to_dict

METHODS = ("tfa", "plain", "dkan")
VERSION = 2  # of the counting: a change here counts again


@dataclass(frozen=True)
class DetectorFlops:
    """FLOPs of one image (torch's count: 2 per multiply-add) and the model's size."""

    base_step: float
    finetune_step: dict[str, float]  # per method, frozen features from the cache
    finetune_miss: dict[str, float]  # per method, what computing the frozen features adds
    eval_image: float
    eval_body: float  # of it, the body's forward: shared by the checkpoints of one base model (frozen body)
    view_bytes: dict[str, float]  # per method: bytes of one image view in the cache (fp32)
    params: int  # parameters and buffers of the fine-tuned model (its full checkpoint)
    delta_params: int  # of them, what a DKAN or plain fine-tune changes (its delta checkpoint)


def padded_size(h: int, w: int, min_size: int, max_size: int, divisible: int = 32) -> tuple[int, int]:
    """The canvas torchvision's transform makes of an (h, w) image: its shorter side to ``min_size`` unless the
    longer would pass ``max_size``, then padded to a multiple of ``divisible``."""
    scale = min(min_size / min(h, w), max_size / max(h, w))
    return tuple(int(math.ceil(math.floor(s * scale) / divisible) * divisible) for s in (h, w))


def counted(fn: Callable[[], object]) -> int:
    """FLOPs of what ``fn`` runs, forward and backward."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def count_flops(base: ModelConfig, finetune: ModelConfig, n_base: int, n_all: int, image_hw: tuple[int, int],
                freeze_backbone: bool = True) -> DetectorFlops:
    """Count (module docstring): the teacher / base model from ``base``, the student from ``finetune``."""
    import torch

    from dkan.engine.setup import freeze_for_method
    from dkan.model.detector import build_detector

    with torch.device("meta"):
        teacher = build_detector(base, n_base, pretrained=False)
        students = {m: freeze_for_method(build_detector(finetune, n_all, pretrained=False), m, freeze_backbone)
                    for m in METHODS}
    h, w = image_hw
    test_hw, base_hw = (padded_size(h, w, c.min_size, c.max_size) for c in (finetune, base))
    # a convolution's FLOPs grow with the canvas's area: each training size's dense part is the test size's scaled
    def area(cfg, at) -> float:
        sizes = cfg.train_min_sizes or [cfg.min_size]
        return sum(math.prod(padded_size(h, w, s, cfg.max_size)) for s in sizes) / len(sizes) / math.prod(at)

    scale = area(finetune, test_hw)
    step, miss, view = {}, {}, {}
    for m, s in students.items():
        dense, head = _train_image(s, test_hw, finetune.box_batch_size_per_image, m, teacher if m == "dkan" else None)
        step[m] = dense * scale + head
        miss[m], view[m] = (v * scale for v in _frozen_forward(s, teacher, test_hw, m))
    dense, head = _train_image(teacher, base_hw, base.box_batch_size_per_image, "base")
    dkan = students["dkan"]
    return DetectorFlops(
        base_step=dense * area(base, base_hw) + head, finetune_step=step, finetune_miss=miss, view_bytes=view,
        eval_image=eval_image_flops(dkan, test_hw, finetune.rpn_post_nms_top_n_test),
        eval_body=_frozen_forward(students["plain"], teacher, test_hw, "plain")[0],
        params=sum(t.numel() for t in [*dkan.parameters(), *dkan.buffers()]),
        delta_params=sum(p.numel() for p in dkan.parameters() if p.requires_grad))


def _pooled(model, rois: int, requires_grad: bool):
    import torch

    c = model.backbone.out_channels
    return torch.zeros(rois, c, 7, 7, device="meta", requires_grad=requires_grad)  # what RoIAlign hands the box head


def _train_image(model, hw: tuple[int, int], rois: int, method: str, teacher=None) -> tuple[int, int]:
    """One training image, (the dense part, the box head): what runs forward (the cache's parts not), the
    backward of what trains. The box head's input is a leaf, so the two are counted apart."""
    import torch

    x = torch.zeros(1, 3, *hw, device="meta")
    frozen = method in ("plain", "dkan")
    with torch.no_grad():
        body = model.backbone.body(x) if frozen else None
        feats = model.backbone(x) if method == "tfa" else None
    fpn_trains = any(p.requires_grad for p in model.backbone.fpn.parameters())

    def dense() -> None:
        if method == "tfa":  # TFA: the RPN is frozen and runs under no_grad
            with torch.no_grad():
                model.rpn.head(list(feats.values()))
            return
        f = model.backbone.fpn(body) if body is not None else model.backbone(x)
        objectness, deltas = model.rpn.head(list(f.values()))
        sum(t.sum() for t in [*objectness, *deltas]).backward()

    def head() -> None:
        with torch.set_grad_enabled(method != "tfa"):
            box = model.roi_heads.box_head(_pooled(model, rois, fpn_trains))
        scores, boxes = model.roi_heads.box_predictor(box)
        (scores.sum() + boxes.sum()).backward()
        if teacher is not None:  # DKAN's LKA: the teacher scores the student's RoIs
            with torch.no_grad():
                teacher.roi_heads.box_predictor(teacher.roi_heads.box_head(_pooled(teacher, rois, False)))

    return counted(dense), counted(head)


def _frozen_forward(student, teacher, hw: tuple[int, int], method: str) -> tuple[int, int]:
    """(FLOPs, bytes) of one image view's frozen features: what a cache miss computes and a hit holds."""
    import torch

    x = torch.zeros(1, 3, *hw, device="meta")
    out: dict[str, list] = {}

    def run() -> None:
        with torch.no_grad():
            body = student.backbone.body(x)
            out["body"] = list(body.values())
            if method == "tfa":
                out["fpn"] = list(student.backbone.fpn(body).values())
            if method == "dkan":
                out["teacher"] = list(teacher.backbone.fpn(body).values())

    flops = counted(run)
    kept = out["fpn"] if method == "tfa" else out["body"] + out.get("teacher", [])
    return flops, sum(t.numel() * 4 for t in kept)


def eval_image_flops(model, hw: tuple[int, int], proposals: int) -> int:
    """Inference of one image on an (h, w) canvas: body, FPN, RPN head, the box head on ``proposals`` RoIs (for
    torchvision's ``fasterrcnn_resnet50_fpn`` at 800 x 800 and 1000 proposals: twice its documented 134.38 GFLOPS,
    which count multiply-adds)."""
    import torch

    x = torch.zeros(1, 3, *hw, device="meta")

    def run() -> None:
        with torch.no_grad():
            model.rpn.head(list(model.backbone(x).values()))
            model.roi_heads.box_predictor(model.roi_heads.box_head(_pooled(model, proposals, False)))

    return counted(run)


_COUNTED: dict[str, DetectorFlops] = {}  # this process's counts


def cached_flops(cache_dir: Path, base: ModelConfig, finetune: ModelConfig, n_base: int, n_all: int,
                 image_hw: tuple[int, int], freeze_backbone: bool = True, keep: bool = True) -> DetectorFlops:
    """``count_flops``, kept in ``cache_dir/flops/<hash of its inputs>.json`` (``keep``; else in this process)."""
    key = {"version": VERSION, "base": to_dict(base), "finetune": to_dict(finetune), "n_base": n_base,
           "n_all": n_all, "image_hw": list(image_hw), "freeze_backbone": freeze_backbone}
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(cache_dir) / "flops" / f"{name}.json"
    if name in _COUNTED:
        return _COUNTED[name]
    if path.is_file():
        try:
            return DetectorFlops(**runfolder.read_json(path))
        except (TypeError, ValueError):  # an older or edited file: counted again
            pass
    flops = _COUNTED[name] = count_flops(base, finetune, n_base, n_all, image_hw, freeze_backbone)
    if keep:
        runfolder.write_json(path, asdict(flops))
    return flops
