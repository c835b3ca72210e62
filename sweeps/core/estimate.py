"""An estimate before launch: wall time, worker-hours and disk of each study, from the budget and
measured rates, and the actual beside it once the study is done.

Rates (``Rates``), best first: this cluster's calibration (``CACHE/calibration/<profile>.json``, written
from every finished study's own seed jobs), else the base model's run (its training step and its
evaluation, a cached base model's or the one just trained), else, for cpu-quick, numbers measured on a
2-core machine. The count of seed fine-tunes is an upper bound: early stopping only lowers it.
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dkan import runfolder
from sweeps.core.plan import Plan, StudySpec

RUN_START_S = 14.0  # a Ray Train run's start (measured on 2 cores; the same order on a cluster)
# a study's fine-tune iteration over a base-training one, its candidates' mix (TFA trains the last layer only,
# the others all but the body): 0.56 on the tiles set at 320 px, 0.84 on NEU-DET at 200 px (cpu-quick, 2026-12)
FINETUNE_PER_BASE_ITER = 0.7


@dataclass(frozen=True)
class Rates:
    s_per_iter: float  # one fine-tune iteration, one worker's share of a batch
    s_per_seed: float  # a seed job besides its training: set-up and its evaluation on val
    s_per_eval: float  # a test-phase evaluation of one checkpoint
    s_per_run: float  # starting one Ray Train run (a trial, a test-phase group)
    model_mb: float  # a full model file
    delta_share: float  # a DKAN / plain seed's file against the full model (TFA's is ~0.1%)
    source: str
    overhead: float = 1.0  # the study's wall time over what the rates above account for (calibrated)


# cpu-quick on one of the 2-core machines (2026-12, fp32): 1.2 s per iteration on one core at batch 4
BUILT_IN = {"cpu-quick": Rates(1.2, 6.0, 4.0, RUN_START_S, 52.4, 0.185, "built-in: measured on a 2-core machine")}


@dataclass(frozen=True)
class Estimate:
    finetunes: int  # seed fine-tunes on val, at most
    evaluations: int  # test-phase evaluations
    train_runs: int
    wall_s: float
    worker_h: float
    unit: str  # GPU | CPU
    disk_mb: float  # the study's run folders after pruning (the candidates' seed files)
    source: str

    def line(self) -> str:
        return (f"estimate: {self.wall_s / 60:.1f} min, {self.worker_h:.2g} {self.unit}-hours, "
                f"{self.disk_mb:.0f} MB ({self.finetunes} seed fine-tunes at most, {self.evaluations} test "
                f"evaluations; rates: {self.source})")


def runs_of(plan: Plan) -> list[int]:
    """The trials of each Tune run of one study on val, in order (``sweeps.core.shape``: the runs ``sweeps.study``
    makes)."""
    return plan.shape.trials


def counts(plan: Plan) -> tuple[int, int, int, int]:
    """(seed fine-tunes at most, of them kept as candidates, test evaluations, Train runs) of one study."""
    seeds, runs = len(plan.seeds), runs_of(plan)
    candidates = len(plan.candidate_names())
    groups = max(1, plan.max_concurrent)
    return sum(runs) * seeds, candidates * seeds, candidates * seeds + 1, sum(runs) + groups


def estimate(plan: Plan, rates: Rates) -> Estimate:
    """One study's estimate at these rates: each Tune run in waves of ``max_concurrent`` trials (a trial runs
    its seeds one after another), then the test phase's groups side by side; times ``rates.overhead``."""
    finetunes, kept, evaluations, runs = counts(plan)
    iters = plan.study(plan.splits[0], plan.shots[0], Path("base.pt")).template.optim.iterations
    res, at_once, seeds = plan.resources, max(1, plan.max_concurrent), len(plan.seeds)
    per_trial = seeds * (iters * rates.s_per_iter / max(1, res.workers) + rates.s_per_seed) + rates.s_per_run
    groups = min(at_once, evaluations)
    test = rates.s_per_run + math.ceil(evaluations / groups) * rates.s_per_eval
    wall = (sum(math.ceil(n / at_once) for n in runs_of(plan)) * per_trial + test) * rates.overhead
    work = (sum(runs_of(plan)) * per_trial + groups * rates.s_per_run + evaluations * rates.s_per_eval) * rates.overhead
    unit, per_worker = ("GPU", res.gpus_per_worker) if res.gpus_per_worker else ("CPU", res.cpus_per_worker)
    worker_h = work * res.workers * per_worker / 3600
    tfa = seeds if "tfa" in plan.budget.candidates else 0  # TFA's seed files are a few KB
    # the tuned DKAN is the defaults' own files when no search trial beats them: counted as likely as any
    # other of the DKAN trials to win (1 in --trials)
    same = seeds / max(1, plan.budget.trials) if "dkan" in plan.budget.candidates else 0.0
    disk = (kept - tfa - same) * rates.model_mb * rates.delta_share  # the candidates' seeds in the run folder
    return Estimate(finetunes, evaluations, runs, wall, worker_h, unit, disk, rates.source)


def calibration_file(plan: Plan) -> Path:
    return plan.cache_dir / "calibration" / f"{plan.profile}_w{plan.resources.workers}.json"


def rates_for(plan: Plan, base_ckpt: Path | None = None) -> Rates | None:
    """The best rates there are (module docstring); None when nothing is known yet."""
    cal = runfolder.read_json(calibration_file(plan)) if calibration_file(plan).is_file() else None
    if isinstance(cal, dict):
        try:
            return Rates(**cal)
        except TypeError:  # an older or edited file: measured again after the next study
            pass
    m = runfolder.done_metrics(Path(base_ckpt).parent) if base_ckpt else None
    if m and m.get("s_per_iter") and m.get("fit_seconds") and m.get("train_seconds") is not None:
        evaluation = max(1.0, float(m["fit_seconds"]) - float(m["train_seconds"]))
        size = Path(base_ckpt).stat().st_size / 1e6
        return Rates(float(m["s_per_iter"]) * FINETUNE_PER_BASE_ITER, evaluation, evaluation, RUN_START_S, size,
                     BUILT_IN.get(plan.profile, BUILT_IN["cpu-quick"]).delta_share, "the base model's run")
    return BUILT_IN.get(plan.profile)


def measured(plan: Plan, study: StudySpec, wall_s: float) -> dict[str, Any]:
    """What the study cost, and the rates its own seed jobs show (saved as this cluster's calibration)."""
    root = plan.layout.runs(study.key)
    seeds = [m for m in (runfolder.done_metrics(d) for d in root.glob("*/seed*")) if m]
    trained = [m for m in seeds if m.get("source") != "reused" and m.get("s_per_iter")]
    reused = [m for m in seeds if m.get("source") == "reused"]
    files = list(root.glob("*/seed*/model_final.pt"))
    disk = folder_bytes(root)
    actual = {"wall_s": round(wall_s, 1), "seed_finetunes": len(trained), "test_evaluations": len(reused),
              "disk_mb": round(disk / 1e6, 1)}
    if trained:
        delta = [p.stat().st_size for p in files if p.stat().st_size > 1e5]  # not TFA's (a few KB)
        base = Path(study.template.base_checkpoint)
        full = base.stat().st_size / 1e6 if base.is_file() else 0.0
        rates = Rates(
            s_per_iter=statistics.median(float(m["s_per_iter"]) for m in trained),
            s_per_seed=statistics.median(max(0.0, float(m["fit_seconds"]) - float(m["train_seconds"]))
                                         for m in trained),
            s_per_eval=statistics.median(float(m["fit_seconds"]) for m in reused) if reused else 0.0,
            s_per_run=RUN_START_S, model_mb=full or 1.0,
            delta_share=statistics.median(delta) / 1e6 / full if delta and full else 0.2,
            source=f"calibrated on this cluster ({study.key})")
        # what the rates leave out (Tune and MLflow book-keeping, uneven waves), as a factor on the next estimate
        overhead = min(5.0, max(0.5, wall_s / max(1.0, estimate(plan, rates).wall_s)))
        runfolder.write_json(calibration_file(plan), {**asdict(rates), "overhead": round(overhead, 3)})
    return actual


def folder_bytes(path: Path) -> int:
    """Bytes under ``path``, a hard-linked file counted once."""
    seen, total = set(), 0
    for dirpath, _, names in os.walk(path):
        for n in names:
            st = os.lstat(os.path.join(dirpath, n))
            if (st.st_dev, st.st_ino) not in seen:  # a hard link counted once
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def plan_line(plan: Plan) -> str:
    """The whole sweep's estimate for its plan (every study; base training not included)."""
    first = plan.splits[0]
    cached = plan.base_checkpoint or plan.base_cache_dir(first) / runfolder.FINAL
    rates = rates_for(plan, cached if Path(cached).is_file() else None)
    if rates is None:
        return "  estimate    after the base model: no rates for this profile on this cluster yet"
    one, n = estimate(plan, rates), len(plan.studies())
    return (f"  estimate    {n} stud{'y' if n == 1 else 'ies'}: {one.wall_s * n / 60:.1f} min, "
            f"{one.worker_h * n:.2g} {one.unit}-hours, {one.disk_mb * n:.0f} MB ({one.finetunes * n} seed fine-tunes "
            f"at most; base training not included; rates: {rates.source})")
