"""A quiet console for the search: one line per trial event and an overall progress line, instead of
Tune's box tables (those come back with ``--verbose``).

    [prepared_split1_2shot] trial 1 started: fka_weight=1, lka_weight=0.01, fka_tau=5, lka_tau=5
    [prepared_split1_2shot] trial 1: seed 1 done (1/3 seeds), AP_all 12.3; mean val_AP_all 12.3
    [prepared_split1_2shot] trial 2: stopped early after 1/3 seeds (mean val_AP_all 8.1)
    [prepared_split1_2shot] trial 3: failed: RuntimeError: CUDA out of memory
    progress: study 1/3, trials 4/12 done (1 stopped early, 0 failed), 2 running; 6.2 min elapsed, ...

``TrialConsole`` is a ``ray.tune.Callback``: it runs in the driver and only prints. Tune pickles
callbacks with its state (for ``--resume``), so it holds plain values, never a stream or a clock.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any

from ray.tune import Callback

from sweeps.core.progress import JobsReport, TrialReport, error_line


@dataclass
class _TrialState:
    number: int  # 1, 2, ... in start order: what a person reads
    started: float
    seeds_done: int = 0
    mean: float = math.nan


def quiet_libraries() -> int:
    """The sweep's console without the libraries' chatter (``--verbose`` keeps it): Tune's experiment box,
    "View detailed results" and TensorBoard lines (its old output engine at verbosity 0 prints none), Ray,
    MLflow and Optuna INFO lines, MLflow's artifact download bars, Optuna's importance note, Ray's note that
    the local Ray's token authentication is on. Returns the logging level for ``ray.init``."""
    import warnings

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for name in ("ray", "mlflow", "optuna", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # the local Ray's token is on by design (docs/security.md); Ray warns that it is, and how to turn it off
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r"Target and region quantiles", category=UserWarning)  # Optuna's
    # importance on a handful of trials (the figure is still drawn)
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    except ImportError:
        pass
    return logging.WARNING


def _trial_error(trial: Any) -> str:
    for get in (lambda: getattr(trial, "error_msg", None), lambda: trial.get_error(),
                lambda: open(trial.error_file).read()):
        try:
            text = get()
        except Exception:  # noqa: BLE001 - a missing or unreadable error file: try the next source
            continue
        if text:
            return error_line(str(text))
    return "unknown error (see the trial's error.txt under ray_results)"


def _value(v: Any) -> str:
    return f"{float(v):.4g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


class TrialConsole(Callback):
    """Prints trial events of one study's search and, every ``every`` events or ``interval`` seconds,
    an overall line: studies done / total, trials done / running / stopped, elapsed, time left.

    Time left is the mean finished trial's duration times the trials waiting, plus what is left of
    that mean for each running trial (half of it where its start was not seen), divided by the
    trials that run at once; studies after this one are assumed to cost the same (their test phases
    are not counted)."""

    def __init__(self, key: str, n_seeds: int, objective: str, trials: int, study_index: int = 0,
                 n_studies: int = 1, concurrent: int = 1, every: int = 10, interval: float = 60.0, run: str = "search"):
        self.key, self.n_seeds, self.objective, self.total, self.run = key, n_seeds, objective, trials, run
        self.study_index, self.n_studies, self.concurrent = study_index, n_studies, max(1, concurrent)
        self.every, self.interval = every, interval
        self.trials: dict[str, _TrialState] = {}
        self.durations: list[float] = []
        self.stopped = self.failed = self.events = 0
        self.t0 = self.last_line = time.time()

    @classmethod
    def for_study(cls, plan: Any, study: Any, trials: int | None = None, **kw: Any) -> TrialConsole:
        """The console of ``study`` in ``plan`` (a ``sweeps.core.plan.Plan``): its place among the studies;
        ``trials``: of this run (default: the plan's search budget)."""
        keys = [(s.name, k) for s, k in plan.studies()]
        index = keys.index((study.split.name, study.shots)) if (study.split.name, study.shots) in keys else 0
        return cls(study.key, len(plan.seeds), plan.objective, trials or plan.budget.trials, index, len(keys),
                   plan.max_concurrent or 1, **kw)

    # ------------------------------------------------------------------ output

    def say(self, text: str) -> None:
        print(f"[{self.key}] {text}", flush=True)

    def _state(self, trial: Any) -> _TrialState:
        if trial.trial_id not in self.trials:
            self.trials[trial.trial_id] = _TrialState(len(self.trials) + 1, time.time())
        return self.trials[trial.trial_id]

    def _event(self, trials: list[Any]) -> None:
        self.events += 1
        if self.every and self.events % self.every == 0:
            self.overall(trials)

    def overall(self, trials: list[Any]) -> str:
        """Print (and return) the overall line."""
        self.last_line = time.time()
        running = sum(1 for t in trials if getattr(t, "status", "") == "RUNNING")
        done = len(self.durations) + self.failed
        line = (f"progress: study {self.study_index + 1}/{self.n_studies} ({self.run}), trials {done}/{self.total} "
                f"done "
                f"({self.stopped} stopped early, {self.failed} failed), {running} running; "
                f"{_minutes(time.time() - self.t0)} elapsed")
        elapsed = [time.time() - self.trials[t.trial_id].started if t.trial_id in self.trials else None
                   for t in trials if getattr(t, "status", "") == "RUNNING"]
        left = self.time_left(done, elapsed)
        line += f", about {_minutes(left)} left in the searches" if left is not None else ", time left: after a trial"
        print(line, flush=True)
        return line

    def time_left(self, done: int, elapsed: list[float | None]) -> float | None:
        """Seconds left in this search and the searches after it, from the mean finished trial;
        ``elapsed``: how long each running trial has run (None: unknown)."""
        if not self.durations:
            return None
        mean = sum(self.durations) / len(self.durations)
        in_flight = sum(0.5 * mean if e is None else max(0.0, mean - e) for e in elapsed)
        waiting = max(0, self.total - done - len(elapsed)) * mean + in_flight
        later = (self.n_studies - self.study_index - 1) * self.total * mean
        return (waiting + later) / self.concurrent

    # ------------------------------------------------------------------ Tune's hooks

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info):
        self.t0 = self.last_line = time.time()  # a resumed search counts from its restart
        if total_num_samples and total_num_samples > 0:
            self.total = total_num_samples

    def on_step_end(self, iteration, trials, **info):
        if self.interval and time.time() - self.last_line >= self.interval:
            self.overall(trials)

    def on_trial_start(self, iteration, trials, trial, **info):
        s = self._state(trial)
        if "candidate" in trial.config:
            self.say(f"trial {s.number} ({trial.trial_id}) started: candidate {trial.config['candidate']}")
        else:
            hp = ", ".join(f"{k}={_value(v)}" for k, v in trial.config.items())
            self.say(f"trial {s.number} ({trial.trial_id}) started: {hp}")
        self._event(trials)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        s = self._state(trial)
        report = TrialReport.from_result(result)
        if report is None or report.seeds_done <= s.seeds_done:  # a restarted trial repeats its last report
            return
        s.seeds_done, s.mean = report.seeds_done, report.objective
        seed = report.last_seed
        self.say(f"trial {s.number}: seed {seed} done ({s.seeds_done}/{self.n_seeds} seeds), AP_all "
                 f"{report.seed_ap[seed] * 100:.1f}; mean {self.objective} {s.mean * 100:.1f}")
        self._event(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        s = self._state(trial)
        took = time.time() - s.started
        self.durations.append(took)
        if s.seeds_done < self.n_seeds:
            self.stopped += 1
            self.say(f"trial {s.number}: stopped early after {s.seeds_done}/{self.n_seeds} seeds "
                     f"(mean {self.objective} {s.mean * 100:.1f})")
        else:
            self.say(f"trial {s.number}: done, mean {self.objective} {s.mean * 100:.1f} over {self.n_seeds} seeds "
                     f"in {_minutes(took)}")
        self._event(trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        s = self._state(trial)
        self.failed += 1
        self.say(f"trial {s.number}: failed: {_trial_error(trial)}")
        self._event(trials)

    def on_trial_recover(self, iteration, trials, trial, **info):
        s = self._state(trial)
        self.say(f"trial {s.number}: lost ({_trial_error(trial)}); retrying, it goes on at its next unfinished seed")
        self._event(trials)

    def on_experiment_end(self, trials, **info):
        self.overall(trials)


class TestPhaseConsole(Callback):
    """Prints the test phase's progress: one line when it starts and one per report of its Train runs (a
    ``sweeps.core.progress.JobsReport`` after each fine-tune, and one for a group's checkpoints evaluated in
    one pass)."""

    def __init__(self, key: str, n_jobs: int, n_train: int, groups: int):
        self.key, self.n_jobs, self.n_train, self.groups = key, n_jobs, n_train, groups
        self.done: dict[str, int] = {}
        self.t0 = time.time()

    def setup(self, **info):
        self.t0 = time.time()
        print(f"[{self.key}] test phase: {self.n_jobs} jobs on test ({self.n_train} fine-tunes, "
              f"{self.n_jobs - self.n_train} evaluations of checkpoints the search made or the base model) "
              f"in {self.groups} group(s) at once", flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        report = JobsReport.from_result(result)
        if report is None or report.jobs_done <= self.done.get(trial.trial_id, 0):  # a restarted group repeats it
            return
        self.done[trial.trial_id] = report.jobs_done
        total = sum(self.done.values())
        print(f"[{self.key}] test: {report.last_job} done ({total}/{self.n_jobs}, "
              f"{_minutes(time.time() - self.t0)})", flush=True)
