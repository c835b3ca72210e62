"""Names shared by the package, the sweep and the command line (one home, so they never drift).

Also the one parser of integer lists (``--seeds 1-10``, ``--shots 1,3,5``) used by every CLI.
"""

from __future__ import annotations

import argparse

# headline metrics of an evaluation (AP50 means over classes; per-class AP is "AP/<class>")
HEADLINE = ("AP_base", "AP_novel", "AP_all")
PER_CLASS_PREFIX = "AP/"

PROFILES = ("paper", "cpu-quick")
# fine-tuning methods (distill.method): DKAN (distillation), TFA (last layer only), plain (DKAN without a teacher)
METHODS = ("dkan", "tfa", "plain")
LKA_STUDENT = ("scaled", "raw")  # distill.lka_student
BOX_HEADS = ("cosine", "fc")
COSINE_NORMS = ("graph", "inplace")  # model.cosine_norm: inside the autograd graph, or TFA's in-place renorm
EVAL_SPLITS = ("val", "test")
# AP50 interpolations: COCO 101-point (keys "AP_all", "AP/<class>") and VOC07 11-point ("voc07/AP_all", ...)
METRICS = ("coco", "voc07")
PROTOCOLS = ("val", "paper")  # select on val, or on test as the paper did

# DKAN's distillation hyperparameters, the sweep's search dimensions (DistillConfig fields)
HPARAMS = ("fka_weight", "lka_weight", "fka_tau", "lka_tau")


def metric_key(name: str, metric: str = "coco") -> str:
    """The metrics-dict key of ``name`` (``AP_all``, ``AP/<class>``) under ``metric``: coco keys carry no prefix."""
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r} is not one of {METRICS}")
    return name if metric == "coco" else f"{metric}/{name}"


def parse_int_list(text: str) -> list[int]:
    """'1-10' / '1,3,5' / '1-3,7' -> sorted unique ints."""
    out: set[int] = set()
    try:
        for part in text.split(","):
            if "-" in part.strip()[1:]:
                lo, hi = part.split("-", 1)
                if int(hi) < int(lo):
                    raise ValueError
                out.update(range(int(lo), int(hi) + 1))
            else:
                out.add(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of integers such as 1-10 or 1,3,5") from None
    return sorted(out)
