"""From command-line arguments to a checked, immutable plan: every bad input fails here, before any work.

``build_plan`` checks the inputs; ``complete_plan`` adds what only the running cluster tells
(how many fine-tunes fit at once, the largest node), once. Nothing changes a plan afterwards.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

from dkan.config import BaseTrainConfig, FinetuneConfig, apply_overrides, read_yaml, to_dict
from dkan.data.fewshot import fewshot_path
from dkan.data.prepared import PreparedData
from dkan.data.splits import resolve_class_split
from dkan.errors import DkanError
from dkan.names import HPARAMS, metric_prefix
from dkan.profiles import base_config, choose_profile, finetune_config
from sweeps.jobs import WorkerResources
from sweeps.space import Range, describe, load_space


class PlanError(DkanError, ValueError):
    pass


@dataclass(frozen=True)
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

# CPU share of a Tune trial's own process: it only drives its Ray Train run (whose workers hold
# the real CPUs) but Tune refuses 0. It must be counted: two 1-CPU fine-tunes plus two drivers do
# not fit in 2 CPUs, and the second Train run then waits on a 60 s worker-start timeout.
DRIVER_CPU = 0.01


@dataclass(frozen=True)
class Study:
    """One (split, K) of a sweep: its name, fine-tune template and run folders."""

    split: int
    shots: int
    key: str  # <dataset>_split<S>_<K>shot: names Tune experiments, result files, exports
    template: FinetuneConfig
    runs_dir: Path


@dataclass(frozen=True)
class Plan:
    data_root: Path
    dataset: str
    splits: tuple[int, ...]
    shots: tuple[int, ...]
    seeds: tuple[int, ...]
    profile: str
    budget: Budget
    space: dict[str, Range]
    resources: WorkerResources
    out: Path
    tracking_uri: str
    protocol: str  # val | paper
    base_checkpoint: Path | None
    cache_dir: Path
    base_overrides: tuple[str, ...] = ()
    finetune_overrides: tuple[str, ...] = ()
    extra_points: tuple[dict[str, float], ...] = ()  # evaluated first, after the authors' defaults
    max_concurrent: int = 0  # 0 until complete_plan: as many as the cluster holds
    node_cpus: float = 1.0  # CPUs of the largest node (a base-training worker must fit on one)

    @property
    def select_split(self) -> str:
        return "test" if self.protocol == "paper" else "val"

    @property
    def metric(self) -> str:
        """What the search maximises: the mean over seeds of AP_all on the selection split."""
        return f"{metric_prefix(self.select_split)}AP_all"

    @property
    def train_storage(self) -> str:
        return str(self.out / "ray_results" / "train")

    def base_template(self, split: int) -> BaseTrainConfig:
        cfg = base_config(self.profile)
        it = self.budget.base_iterations
        optim = replace(cfg.optim, iterations=it, lr_steps=[int(it * 0.75), int(it * 0.92)]) if it else cfg.optim
        cfg = replace(cfg, data=replace(cfg.data, root=str(self.data_root), split=split), optim=optim)
        return apply_overrides(cfg, list(self.base_overrides))

    def study(self, split: int, shots: int, base_ckpt: Path) -> Study:
        cfg = finetune_config(self.profile)
        it = self.budget.finetune_iterations
        if it:
            warmup = max(1, min(10, it // 10))
            cfg.optim = replace(cfg.optim, iterations=it, lr_steps=[int(it * 0.8)], warmup_iters=warmup)
        data = replace(cfg.data, root=str(self.data_root), split=split)
        cfg = replace(cfg, data=data, shots=shots, base_checkpoint=str(base_ckpt), checkpoint_every=50)
        key = f"{self.dataset}_split{split}_{shots}shot"
        return Study(split, shots, key, apply_overrides(cfg, list(self.finetune_overrides)), self.out / "runs" / key)

    def base_cache_dir(self, split: int) -> Path:
        """Base models are cached by a hash of their config and of the data they train on."""
        skip = ("out", "device", "checkpoint_every")
        cfg = {k: v for k, v in to_dict(self.base_template(split)).items() if k not in skip}
        h = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode())
        for name in ("dataset.yaml", "annotations/train.json", "annotations/val.json"):
            h.update((self.data_root / name).read_bytes())
        return self.cache_dir / "base" / f"{self.dataset}_split{split}_{h.hexdigest()[:16]}"

    def describe(self) -> str:
        b, r = self.budget, self.resources
        worst = b.trials * len(self.seeds) * len(self.splits) * len(self.shots)
        stop = (f"ASHA on seeds_done (grace {b.grace_seeds} seeds, reduction {b.reduction_factor}); at most {worst} "
                "seed fine-tunes") if b.early_stop else f"off: every trial runs every seed ({worst} seed fine-tunes)"
        paper = " (PAPER PROTOCOL: selected on test, as the paper did)" if self.protocol == "paper" else ""
        return "\n".join([
            "dkan-sweep plan",
            f"  data        {self.data_root} ({self.dataset}); profile {self.profile}",
            f"  splits      {list(self.splits)}; shots {list(self.shots)}; seeds {self.seeds[0]}-{self.seeds[-1]} "
            f"({len(self.seeds)})",
            f"  search      Optuna TPE, {b.trials} trials per (split, K), authors' defaults first: "
            f"{describe(self.space)}",
            f"  early stop  {stop}",
            f"  selection   on {self.select_split}{paper}; then best config and TFA on test over all seeds",
            f"  resources   {r.workers} worker(s) x ({r.cpus_per_worker:g} CPU, {r.gpus_per_worker:g} GPU) per "
            f"fine-tune; {self.max_concurrent} trial(s) at once",
            f"  budget      base {b.base_iterations or 'profile'} iterations; fine-tune "
            f"{b.finetune_iterations or 'profile'} iterations per seed",
            f"  tracking    {self.tracking_uri}",
            f"  outputs     {self.out} (best configs in {self.out / 'best_configs'})",
        ])


def default_cache_dir() -> Path:
    return Path(os.environ.get("DKAN_CACHE", Path.home() / ".cache" / "dkan-sweep"))


def build_plan(args: argparse.Namespace) -> Plan:
    """Everything checked before any work; the synthetic set is prepared here when needed."""
    from dkan.data.prepare import PrepareConfig, prepare_data
    from sweeps.tracking import check_tracking_uri, default_tracking_uri

    cache = Path(args.cache_dir or default_cache_dir()).absolute()
    embedded = args.data is None
    if embedded:
        data_root = cache / "data" / "synthetic"
        res = prepare_data(PrepareConfig(out=str(data_root), synthetic=True))
        print(f"synthetic data: {res.status} ({data_root})")
    else:
        data_root = Path(args.data).absolute()
    seeds = args.seeds or (QUICK_SEEDS if embedded else ALL_SEEDS)
    check_data(data_root, args.splits, args.shots, seeds)
    d = QUICK if embedded else Budget()
    budget = Budget(
        trials=args.trials or d.trials, base_iterations=args.base_iterations or d.base_iterations,
        finetune_iterations=args.finetune_iterations or d.finetune_iterations,
        grace_seeds=args.grace_seeds or d.grace_seeds, reduction_factor=args.reduction_factor or d.reduction_factor,
        early_stop=not args.no_early_stop,
    )
    if budget.trials < 1:
        raise PlanError(f"--trials {budget.trials}: need at least one trial")
    space = load_space(Path(args.search_space) if args.search_space else None)
    out = Path(args.out).absolute()
    uri = args.tracking_uri or default_tracking_uri(out)
    check_tracking_uri(uri)
    if args.base_checkpoint and not Path(args.base_checkpoint).is_file():
        raise PlanError(
            f"--base-checkpoint {args.base_checkpoint}: file not found. Fix: pass a model_final.pt from dkan base-train"
        )
    return Plan(
        data_root=data_root, dataset=data_root.name, splits=tuple(args.splits), shots=tuple(args.shots),
        seeds=tuple(seeds), profile=choose_profile(args.profile), budget=budget, space=space,
        resources=WorkerResources(args.workers, args.cpus_per_worker, args.gpus_per_worker), out=out, tracking_uri=uri,
        protocol=args.protocol, base_checkpoint=Path(args.base_checkpoint).absolute() if args.base_checkpoint else None,
        cache_dir=cache, base_overrides=tuple(args.base_set), finetune_overrides=tuple(args.set),
        extra_points=tuple(load_points(args.points, space)), max_concurrent=args.max_concurrent or 0,
    )


def complete_plan(plan: Plan, nodes: list[dict[str, float]], local: bool) -> Plan:
    """The plan on this cluster (each alive node's resources): how many fine-tunes run at once.

    A local Ray was started with one logical CPU more than the machine has, for the trial
    drivers (they only wait): the fine-tunes get the machine's CPUs, the drivers the extra one."""
    if local:
        nodes = [{**nodes[0], "CPU": nodes[0].get("CPU", 1.0) - 1}]
        fits = check_resources(plan.resources, nodes[0], nodes, driver_cpu=0.0)
    else:
        total = {k: sum(n.get(k, 0.0) for n in nodes) for k in ("CPU", "GPU")}
        fits = check_resources(plan.resources, total, nodes)
    return replace(
        plan, max_concurrent=min(plan.max_concurrent or fits, fits), node_cpus=max(n.get("CPU", 0.0) for n in nodes)
    )


def check_data(data_root: Path, splits: list[int], shots: list[int], seeds: list[int]) -> PreparedData:
    """Every (split, K, seed) needs its few-shot files; seeds must be a sane range."""
    if not seeds or min(seeds) < 1:
        raise PlanError(f"--seeds {seeds}: seeds start at 1. Fix: pass e.g. --seeds 1-10")
    data = PreparedData.load(data_root)
    for split in splits:
        resolve_class_split(list(data.classes), split)
    missing = [(s, k) for s in seeds for k in shots
               if not all(fewshot_path(data.annotations, s, k, c).is_file() for c in data.classes)]
    if missing:
        have = sorted(int(p.name) for p in (data.annotations / "fewshot-split").iterdir() if p.name.isdigit())
        s, k = missing[0]
        raise PlanError(
            f"{data_root}: no few-shot files for seed {s}, K={k} ({len(missing)} (seed, K) pairs missing; "
            f"seeds present: {have}). Fix: run `dkan prepare-data ... --seeds {seeds[0]}-{seeds[-1]} "
            f"--shots {','.join(map(str, shots))}` or choose --seeds/--shots that exist"
        )
    return data


def check_resources(
    res: WorkerResources, cluster: dict[str, float], nodes: list[dict[str, float]] | None = None,
    driver_cpu: float = DRIVER_CPU,
) -> int:
    """How many fine-tunes fit at once, each with its trial driver (``driver_cpu``; 0 where the
    drivers have CPUs of their own); a request the cluster cannot hold is an error, not a hang.

    ``nodes`` (each node's resources) also checks that one worker's bundle fits on some node."""
    cpus, gpus = cluster.get("CPU", 0.0), cluster.get("GPU", 0.0)
    cpw, gpw = res.cpus_per_worker, res.gpus_per_worker
    if nodes and not any(n.get("CPU", 0.0) + 1e-9 >= cpw and n.get("GPU", 0.0) + 1e-9 >= gpw for n in nodes):
        big = max(nodes, key=lambda n: (n.get("GPU", 0.0), n.get("CPU", 0.0)))
        raise PlanError(
            f"one worker needs {cpw:g} CPUs and {gpw:g} GPUs on one node, but the largest node has "
            f"{big.get('CPU', 0.0):g} CPUs and {big.get('GPU', 0.0):g} GPUs. "
            "Fix: lower --cpus-per-worker / --gpus-per-worker and use more --workers"
        )
    need_cpu, need_gpu = res.workers * cpw, res.workers * gpw
    if cpw <= 0 or res.workers < 1:
        raise PlanError(f"--workers {res.workers} / --cpus-per-worker {cpw}: need at least one worker with some CPU")
    if need_cpu + driver_cpu > cpus + 1e-9:
        drv = f" + {driver_cpu:g} for its trial driver" if driver_cpu else ""
        raise PlanError(
            f"a fine-tune needs {need_cpu:g} CPUs ({res.workers} workers x {cpw:g}{drv}) but the cluster "
            f"has {cpus:g}. Fix: lower --workers or --cpus-per-worker"
        )
    if need_gpu > gpus + 1e-9:
        raise PlanError(
            f"a fine-tune needs {need_gpu:g} GPUs ({res.workers} workers x {gpw:g}) but the cluster has "
            f"{gpus:g}. Fix: lower --gpus-per-worker (0 runs on CPU) or add GPU nodes"
        )
    fit = math.floor(cpus / (need_cpu + driver_cpu) + 1e-9)
    if need_gpu:
        fit = min(fit, math.floor(gpus / need_gpu + 1e-9))
    return max(1, fit)


def load_points(path: str | None, space: dict[str, Range]) -> list[dict[str, float]]:
    """A YAML list of hyperparameter sets, each inside the space."""
    if not path:
        return []
    p = Path(path)
    points = read_yaml(p, "--points file", PlanError) or []
    if not isinstance(points, list):
        raise PlanError(f"--points {p}: expected a list of {{{', '.join(HPARAMS)}}} mappings")
    for i, pt in enumerate(points):
        if not isinstance(pt, dict) or set(pt) != set(space):
            raise PlanError(f"--points {p}: entry {i} must set exactly {sorted(space)}, got {pt!r}")
        for k, v in pt.items():
            if not space[k].low <= float(v) <= space[k].high:
                raise PlanError(f"--points {p}: entry {i}: {k}={v} lies outside [{space[k].low:g}, {space[k].high:g}]")
    return [{k: float(v) for k, v in pt.items()} for pt in points]
