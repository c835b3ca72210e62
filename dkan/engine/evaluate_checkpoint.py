"""`dkan evaluate`: score a saved model on val or test, rebuilt from the config stored in it."""

from __future__ import annotations

from pathlib import Path

from dkan.config import BaseTrainConfig, FinetuneConfig, from_dict
from dkan.data.prepared import PreparedData
from dkan.distill.cache import MiB, budget_mb, eval_cache
from dkan.engine.evaluate import evaluate
from dkan.engine.precision import resolve_precision
from dkan.engine.setup import eval_ground_truth, resolve_device
from dkan.model.checkpoint import load_checkpoint
from dkan.model.detector import build_detector


def evaluate_checkpoint(
    path: Path, split: str = "test", data_root: str | None = None, device: str = "auto"
) -> dict[str, float]:
    """Load (safely: tensors and plain types only) and score a dkan checkpoint."""
    ckpt = load_checkpoint(Path(path), "model checkpoint", "pass a model_final.pt written by base-train or finetune")
    meta = ckpt["meta"]
    cls = FinetuneConfig if meta["stage"] == "finetune" else BaseTrainConfig
    cfg = from_dict(cls, meta["config"], str(path))
    data = PreparedData.load(Path(data_root or cfg.data.root))
    classes = tuple(meta["classes"])
    shots = data.fewshot(cfg.fewshot_seed, cfg.shots) if meta["stage"] == "finetune" else None
    gt = eval_ground_truth(data, split, classes, shots)
    dev = resolve_device(device)
    model = build_detector(cfg.model, len(classes))
    model.load_state_dict(ckpt["model"])
    precision = resolve_precision(cfg.precision, dev)  # as it was trained (auto: the device's choice)
    model.to(dev)
    # the body's features of these images kept for the next checkpoint of the same base model (the test phase
    # evaluates many in one worker: the frozen body runs once per image for all of them; another body empties it)
    budget = budget_mb(getattr(cfg, "cache_mb", -1), dev) * MiB
    cache = eval_cache(model.backbone.body, budget, precision) if budget else None
    metrics = evaluate(model, data.records(gt), gt, meta["base"], meta["novel"], dev, precision=precision, cache=cache)
    metrics["eval_split"] = split
    return metrics
