"""The runs of one study on the selection split, each a Ray Tune run of trials over the seeds (one Ray
Train run per trial, a ``fit`` per seed):

- ``candidates``: the fixed candidates side by side, every one on every seed: TFA and plain (when the
  space holds no key they use), DKAN with the authors' defaults;
- ``search``: Optuna's TPE over the space for DKAN, told the defaults' result first, the scheduler stopping
  weak trials between seeds (``sweeps.shell.schedulers``; under ``race`` the fixed candidates are raced too
  and the search's trials are compared with them);
- ``search_<method>``: a baseline's own search, when the space holds keys it uses (e.g. ``optim.lr``).

The trace of one seed: ``tune_run`` (the Tuner) -> ``seed_trial`` (a Tune trial) ->
``sweeps.shell.jobs.run_jobs`` (its Train run) -> ``dkan.engine.train.fit`` (the seed) -> a
``sweeps.core.progress.TrialReport`` back through ``TuneReportCallback`` -> the scheduler, the console
and ``sweeps.shell.trial_logger.TrialLogger`` (MLflow). ``sweeps.core.selection`` reads the finished runs.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from ray import tune
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from sweeps.core.jobspec import DRIVER_CPU, finetune_job
from sweeps.core.plan import Plan, StudySpec
from sweeps.core.progress import error_line, metric_name
from sweeps.core.shape import RunSpec
from sweeps.core.space import point_of
from sweeps.shell.console import TrialConsole
from sweeps.shell.jobs import run_jobs
from sweeps.shell.optuna_space import to_optuna
from sweeps.shell.schedulers import make_scheduler
from sweeps.shell.trial_logger import TrialLogger


class SweepInterrupted(KeyboardInterrupt):
    pass


def seed_trial(config: dict[str, Any], *, plan: Plan, study: StudySpec, spec: RunSpec) -> None:
    """One candidate (a fixed one, or a point of a search) over the plan's seeds, on the selection split."""
    trial = tune.get_context().get_trial_id()
    method, point = spec.fixed[config["candidate"]] if spec.fixed else (spec.method, point_of(config, spec.space))
    jobs = [finetune_job(study.template, method, s, plan.layout.trial_seed(study.key, trial, s), plan.select_split,
                         point) for s in plan.seeds]
    run_jobs(jobs, plan.resources, trial, plan.layout.train_storage, plan.select_split, in_trial=True,
             max_failures=plan.budget.max_failures, session=plan.session, base_ap=spec.base_ap)


def tune_run(plan: Plan, study: StudySpec, parent_run: str, resume: bool, spec: RunSpec) -> tune.ResultGrid:
    """One of the study's Tune runs to its end (or restored from its saved state and finished)."""
    path = plan.layout.tune_state(study.key, spec.name)
    trainable = tune.with_resources(tune.with_parameters(seed_trial, plan=plan, study=study, spec=spec),
                                    {"cpu": DRIVER_CPU})

    def make() -> tune.Tuner:
        n = len(plan.seeds)
        logger = TrialLogger(plan.tracking_uri, plan.dataset, parent_run, study.key, n, spec.method)
        console = TrialConsole.for_study(plan, study, trials=len(spec.fixed) or spec.trials, run=spec.name)
        run_config = tune.RunConfig(name=path.name, storage_path=str(path.parent), callbacks=[logger, console],
                                    # a trial whose driver's node was lost starts again: at its next seed
                                    failure_config=tune.FailureConfig(max_failures=plan.budget.max_failures),
                                    verbose=1 if plan.verbose else 0)  # Tune's tables only with --verbose
        if spec.fixed:  # side by side; raced under --scheduler race, else every candidate on every seed
            return tune.Tuner(trainable, param_space={"candidate": tune.grid_search(list(spec.fixed))},
                              tune_config=_fixed_config(plan), run_config=run_config)
        return tune.Tuner(trainable, tune_config=_search_config(plan, study, spec), run_config=run_config)

    return fit_tuner(path, trainable, resume, make)


def _fixed_config(plan: Plan) -> tune.TuneConfig:
    """The fixed candidates' run: under --scheduler race a paired test stops a candidate that is worse than
    the best of the others (grace seeds first); else nothing stops early."""
    b = plan.budget
    if not (b.early_stop and b.scheduler == "race"):
        return tune.TuneConfig(max_concurrent_trials=plan.max_concurrent)
    return tune.TuneConfig(metric=plan.objective, mode="max", max_concurrent_trials=plan.max_concurrent,
                           scheduler=make_scheduler("race", len(plan.seeds), b.grace_seeds, alpha=b.paired_alpha))


def _search_config(plan: Plan, study: StudySpec, spec: RunSpec) -> tune.TuneConfig:
    b, n = plan.budget, len(plan.seeds)
    pareto = plan.objective_kind == "pareto"
    metric: str | list[str] = plan.objective
    mode: str | list[str] = "max"
    if pareto:  # forgetting against learning: two objectives; ASHA keeps ranking on AP_all
        metric, mode = [metric_name(plan.select_split, "AP_novel"), metric_name(plan.select_split, "retention")], \
            ["max", "max"]
    searcher = OptunaSearch(space=to_optuna(spec.space), metric=metric, mode=mode, points_to_evaluate=list(spec.points),
                            seed=study_seed(plan.search_seed, f"{study.key}|{spec.name}"), study_name=study.key)
    if not pareto:
        for point, value in spec.prior:  # told, not run again (the fixed candidates ran it on every seed)
            if math.isfinite(value):
                searcher.add_evaluated_point(point, value)
    scheduler = make_scheduler(b.scheduler if b.early_stop else "fifo", n, b.grace_seeds, b.reduction_factor,
                               b.paired_alpha, metric=plan.objective if pareto else None, rivals=spec.rivals)
    return tune.TuneConfig(metric=None if pareto else plan.objective, mode=None if pareto else "max",
                           scheduler=scheduler, num_samples=spec.trials,
                           search_alg=ConcurrencyLimiter(searcher, max_concurrent=plan.max_concurrent))


def study_seed(search_seed: int, key: str) -> int:
    """Each study (and each of its searches) samples with its own seed (the same points for every K otherwise)."""
    return int(hashlib.sha256(f"{search_seed}|{key}".encode()).hexdigest()[:8], 16)


def result_errors(grid) -> list[str]:
    """The error line of each failed result of a Tune run (a ResultGrid or any results with ``.error``)."""
    return [error_line(f"{type(r.error).__name__}: {r.error}") for r in grid if r.error is not None]


# a Tune state saved before the sweep's modules moved into sweeps/core and sweeps/shell names its pickled callbacks
# and scheduler by their old modules
MOVED = ("console", "schedulers", "trial_logger")


def alias_moved_modules() -> None:
    """The shell's pickled classes found under their old module names too (``--resume`` of an older state)."""
    for name in MOVED:
        sys.modules.setdefault(f"sweeps.{name}", importlib.import_module(f"sweeps.shell.{name}"))


def _on_sigint(sig, frame):  # a second Ctrl+C, after Tune has handed the signal back
    raise KeyboardInterrupt


def fit_tuner(path: Path, trainable, resume: bool, make: Callable[[], tune.Tuner]) -> tune.ResultGrid:
    """The Tuner saved at ``path`` restored (``resume``) or made anew, run to the end; an
    interrupted run (Ctrl+C: Tune saves and returns) raises SweepInterrupted.

    Tune swaps in its own SIGINT handler and hands back the previous one only when the signal
    arrives: ours being back in place afterwards means the run was interrupted."""
    if resume and tune.Tuner.can_restore(str(path)):
        print(f"resuming {path}")
        alias_moved_modules()
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = make()
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        signal.signal(signal.SIGINT, _on_sigint)
    grid = tuner.fit()
    interrupted = in_main and signal.getsignal(signal.SIGINT) is _on_sigint
    if in_main:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if interrupted or grid.num_terminated + grid.num_errors < len(grid):
        raise SweepInterrupted(f"interrupted; the state is saved in {path}. Resume with the same command plus --resume")
    return grid
