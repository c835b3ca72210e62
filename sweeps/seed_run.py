"""Ray Train runs: a trial's seeds in one ``TorchTrainer`` run, and base training in another.

``run_seeds`` starts one worker group for a trial and fine-tunes its seeds one after another in
it (``dkan.engine.train.fit`` per seed, torch.distributed set up once by TorchTrainer), reporting
after every seed through ``ray.train.report``; inside a Tune trial ``TuneReportCallback`` passes
those reports on, so ASHA sees ``seeds_done`` grow and can stop the trial between seeds. A worker
group costs ~14 s to start on 2 CPU cores, which one run per seed paid again and again.

Every seed writes ``<out>/metrics.json`` when it is complete (fine-tuned or, for a reused
checkpoint, evaluated): a restarted trial skips those seeds, and a half-done seed resumes from
its ``last.pt``. ``out`` folders must be on storage every node sees.
"""

from __future__ import annotations

import json
import math
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUNNING = ("AP_base", "AP_novel", "AP_all")


@dataclass(frozen=True)
class WorkerResources:
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0

    def bundle(self) -> dict[str, float]:
        return {"CPU": self.cpus_per_worker, **({"GPU": self.gpus_per_worker} if self.gpus_per_worker else {})}


def seed_metrics(out: str | Path) -> dict[str, Any] | None:
    """A finished seed's metrics (``<out>/metrics.json``), or None while it is not finished."""
    path = Path(out) / "metrics.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def running_summary(per_seed: dict[int, dict[str, Any]], prefix: str) -> dict[str, float]:
    """Mean over the seeds done so far of AP_base / AP_novel / AP_all (NaN seeds left out)."""
    out = {}
    for key in RUNNING:
        vals = [m[key] for m in per_seed.values() if m.get(key) is not None and not math.isnan(m[key])]
        out[f"{prefix}{key}"] = sum(vals) / len(vals) if vals else float("nan")
    return out


def _seed_report(per_seed: dict[Any, dict[str, Any]], key: Any, prefix: str | None) -> dict[str, Any]:
    """What a trial reports after a seed. ``prefix`` None: jobs of mixed methods (the test phase),
    where a running mean would mean nothing; just the count and the last job."""
    if prefix is None:
        return {"jobs_done": len(per_seed), "last_job": str(key), "fit_seconds_total": sum(m.get("fit_seconds", 0.0) for m in per_seed.values())}
    metrics = {**running_summary(per_seed, prefix), "seeds_done": len(per_seed), "last_seed": key}
    metrics.update({f"seed{s}_AP_all": m.get("AP_all", float("nan")) for s, m in per_seed.items()})
    metrics["fit_seconds_total"] = sum(m.get("fit_seconds", 0.0) for m in per_seed.values())
    return metrics


def _evaluate_reused(path: str, out: Path, split: str, device: str) -> dict[str, Any]:
    from dkan.engine.evaluate_checkpoint import evaluate_checkpoint

    t = time.time()
    m = evaluate_checkpoint(Path(path), split=split, device=device)
    m.update(source="reused", checkpoint=str(path), fit_seconds=round(time.time() - t, 2))
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".metrics.json.tmp"
    tmp.write_text(json.dumps(m, indent=2, allow_nan=True))
    tmp.replace(out / "metrics.json")
    return m


def _seeds_loop(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker (torch.distributed is already set up by TorchTrainer)."""
    import ray.train
    import ray.train.torch
    import torch

    from dkan.config import FinetuneConfig, from_dict
    from dkan.engine.distributed import broadcast_from_rank0
    from dkan.engine.train import fit

    device = str(ray.train.torch.get_device()) if config["use_gpu"] else "cpu"
    rank = ray.train.get_context().get_world_rank()
    torch.set_num_threads(max(1, int(config["threads"])))
    per_seed: dict[Any, dict[str, Any]] = {}
    unreported = None
    for job in config["jobs"]:
        key, out = job.get("label", int(job["seed"])), Path(job["cfg"]["out"])
        done = seed_metrics(out)
        if done is not None:  # finished before a restart: counted, not run (and not reported) again
            per_seed[key], unreported = done, key
            continue
        if job.get("reuse"):
            m = broadcast_from_rank0(_evaluate_reused(job["reuse"], out, job["cfg"]["eval_split"], device) if rank == 0 else None)
        else:
            cfg = from_dict(FinetuneConfig, job["cfg"])
            cfg.threads = max(1, int(config["threads"]))  # recorded in the seed's config.yaml: a re-run matches bit for bit
            cfg.device = device
            m = fit(cfg, progress=False, resume=True)
        per_seed[key], unreported = m, None
        ray.train.report(_seed_report(per_seed, key, config["prefix"]))
    if unreported is not None:  # every seed was already done: say so once
        ray.train.report(_seed_report(per_seed, unreported, config["prefix"]))


def _trainer(loop, config: dict[str, Any], res: WorkerResources, name: str, storage: str, callbacks: list | None = None):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    return TorchTrainer(
        loop,
        train_loop_config={**config, "use_gpu": res.gpus_per_worker > 0, "threads": res.cpus_per_worker},
        scaling_config=ScalingConfig(num_workers=res.workers, use_gpu=res.gpus_per_worker > 0, resources_per_worker=res.bundle()),
        run_config=RunConfig(name=name, storage_path=storage, callbacks=callbacks),
    )


def run_seeds(jobs: list[dict[str, Any]], res: WorkerResources, name: str, storage: str, prefix: str | None) -> None:
    """One TorchTrainer run over ``jobs`` (each ``{"seed", "cfg", "reuse"?, "label"?}``), inside a Tune trial:
    every seed's report reaches Tune. Results stay in each job's ``cfg["out"]``."""
    from ray.tune.integration.ray_train import TuneReportCallback

    result = _trainer(_seeds_loop, {"jobs": jobs, "prefix": prefix}, res, name, storage, [TuneReportCallback()]).fit()
    if result.error is not None:
        raise result.error


def _fit_loop(config: dict[str, Any]) -> None:
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
    """One ``fit`` (base training, or a single fine-tune) as its own TorchTrainer run, outside
    Tune; returns the worker's final metrics. ``watch`` prints progress every 30 s meanwhile."""
    trainer = _trainer(_fit_loop, {"kind": kind, "cfg": cfg_dict, "resume": resume}, res, name, storage)
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
