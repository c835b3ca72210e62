"""`dkan evaluate` and the test phase: score saved models on val or test, each rebuilt from the config
stored in it; many at once share what their weights share (``dkan.engine.evaluate_many``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dkan.config import config_class, from_dict
from dkan.data.prepared import PreparedData
from dkan.engine.evaluate_many import Evaluand, evaluate_many
from dkan.engine.precision import resolve_precision
from dkan.engine.setup import eval_set, resolve_device
from dkan.model.checkpoint import load_checkpoint
from dkan.model.detector import build_detector

MAX_AT_ONCE = 32  # models held at once by one pass (each a full model in memory: 55 MB at cpu-quick, 240 at paper)


def evaluand_from_checkpoint(path: Path, split: str = "test", data_root: str | None = None, device: str = "auto",
                             data: dict[str, PreparedData] | None = None) -> Evaluand:
    """A checkpoint (loaded safely: tensors and plain types only) as an ``Evaluand`` on ``split``: the model
    rebuilt from the config stored in it, on the images and ground truth ``fit`` scored it on
    (``dkan.engine.setup.eval_set``). ``data_root``: the prepared data to read instead of the recorded root;
    ``data``: prepared data sets already read, by root (filled as they are read)."""
    ckpt = load_checkpoint(Path(path), "model checkpoint", "pass a model_final.pt written by base-train or finetune")
    meta = ckpt["meta"]
    cfg = from_dict(config_class(meta["stage"]), meta["config"], str(path))
    root = str(data_root or cfg.data.root)
    data = {} if data is None else data
    if root not in data:
        data[root] = PreparedData.load(Path(root))
    classes = tuple(meta["classes"])
    records, gt = eval_set(data[root], cfg, split, classes)
    dev = resolve_device(device)
    model = build_detector(cfg.model, len(classes), pretrained=False)
    model.load_state_dict(ckpt["model"])
    model.to(dev)
    precision = resolve_precision(cfg.precision, dev)  # as it was trained (auto: the device's choice)
    return Evaluand(model, records, gt, meta["base"], meta["novel"], precision)


def evaluate_checkpoints(
    paths: Sequence[Path], split: str = "test", data_root: str | None = None, device: str = "auto"
) -> list[dict[str, float]]:
    """The metrics of each checkpoint, in order: up to ``MAX_AT_ONCE`` of them in one pass over the images
    (the same AP as one at a time)."""
    out: list[dict[str, float]] = []
    data: dict[str, PreparedData] = {}
    for start in range(0, len(paths), MAX_AT_ONCE):
        chunk = [evaluand_from_checkpoint(Path(p), split, data_root, device, data)
                 for p in paths[start:start + MAX_AT_ONCE]]
        for m in evaluate_many(chunk, resolve_device(device)):
            m["eval_split"] = split
            out.append(m)
    return out


def evaluate_checkpoint(
    path: Path, split: str = "test", data_root: str | None = None, device: str = "auto"
) -> dict[str, float]:
    """Load (safely) and score one dkan checkpoint."""
    return evaluate_checkpoints([Path(path)], split, data_root, device)[0]
