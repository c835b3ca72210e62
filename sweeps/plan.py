"""From command-line arguments to a checked plan: every bad input fails here, before any work."""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dkan.config import apply_overrides, read_yaml, to_dict
from dkan.data.fewshot import fewshot_path
from dkan.data.prepared import PreparedData
from dkan.data.splits import resolve_class_split
from dkan.errors import DkanError
from dkan.profiles import base_config, finetune_config
from sweeps.seed_run import WorkerResources
from sweeps.space import Range, describe


class PlanError(DkanError, ValueError):
    pass


@dataclass
class Budget:
    """How much work one seed / the base model costs (iterations) and how wide the search is."""

    trials: int = 12
    base_iterations: int | None = None  # None: the profile's
    finetune_iterations: int | None = None
    grace_seeds: int = 3  # ASHA: seeds every trial gets before it can be stopped
    reduction_factor: int = 3
    early_stop: bool = True  # False: every trial runs every seed (FIFO)


# the embedded default (no --data): synthetic data, small enough for 2 cores in about 15 minutes.
# Measured here: a trial's Ray Train run costs ~14 s to start, each seed ~6 s of set-up and
# evaluation besides its training (~1.2 s per iteration on one core), so the default is kept small.
QUICK = Budget(trials=2, base_iterations=100, finetune_iterations=10, grace_seeds=1, reduction_factor=3)
QUICK_SEEDS = [1, 2, 3]
ALL_SEEDS = list(range(1, 11))


@dataclass
class Plan:
    data_root: Path
    dataset: str
    splits: list[int]
    shots: list[int]
    seeds: list[int]
    profile: str
    budget: Budget
    space: dict[str, Range]
    resources: WorkerResources
    max_concurrent: int
    out: Path
    tracking_uri: str
    protocol: str  # val | paper
    base_checkpoint: Path | None
    cache_dir: Path
    node_cpus: float = 1.0  # CPUs of the largest node (a base-training worker must fit on one)
    base_overrides: list[str] = field(default_factory=list)
    finetune_overrides: list[str] = field(default_factory=list)
    extra_points: list[dict[str, float]] = field(default_factory=list)  # evaluated first, after the authors' defaults

    @property
    def select_split(self) -> str:
        return "test" if self.protocol == "paper" else "val"

    def base_template(self, split: int) -> dict[str, Any]:
        cfg = base_config(self.profile)
        cfg.data.root, cfg.data.split, cfg.checkpoint_every = str(self.data_root), split, 0
        sets = [f"optim.iterations={self.budget.base_iterations}", f"optim.lr_steps=[{int(self.budget.base_iterations * 0.75)}, {int(self.budget.base_iterations * 0.92)}]"] if self.budget.base_iterations else []
        return to_dict(apply_overrides(cfg, sets + self.base_overrides))

    def finetune_template(self, split: int, shots: int, base_ckpt: Path) -> dict[str, Any]:
        cfg = finetune_config(self.profile)
        cfg.data.root, cfg.data.split, cfg.shots, cfg.base_checkpoint, cfg.checkpoint_every = str(self.data_root), split, shots, str(base_ckpt), 50
        it = self.budget.finetune_iterations
        sets = [f"optim.iterations={it}", f"optim.lr_steps=[{int(it * 0.8)}]", f"optim.warmup_iters={max(1, min(10, it // 10))}"] if it else []
        return to_dict(apply_overrides(cfg, sets + self.finetune_overrides))

    def base_cache_dir(self, split: int) -> Path:
        """Base models are cached by a hash of their config and of the data they train on."""
        cfg = {k: v for k, v in self.base_template(split).items() if k not in ("out", "device", "checkpoint_every")}
        h = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode())
        for name in ("dataset.yaml", "annotations/train.json", "annotations/val.json"):
            h.update((self.data_root / name).read_bytes())
        return self.cache_dir / "base" / f"{self.dataset}_split{split}_{h.hexdigest()[:16]}"

    def describe(self) -> str:
        n_runs = len(self.splits) * len(self.shots)
        worst = self.budget.trials * len(self.seeds) * n_runs
        lines = [
            "dkan-sweep plan",
            f"  data        {self.data_root} ({self.dataset}); profile {self.profile}",
            f"  splits      {self.splits}; shots {self.shots}; seeds {self.seeds[0]}-{self.seeds[-1]} ({len(self.seeds)})",
            f"  search      Optuna TPE, {self.budget.trials} trials per (split, K), authors' defaults first: {describe(self.space)}",
            (f"  early stop  ASHA on seeds_done (grace {self.budget.grace_seeds} seeds, reduction {self.budget.reduction_factor}); at most {worst} seed fine-tunes"
             if self.budget.early_stop else f"  early stop  off: every trial runs every seed ({worst} seed fine-tunes)"),
            f"  selection   on {self.select_split}{' (PAPER PROTOCOL: selected on test, as the paper did)' if self.protocol == 'paper' else ''}; then best config and TFA on test over all seeds",
            f"  resources   {self.resources.workers} worker(s) x ({self.resources.cpus_per_worker:g} CPU, {self.resources.gpus_per_worker:g} GPU) per fine-tune; {self.max_concurrent} trial(s) at once",
            f"  budget      base {self.budget.base_iterations or 'profile'} iterations; fine-tune {self.budget.finetune_iterations or 'profile'} iterations per seed",
            f"  tracking    {self.tracking_uri}",
            f"  outputs     {self.out} (best configs in {self.out / 'best_configs'})",
        ]
        return "\n".join(lines)


def check_data(data_root: Path, splits: list[int], shots: list[int], seeds: list[int]) -> PreparedData:
    """Every (split, K, seed) needs its few-shot files; seeds must be a sane range."""
    if not seeds or min(seeds) < 1:
        raise PlanError(f"--seeds {seeds}: seeds start at 1. Fix: pass e.g. --seeds 1-10")
    data = PreparedData.load(data_root)
    for split in splits:
        resolve_class_split(list(data.classes), split)
    missing = [(s, k) for s in seeds for k in shots if not all(fewshot_path(data.annotations, s, k, c).is_file() for c in data.classes)]
    if missing:
        have_seeds = sorted(int(p.name) for p in (data.annotations / "fewshot-split").iterdir() if p.name.isdigit())
        s, k = missing[0]
        raise PlanError(
            f"{data_root}: no few-shot files for seed {s}, K={k} ({len(missing)} (seed, K) pairs missing; seeds present: {have_seeds}). "
            f"Fix: run `dkan prepare-data ... --seeds {seeds[0]}-{seeds[-1]} --shots {','.join(map(str, shots))}` or choose --seeds/--shots that exist"
        )
    return data


# CPU share of a Tune trial's own process: it only drives its Ray Train run (whose workers hold
# the real CPUs) but Tune refuses 0. It must be counted: two 1-CPU fine-tunes plus two drivers do
# not fit in 2 CPUs, and the second Train run then waits on a 60 s worker-start timeout.
DRIVER_CPU = 0.01


def check_resources(res: WorkerResources, cluster: dict[str, float], nodes: list[dict[str, float]] | None = None, driver_cpu: float = DRIVER_CPU) -> int:
    """How many fine-tunes fit at once, each with its trial driver (``driver_cpu``; 0 where the
    drivers have CPUs of their own); a request the cluster cannot hold is an error, not a hang.

    ``nodes`` (each node's resources) also checks that one worker's bundle fits on some node."""
    cpus, gpus = cluster.get("CPU", 0.0), cluster.get("GPU", 0.0)
    if nodes and not any(n.get("CPU", 0.0) + 1e-9 >= res.cpus_per_worker and n.get("GPU", 0.0) + 1e-9 >= res.gpus_per_worker for n in nodes):
        biggest = max(nodes, key=lambda n: (n.get("GPU", 0.0), n.get("CPU", 0.0)))
        raise PlanError(
            f"one worker needs {res.cpus_per_worker:g} CPUs and {res.gpus_per_worker:g} GPUs on one node, but the largest node has "
            f"{biggest.get('CPU', 0.0):g} CPUs and {biggest.get('GPU', 0.0):g} GPUs. Fix: lower --cpus-per-worker / --gpus-per-worker and use more --workers"
        )
    need_cpu, need_gpu = res.workers * res.cpus_per_worker, res.workers * res.gpus_per_worker
    if res.cpus_per_worker <= 0 or res.workers < 1:
        raise PlanError(f"--workers {res.workers} / --cpus-per-worker {res.cpus_per_worker}: need at least one worker with some CPU")
    if need_cpu + driver_cpu > cpus + 1e-9:
        drv = f" + {driver_cpu:g} for its trial driver" if driver_cpu else ""
        raise PlanError(f"a fine-tune needs {need_cpu:g} CPUs ({res.workers} workers x {res.cpus_per_worker:g}{drv}) but the cluster has {cpus:g}. Fix: lower --workers or --cpus-per-worker")
    if need_gpu > gpus + 1e-9:
        raise PlanError(f"a fine-tune needs {need_gpu:g} GPUs ({res.workers} workers x {res.gpus_per_worker:g}) but the cluster has {gpus:g}. Fix: lower --gpus-per-worker (0 runs on CPU) or add GPU nodes")
    fit = math.floor(cpus / (need_cpu + driver_cpu) + 1e-9)
    if need_gpu:
        fit = min(fit, math.floor(gpus / need_gpu + 1e-9))
    return max(1, fit)


def default_cache_dir() -> Path:
    return Path(os.environ.get("DKAN_CACHE", Path.home() / ".cache" / "dkan-sweep"))


def load_points(path: str | None, space: dict[str, Range]) -> list[dict[str, float]]:
    """A YAML list of hyperparameter sets, each inside the space."""
    if not path:
        return []
    p = Path(path)
    points = read_yaml(p, "--points file", PlanError) or []
    if not isinstance(points, list):
        raise PlanError(f"--points {p}: expected a list of {{fka_weight, lka_weight, fka_tau, lka_tau}} mappings")
    for i, pt in enumerate(points):
        if not isinstance(pt, dict) or set(pt) != set(space):
            raise PlanError(f"--points {p}: entry {i} must set exactly {sorted(space)}, got {pt!r}")
        for k, v in pt.items():
            if not space[k].low <= float(v) <= space[k].high:
                raise PlanError(f"--points {p}: entry {i}: {k}={v} lies outside [{space[k].low:g}, {space[k].high:g}]")
    return [{k: float(v) for k, v in pt.items()} for pt in points]
