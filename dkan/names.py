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
CHECKPOINT_FORMATS = ("delta", "full")  # a fine-tune's model_final.pt: what it changed + its base's hash, or all
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # precision: auto = bf16 on a GPU that has it, else fp32
# AP50 interpolations: COCO 101-point (keys "AP_all", "AP/<class>") and VOC07 11-point ("voc07/AP_all", ...)
METRICS = ("coco", "voc07")
PROTOCOLS = ("val", "paper")  # select on val, or on test as the paper did

# DKAN's distillation hyperparameters, the sweep's search dimensions (DistillConfig fields)
HPARAMS = ("fka_weight", "lka_weight", "fka_tau", "lka_tau")


MAX_NAME = 200  # characters of a name that becomes one path component


def unsafe_name(name: object) -> str | None:
    """Why ``name`` cannot be one component of a path (None when it can): the one rule for every name
    that comes from a file or a flag and ends up in a path (class, split, data set, study, model names).
    A path separator, ``..``, a NUL byte or a leading dot could steer a write outside its folder."""
    if not isinstance(name, str) or not name.strip():
        return "is not a non-empty string"
    if any(c in name for c in ("/", "\\", "\0")):
        return "holds a path separator ('/' or '\\') or a NUL byte"
    if ".." in name:
        return "holds '..'"
    if name.startswith("."):
        return "starts with a dot"
    if len(name) > MAX_NAME:
        return f"is longer than {MAX_NAME} characters"
    return None


def metric_key(name: str, metric: str = "coco") -> str:
    """The metrics-dict key of ``name`` (``AP_all``, ``AP/<class>``) under ``metric``: coco keys carry no prefix."""
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r} is not one of {METRICS}")
    return name if metric == "coco" else f"{metric}/{name}"


MAX_LIST = 10_000  # values in one integer list (seeds, K): more is a typo, not a sweep


def parse_name_list(text: str) -> list[str]:
    """'a,b, c' -> ['a', 'b', 'c'] (a list flag's names). One that names nothing ('' or ',') is refused: an
    empty list never stands for the flag's default."""
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r} is an empty list. Fix: name one or more, comma-separated "
                                         "(e.g. a,b), or leave the flag out for its default")
    return names


def name_list_text(text: str) -> str:
    """A comma-separated list flag kept as its text (split where it is read), refused when it names nothing."""
    parse_name_list(text)
    return text


def parse_int_list(text: str) -> list[int]:
    """'1-10' / '1,3,5' / '1-3,7' -> sorted unique ints; an empty list ('' or ',') is refused."""
    if not text.replace(",", "").strip():
        raise argparse.ArgumentTypeError(f"{text!r} is an empty list. Fix: give values such as 1-10 or 1,3,5, or "
                                         "leave the flag out for its default")
    out: set[int] = set()
    try:
        for part in text.split(","):
            if "-" in part.strip()[1:]:
                lo, hi = part.split("-", 1)
                if int(hi) < int(lo):
                    raise ValueError
                if int(hi) - int(lo) >= MAX_LIST:
                    raise argparse.ArgumentTypeError(f"{text!r}: more than {MAX_LIST} values; a list such as 1-10 "
                                                     "is expected")
                out.update(range(int(lo), int(hi) + 1))
            else:
                out.add(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of integers such as 1-10 or 1,3,5") from None
    return sorted(out)
