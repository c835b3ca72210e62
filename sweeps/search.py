"""The search of one study: Optuna's TPE through Ray Tune, each trial one hyperparameter set over the
seeds (one Ray Train run, a ``fit`` per seed), ASHA stopping weak trials between seeds.

The trace of one seed: ``run_search`` (the Tuner) -> ``search_trial`` (a Tune trial) ->
``sweeps.jobs.run_jobs`` (its Train run) -> ``dkan.engine.train.fit`` (the seed) -> a
``sweeps.progress.TrialReport`` back through ``TuneReportCallback`` -> the scheduler, the console
and ``sweeps.trial_logger.TrialLogger`` (MLflow). ``sweeps.selection`` reads the finished grid.
"""

from __future__ import annotations

import hashlib
import signal
import threading
from pathlib import Path
from typing import Any, Callable

from ray import tune
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from dkan.config import authors_defaults
from sweeps.console import TrialConsole, error_line
from sweeps.jobs import DRIVER_CPU, finetune_job, run_jobs
from sweeps.plan import Plan, StudySpec
from sweeps.schedulers import make_scheduler
from sweeps.space import first_points, point_of, to_optuna
from sweeps.trial_logger import TrialLogger


class SweepInterrupted(KeyboardInterrupt):
    pass


def search_trial(config: dict[str, Any], *, plan: Plan, study: StudySpec) -> None:
    """One hyperparameter set over the plan's seeds, scored on the selection split."""
    trial = tune.get_context().get_trial_id()
    hparams = point_of(config)
    jobs = [finetune_job(study.template, "dkan", s, plan.layout.trial_seed(study.key, trial, s), plan.select_split,
                         hparams) for s in plan.seeds]
    run_jobs(jobs, plan.resources, trial, plan.layout.train_storage, plan.select_split, in_trial=True,
             max_failures=plan.budget.max_failures, session=plan.session)


def run_search(plan: Plan, study: StudySpec, parent_run: str, resume: bool) -> tune.ResultGrid:
    """The study's search run to its end (or restored from its saved state and finished)."""
    path = plan.layout.search_state(study.key)
    trainable = tune.with_resources(tune.with_parameters(search_trial, plan=plan, study=study), {"cpu": DRIVER_CPU})

    def make() -> tune.Tuner:
        b, n = plan.budget, len(plan.seeds)
        first = first_points(plan.space, authors_defaults(study.split.number))
        points = first + [p for p in plan.extra_points if p not in first]
        searcher = OptunaSearch(space=to_optuna(plan.space), metric=plan.objective, mode="max",
                                points_to_evaluate=points, seed=study_seed(plan.search_seed, study.key),
                                study_name=study.key)
        scheduler = make_scheduler(b.scheduler if b.early_stop else "fifo", n, b.grace_seeds, b.reduction_factor,
                                   b.paired_alpha)
        logger = TrialLogger(plan.tracking_uri, plan.dataset, parent_run, study.key, n)
        return tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(metric=plan.objective, mode="max", scheduler=scheduler, num_samples=b.trials,
                                        search_alg=ConcurrencyLimiter(searcher, max_concurrent=plan.max_concurrent)),
            run_config=tune.RunConfig(name=path.name, storage_path=str(path.parent),
                                      callbacks=[logger, TrialConsole.for_study(plan, study)],
                                      # a trial whose driver's node was lost starts again: at its next seed
                                      failure_config=tune.FailureConfig(max_failures=b.max_failures),
                                      verbose=1 if plan.verbose else 0))  # Tune's tables only with --verbose

    return fit_tuner(path, trainable, resume, make)


def study_seed(search_seed: int, key: str) -> int:
    """Each study samples with its own seed (the same points for every K otherwise)."""
    return int(hashlib.sha256(f"{search_seed}|{key}".encode()).hexdigest()[:8], 16)


def result_errors(grid) -> list[str]:
    """The error line of each failed result of a Tune run (a ResultGrid or any results with ``.error``)."""
    return [error_line(f"{type(r.error).__name__}: {r.error}") for r in grid if r.error is not None]


def _on_sigint(sig, frame):  # a second Ctrl+C, after Tune has handed the signal back
    raise KeyboardInterrupt


def fit_tuner(path: Path, trainable, resume: bool, make: Callable[[], tune.Tuner]) -> tune.ResultGrid:
    """The Tuner saved at ``path`` restored (``resume``) or made anew, run to the end; an
    interrupted run (Ctrl+C: Tune saves and returns) raises SweepInterrupted.

    Tune swaps in its own SIGINT handler and hands back the previous one only when the signal
    arrives: ours being back in place afterwards means the run was interrupted."""
    if resume and tune.Tuner.can_restore(str(path)):
        print(f"resuming {path}")
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
