"""The immutable plan of a sweep: what it runs, on what, how it selects, where its outputs go.

``sweeps.core.inputs.build_plan`` makes it from the command line, every input checked; ``complete_plan``
adds what only the running cluster tells (how many fine-tunes fit at once, the largest node), once.
Nothing changes a plan afterwards.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from dkan.config import BaseTrainConfig, FinetuneConfig, ModelConfig, apply_overrides, to_dict
from dkan.data.splits import NEU_DET_SPLITS
from dkan.errors import DkanError
from dkan.profiles import base_config, finetune_config
from sweeps.core.jobspec import DRIVER_CPU, WorkerResources
from sweeps.core.layout import CacheLayout, RunLayout, study_key
from sweeps.core.progress import metric_name
from sweeps.core.shape import METHODS, StudyShape, study_shape
from sweeps.core.space import Space, describe_space
from sweeps.tracking import mask_uri


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
    # race | asha | paired (sweeps.shell.schedulers) | fifo: how weak runs stop between seeds (race and se1: chosen by
    # replay on real NEU-DET, docs/benchmarks.md "The paper-scale budget"; asha and ci95 before 2026-12-07)
    scheduler: str = "race"
    paired_alpha: float = 0.1  # paired, race: the one-sided level of the per-seed t test against the incumbent
    max_failures: int = 2  # a trial (or base training) whose worker, driver or node was lost: retries
    candidates: tuple[str, ...] = METHODS  # compared on val (sweeps.core.shape); dkan: its defaults and the tuned
    margin: float = 0.005  # a candidate replaces a simpler one when it beats it by this much AP_all (and its CI > 0)
    select_rule: str = "se1"  # the interval whose lower end must clear 0: se1 | ci95 (sweeps.core.selection.low)
    keep_checkpoints: str = "selected"  # selected: a study's selection deletes the model files no one can choose


def interval_words(rule: str) -> str:
    """What a candidate's paired gain must keep above 0 under ``rule`` (--select-rule): plan, results, MLflow."""
    return "one standard error below its mean gain" if rule == "se1" else "the paired 95% CI's lower end"


# the embedded default (no --data): synthetic data, small enough for 2 cores (11-14 min for K = 1,3,5, benchmarks).
# Measured here: a trial's Ray Train run costs ~14 s to start, each seed ~6 s of set-up and
# evaluation besides its training (~1.2 s per iteration on one core), so the default is kept small.
QUICK = Budget(trials=2, base_iterations=100, finetune_iterations=10, grace_seeds=1, reduction_factor=3)
QUICK_SEEDS = [1, 2, 3]
ALL_SEEDS = list(range(1, 11))
# the methods a study can recommend, simplest first (sweeps.core.shape): dkan stands for two candidates
CANDIDATES = METHODS
KEEP_CHECKPOINTS = ("selected", "all")  # --keep-checkpoints (sweeps.shell.prune)


@dataclass(frozen=True)
class ClassSplitSpec:
    """A class split as the sweep names it: a NEU-DET preset (``number``) or base/novel lists."""

    name: str  # split1 (a preset) or a file-safe name: cache keys, MLflow runs, result files, exports
    number: int | None = None
    base: tuple[str, ...] | None = None
    novel: tuple[str, ...] | None = None  # None: the dataset's other classes

    def data_fields(self) -> dict:
        """The DataConfig fields that select this split."""
        lists = {k: list(v) if v is not None else None for k, v in (("base", self.base), ("novel", self.novel))}
        return {"split": self.number, **lists}


@dataclass(frozen=True)
class StudySpec:
    """One (split, K) of a sweep: its name and the fine-tune config every seed job starts from."""

    split: ClassSplitSpec
    shots: int
    key: str  # <dataset>_<split name>_<K>shot (sweeps.core.layout.study_key): Tune experiments, result files, exports
    template: FinetuneConfig


@dataclass(frozen=True)
class Plan:
    data_root: Path
    dataset: str
    splits: tuple[ClassSplitSpec, ...]
    shots: tuple[int, ...]
    seeds: tuple[int, ...]
    profile: str
    budget: Budget
    space: Space
    resources: WorkerResources
    out: Path
    tracking_uri: str
    protocol: str  # val | paper
    base_checkpoint: Path | None
    cache_dir: Path
    base_overrides: tuple[str, ...] = ()
    finetune_overrides: tuple[str, ...] = ()
    extra_points: tuple[dict[str, float], ...] = ()  # evaluated first, after the authors' defaults
    metric: str = "coco"  # the AP of the tables: coco (101-point) or voc07 (11-point, the paper's)
    search_seed: int = 0  # each study's sampler seed derives from it and the study's name
    input_size: dict | None = None  # cpu-quick: the size and anchors prepare-data chose from the data's boxes
    max_concurrent: int = 0  # 0 until complete_plan: as many as the cluster holds
    node_cpus: float = 1.0  # CPUs of the largest node (a base-training worker must fit on one)
    verbose: bool = False  # Tune's own trial tables besides sweeps.shell.console's lines
    session: str = ""  # this invocation's id (complete_plan): a failure it recorded is not retried by it
    objective_kind: str = "ap_all"  # ap_all: the mean AP_all; pareto: AP_novel against AP_B retention
    min_retention: float = 0.9  # pareto: the pick keeps at least this share of the base model's AP_B
    local: bool = True  # complete_plan: a local Ray (drivers on a CPU of their own) or a cluster's
    device_tflops: float = 0.0  # the estimate's model: one worker's FLOP rate (0: the device kind's default)

    @property
    def select_split(self) -> str:
        return "test" if self.protocol == "paper" else "val"

    @property
    def objective(self) -> str:
        """What the search maximises: the mean over seeds of (COCO) AP_all on the selection split."""
        return metric_name(self.select_split)

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.out)

    @property
    def cache(self) -> CacheLayout:
        return CacheLayout(self.cache_dir)

    def base_template(self, split: ClassSplitSpec) -> BaseTrainConfig:
        cfg = base_config(self.profile)
        it = self.budget.base_iterations
        optim = cfg.optim.rescaled(it) if it else cfg.optim
        data = replace(cfg.data, root=str(self.data_root), **split.data_fields())
        cfg = replace(cfg, data=data, optim=optim, model=self._sized(cfg.model))
        return apply_overrides(cfg, list(self.base_overrides))

    def _sized(self, model: ModelConfig) -> ModelConfig:
        s = self.input_size
        if not s:
            return model
        return replace(model, min_size=s["min_size"], max_size=s["max_size"], anchor_sizes=list(s["anchor_sizes"]))

    def study(self, split: ClassSplitSpec, shots: int, base_ckpt: Path) -> StudySpec:
        cfg = finetune_config(self.profile, split.number or 1)  # the authors' distillation settings of the split
        it = self.budget.finetune_iterations
        if it:
            cfg.optim = cfg.optim.rescaled(it)
        data = replace(cfg.data, root=str(self.data_root), **split.data_fields())
        cfg = replace(cfg, data=data, shots=shots, base_checkpoint=str(base_ckpt), checkpoint_every=50,
                      model=self._sized(cfg.model))
        key = study_key(self.dataset, split.name, shots)
        return StudySpec(split, shots, key, apply_overrides(cfg, list(self.finetune_overrides)))

    def studies(self) -> list[tuple[ClassSplitSpec, int]]:
        """Every (split, K) of the sweep, in the order they run."""
        return [(s, k) for s in self.splits for k in self.shots]

    def base_cache_dir(self, split: ClassSplitSpec) -> Path:
        """Base models are cached by a hash of their config and of the data they train on."""
        skip = ("out", "device", "checkpoint_every")
        cfg = {k: v for k, v in to_dict(self.base_template(split)).items() if k not in skip}
        h = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode())
        for name in ("dataset.yaml", "annotations/train.json", "annotations/val.json"):
            h.update((self.data_root / name).read_bytes())
        return self.cache.base_model(self.dataset, split.name, h.hexdigest()[:16])

    def describe(self) -> str:
        b, r = self.budget, self.resources
        studies = len(self.splits) * len(self.shots)
        worst = b.trials * len(self.seeds) * studies
        stop = (f"ASHA on seeds_done (grace {b.grace_seeds} seeds, reduction {b.reduction_factor}); at most {worst} "
                "seed fine-tunes") if b.early_stop else f"off: every trial runs every seed ({worst} seed fine-tunes)"
        if b.early_stop and b.scheduler in ("paired", "race"):
            who = "each run (the fixed candidates too)" if b.scheduler == "race" else "each search trial"
            stop = (f"{b.scheduler}: {who} stops when a paired per-seed t test finds it worse than the best run "
                    f"before it (alpha {b.paired_alpha:g}, grace {b.grace_seeds} seeds); at most {worst} seed "
                    "fine-tunes")
        paper = " (PAPER PROTOCOL: selected on test, as the paper did)" if self.protocol == "paper" else ""
        objective = (f"Pareto front of {self.select_split} AP_novel and AP_B retention, the pick: the best AP_all "
                     f"keeping {self.min_retention:.0%} of the base model's AP_B"
                     if self.objective_kind == "pareto" else f"mean {self.objective} over the seeds")
        return "\n".join([
            "dkan-sweep plan",
            f"  data        {self.data_root} ({self.dataset}); profile {self.profile}",
            *([f"  input size  {self.input_size['reason']} "
               "(override: --set/--base-set model.min_size=..., model.max_size=..., model.anchor_sizes=[...])"]
              if self.input_size else []),
            f"  splits      {'; '.join(describe_split(s) for s in self.splits)}",
            f"  shots       {list(self.shots)}; seeds {self.seeds[0]}-{self.seeds[-1]} ({len(self.seeds)})",
            f"  candidates  {', '.join(self.candidate_names())} on {self.select_split} over every seed{paper}",
            f"  search      Optuna TPE, {b.trials} DKAN trials per (split, K) (the authors' defaults the first), "
            f"maximising the {objective}: {describe_space(self.space)}",
            f"  early stop  {stop}",
            f"  selection   simplest first ({' < '.join(self.candidate_names())}): a candidate replaces the one "
            f"chosen so far when it beats it on the same seeds by at least {b.margin * 100:g} AP_all points with "
            f"{interval_words(b.select_rule)} above 0 (--select-rule {b.select_rule}); then on test: every "
            "candidate and the base model, "
            "their checkpoints evaluated (nothing fine-tuned twice)",
            f"  resources   {r.workers} worker(s) x ({r.cpus_per_worker:g} CPU, {r.gpus_per_worker:g} GPU) per "
            f"fine-tune; {self.max_concurrent} trial(s) at once; a lost worker or node retried up to "
            f"{b.max_failures} time(s), going on at the next unfinished seed",
            f"  budget      base {b.base_iterations or 'profile'} iterations; fine-tune "
            f"{b.finetune_iterations or 'profile'} iterations per seed",
            f"  tracking    {mask_uri(self.tracking_uri)}",
            f"  outputs     {self.out} (best configs in {self.layout.bundles_dir})",
        ])

    @property
    def shape(self) -> StudyShape:
        """Every study's candidates and runs on the selection split (``sweeps.core.shape``)."""
        return study_shape(self.space, self.budget.candidates, self.budget.trials)

    def candidate_names(self) -> list[str]:
        """The candidates of every study, simplest first (``dkan``: its authors' defaults, then the tuned)."""
        return self.shape.names


def describe_split(s: ClassSplitSpec) -> str:
    if s.number is not None:
        return f"{s.name} (NEU-DET: base {', '.join(NEU_DET_SPLITS[s.number].base)})"
    return f"{s.name} (base {', '.join(s.base or ())}; novel {', '.join(s.novel) if s.novel else 'the rest'})"


def complete_plan(plan: Plan, nodes: list[dict[str, float]], local: bool) -> Plan:
    """The plan on this cluster (each alive node's resources): how many fine-tunes run at once."""
    fits = fits_now(plan.resources, nodes, local)
    return replace(
        plan, max_concurrent=min(plan.max_concurrent or fits, fits), node_cpus=max(n.get("CPU", 0.0) for n in nodes),
        session=uuid.uuid4().hex[:12], local=local,
    )


def fits_now(res: WorkerResources, nodes: list[dict[str, float]], local: bool) -> int:
    """How many fine-tunes run at once on these nodes (each alive node's resources).

    A local Ray was started with one logical CPU more than the machine has, for the trial
    drivers (they only wait): the fine-tunes get the machine's CPUs, the drivers the extra one."""
    if local:
        nodes = [{**nodes[0], "CPU": nodes[0].get("CPU", 1.0) - 1}]
        return check_resources(res, nodes[0], nodes, driver_cpu=0.0)
    total = {k: sum(n.get(k, 0.0) for n in nodes) for k in ("CPU", "GPU")}
    return check_resources(res, total, nodes)


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
    if nodes and driver_cpu:
        fit = min(fit, _fits_wherever_the_drivers_land(res, nodes, driver_cpu, fit))
    return max(1, fit)


def _slots(res: WorkerResources, cpu: float, gpu: float) -> int:
    """Workers a node with these free resources holds."""
    n = math.floor(cpu / res.cpus_per_worker + 1e-9)
    return min(n, math.floor(gpu / res.gpus_per_worker + 1e-9)) if res.gpus_per_worker else n


def _fits_wherever_the_drivers_land(res: WorkerResources, nodes: list[dict[str, float]], driver_cpu: float,
                                    most: int) -> int:
    """The most fine-tunes at once whose workers still find room however Ray places their drivers.

    A trial's driver takes ``driver_cpu`` on some node; on nodes of a few CPUs it can cost a whole
    worker slot (three 1-CPU nodes hold one trial, not two: two drivers on two nodes leave one slot
    for two workers, and both trials wait for ever). The worst placement is found greedily: each
    driver goes where it removes the most slots."""
    for n in range(most, 0, -1):
        free = [[node.get("CPU", 0.0), node.get("GPU", 0.0)] for node in nodes]
        for _ in range(n):
            room = [i for i, (c, _g) in enumerate(free) if c + 1e-9 >= driver_cpu]
            if not room:
                break
            i = max(room, key=lambda i: _slots(res, *free[i]) - _slots(res, free[i][0] - driver_cpu, free[i][1]))
            free[i][0] -= driver_cpu
        if sum(_slots(res, c, g) for c, g in free) >= n * res.workers:
            return n
    return 1
