"""One fine-tune (or base training) as a Ray Train ``TorchTrainer`` run.

The worker loop is ``dkan.engine.train.fit``; its ``report`` hook hands the final metrics to
``ray.train.report`` with a tiny metrics-only checkpoint (so ``Result.metrics`` is filled; the
model itself stays in the run's ``out`` folder, which must be on shared storage across nodes).
"""

from __future__ import annotations

import json
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class WorkerResources:
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0

    def bundle(self) -> dict[str, float]:
        return {"CPU": self.cpus_per_worker, **({"GPU": self.gpus_per_worker} if self.gpus_per_worker else {})}


def _train_loop(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker (torch.distributed is already set up by TorchTrainer)."""
    import ray.train
    import ray.train.torch
    from ray.train import Checkpoint

    from dkan.config import BaseTrainConfig, FinetuneConfig, from_dict
    from dkan.engine.train import fit

    cls = FinetuneConfig if config["kind"] == "finetune" else BaseTrainConfig
    cfg = from_dict(cls, config["cfg"])
    cfg.threads = max(1, int(config["threads"]))  # recorded in the run's config.yaml: a re-run matches bit for bit
    cfg.device = str(ray.train.torch.get_device()) if config["use_gpu"] else "cpu"
    rank = ray.train.get_context().get_world_rank()

    def report(metrics: dict[str, Any]) -> None:
        if rank != 0:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as d:
            Path(d, "metrics.json").write_text(json.dumps(metrics))
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(d))

    fit(cfg, report=report, progress=False, resume=config.get("resume", False))


def run_fit(kind: str, cfg_dict: dict[str, Any], res: WorkerResources, name: str, storage: str, resume: bool = False, watch: bool = False) -> dict[str, Any]:
    """Run ``fit`` for one config under a TorchTrainer; returns the worker's final metrics.
    ``watch`` prints the run's progress (from its ``progress.json``) every 30 s meanwhile."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={"kind": kind, "cfg": cfg_dict, "use_gpu": res.gpus_per_worker > 0, "threads": res.cpus_per_worker, "resume": resume},
        scaling_config=ScalingConfig(num_workers=res.workers, use_gpu=res.gpus_per_worker > 0, resources_per_worker=res.bundle()),
        run_config=RunConfig(name=name, storage_path=storage),
    )
    stop = threading.Event()
    if watch:
        threading.Thread(target=_print_progress, args=(Path(cfg_dict["out"]) / "progress.json", name, stop), daemon=True).start()
    try:
        result = trainer.fit()
    finally:
        stop.set()
    if result.error is not None:
        raise result.error
    if not result.metrics:
        raise RuntimeError(f"{name}: the training run reported no metrics")
    return dict(result.metrics)


def _print_progress(path: Path, name: str, stop: threading.Event, every: float = 30.0) -> None:
    while not stop.wait(every):
        try:
            p = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        print(f"  {name}: iteration {p['iteration']}/{p['iterations']}, loss {p['loss']:.3f}, about {p['eta_s'] / 60:.1f} min left", flush=True)
