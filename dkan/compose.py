"""A job's config from the command line: profile defaults <- ``--config`` YAML (merged) <- flags <- ``--set``.

``--iterations`` rescales the schedule (``OptimConfig.rescaled``: the learning-rate steps move with
it), as the sweep's ``--base-iterations`` / ``--finetune-iterations`` do. An exported bundle's
config names its files relative to its own folder (``dkan.bundle.resolve_paths``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from dkan.bundle import CONFIG, check_bundle, is_bundle_config, resolve_paths
from dkan.config import BaseTrainConfig, FinetuneConfig, apply_overrides, from_dict, read_yaml, to_dict
from dkan.data.splits import parse_class_list
from dkan.errors import DkanError
from dkan.profiles import base_config, choose_profile, finetune_config

# flag -> config key, for the common settings (everything else: --set key=value)
COMMON_FLAGS = {
    "data": "data.root",
    "split": "data.split",
    "out": "out",
    "seed": "seed",
    "backbone_weights": "model.weights",
    "device": "device",
    "eval_split": "eval_split",
}
FINETUNE_FLAGS = {
    "base_checkpoint": "base_checkpoint",
    "shots": "shots",
    "fewshot_seed": "fewshot_seed",
    "method": "distill.method",
    "head": "model.box_head",
}


def job_config(kind: str, args: argparse.Namespace) -> BaseTrainConfig | FinetuneConfig:
    """The config of ``dkan base-train`` (``kind`` "base") or ``dkan finetune`` from its parsed flags."""
    import torch

    cls = BaseTrainConfig if kind == "base" else FinetuneConfig
    if args.config is None:
        profile = choose_profile(args.profile)  # prints a notice when chosen by hardware
    else:  # the file decides; the profile only fills keys it leaves out
        profile = args.profile or ("paper" if torch.cuda.is_available() else "cpu-quick")
    # fine-tuning starts from the authors' distillation settings of the NEU-DET split (split 1's otherwise)
    cfg = base_config(profile) if kind == "base" else finetune_config(profile, getattr(args, "split", None) or 1)
    if args.config:
        raw = read_yaml(args.config)
        if is_bundle_config(raw):  # a bundle's weights as exported (its config: the user's to edit)
            check_bundle(Path(args.config), raw, skip=(CONFIG,))
        given = resolve_paths(raw, Path(args.config))
        cfg = from_dict(cls, merge(to_dict(cfg), given), args.config)  # unknown keys are errors
    flags = COMMON_FLAGS | (FINETUNE_FLAGS if kind == "finetune" else {})
    # JSON is valid YAML and quotes strings, so a value like "123" stays a string where one is expected
    sets = [f"{key}={json.dumps(getattr(args, name))}" for name, key in flags.items()
            if getattr(args, name, None) is not None]
    cfg = apply_overrides(cfg, sets + class_split_sets(args))
    if getattr(args, "iterations", None) is not None:
        cfg = dataclasses.replace(cfg, optim=cfg.optim.rescaled(args.iterations))
    return apply_overrides(cfg, list(args.set or []))


def class_split_sets(args: argparse.Namespace) -> list[str]:
    """--base/--novel -> data.split=null, data.base, data.novel (novel: the other classes when left out)."""
    if getattr(args, "base", None) is None:
        if getattr(args, "novel", None) is not None:
            raise DkanError("--novel: needs --base too. Fix: pass --base a,b,c (--novel left out: the rest)")
        return []
    if getattr(args, "split", None) is not None:
        raise DkanError("--split/--base: give one of them. Fix: drop --split (numbered splits are NEU-DET presets)")
    base, novel = parse_class_list(args.base), parse_class_list(args.novel)
    return ["data.split=null", f"data.base={json.dumps(base)}", f"data.novel={json.dumps(novel)}"]


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` merged into ``base``, section by section."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out
