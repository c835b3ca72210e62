"""Stopping weak trials between seeds: a paired per-seed test against the incumbent.

Seeds are paired: on seed 3 every trial fine-tunes on the same few-shot images, so the per-seed
difference between two trials is far less noisy than the difference of their means (the spread
between seeds cancels). ``PairedSeedScheduler`` stops a trial once, on the seeds both have run,
its per-seed AP is worse than the incumbent's by a one-sided paired test at level ``alpha`` (the
idea of Optuna's ``WilcoxonPruner``; Ray Tune has no paired scheduler). ASHA instead compares a
trial's running mean with other trials' at the same rung, so a trial that reaches a rung first
always continues.

A trial reports, after each seed, a ``sweeps.core.progress.TrialReport``: each seed's AP_all so far; the
scheduler needs nothing else.

``scripts/bench_harness.py`` replays a scheduler through Ray Tune's real Tuner on a recording of every
trial's per-seed results (``scripts/record_trials.py``), so schedulers compare exactly and cheaply
(``scripts/bench_sweep.py --replay``).
"""

from __future__ import annotations

from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from sweeps.core.progress import SEEDS_DONE, TrialReport
from sweeps.core.strategy import paired_worse  # the pure test, shared with the replayed strategies

TESTS = ("t", "wilcoxon")
SCHEDULERS = ("asha", "paired", "race", "fifo")


def seed_values(result: dict[str, Any] | None) -> dict[int, float]:
    """Each seed's AP_all in a trial's result (NaN seeds left out: they pair with nothing)."""
    report = TrialReport.from_result(result)
    return report.finite_seed_ap() if report else {}


class PairedSeedScheduler(FIFOScheduler):
    """Stops a trial whose per-seed AP is worse than the incumbent's by a paired test (never before
    ``grace_seeds`` paired seeds).

    The incumbent: among the other trials, the best by mean that ran every seed; while none has,
    the best by mean among those that ran the most seeds (so the first trials of a study are
    compared with each other too). A trial is compared only on the seeds both have run."""

    _supports_buffered_results = False  # a decision after every seed, as ASHA's rungs

    def __init__(self, n_seeds: int, grace_seeds: int = 2, alpha: float = 0.1, test: str = "t",
                 metric: str | None = None, mode: str | None = None,
                 rivals: dict[str, dict[int, float]] | None = None) -> None:
        super().__init__()
        if test not in TESTS:
            raise ValueError(f"test {test!r}: choose one of {TESTS}")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha {alpha}: must lie in (0, 1)")
        self.n_seeds, self.grace, self.alpha, self.test = n_seeds, max(1, grace_seeds), alpha, test
        self._metric, self._sign = metric, -1.0 if mode == "min" else 1.0
        # trial id -> seed -> AP_all (as reported); ``rivals``: runs before this Tune run (the fixed candidates,
        # under --scheduler race), in the incumbent's pool but never stopped here
        self._seeds: dict[str, dict[int, float]] = {f"rival:{k}": dict(v) for k, v in (rivals or {}).items()}
        self.stopped: dict[str, int] = {}  # trial id -> seeds it had run when stopped

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        if mode:
            self._sign = -1.0 if mode == "min" else 1.0
        return super().set_search_properties(metric, mode, **spec)

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        self._learn(tune_controller)
        self._seeds[trial.trial_id] = seed_values(result)
        if self.should_stop(trial.trial_id):
            self.stopped[trial.trial_id] = len(self._seeds[trial.trial_id])
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict) -> None:
        if result:
            self._seeds[trial.trial_id] = seed_values(result)

    def _learn(self, tune_controller) -> None:
        """Trials known only from their last result (a restored sweep: they do not report again)."""
        for t in tune_controller.get_trials() if tune_controller is not None else ():
            if t.trial_id not in self._seeds and getattr(t, "last_result", None):
                self._seeds[t.trial_id] = seed_values(t.last_result)

    def incumbent(self, exclude: str) -> str | None:
        others = {k: v for k, v in self._seeds.items() if k != exclude and v}
        if not others:
            return None
        most = max(len(v) for v in others.values())
        pool = [k for k, v in others.items() if len(v) >= min(most, self.n_seeds)]
        return max(pool, key=lambda k: self._sign * sum(others[k].values()) / len(others[k]))

    def should_stop(self, trial_id: str) -> bool:
        mine = self._seeds.get(trial_id, {})
        best = self.incumbent(trial_id)
        if best is None or len(mine) < self.grace or len(mine) >= self.n_seeds:
            return False
        common = sorted(set(mine) & set(self._seeds[best]))
        if len(common) < self.grace:
            return False
        x = [self._sign * mine[s] for s in common]
        b = [self._sign * self._seeds[best][s] for s in common]
        return paired_worse(x, b, self.alpha, self.test)

    def debug_string(self) -> str:
        return (f"Paired per-seed {self.test} test against the incumbent (alpha {self.alpha:g}, grace "
                f"{self.grace} seeds): {len(self.stopped)} stopped")


def make_scheduler(kind: str, n_seeds: int, grace: int, reduction: int = 3, alpha: float = 0.1,
                   metric: str | None = None, rivals: dict[str, dict[int, float]] | None = None) -> TrialScheduler:
    """The sweep's scheduler: ``asha`` (on seeds_done), ``paired`` (a t test at ``alpha``), ``race`` (the paired
    test, its incumbent chosen among ``rivals`` too: each run's per-seed AP from the study's runs before this one)
    or ``fifo`` (every trial runs every seed). ``metric`` (maximised): the scheduler's own, where the search has
    several (the Pareto search); else Tune's."""
    if kind not in SCHEDULERS:
        raise ValueError(f"scheduler {kind!r}: choose one of {SCHEDULERS}")
    own = {"metric": metric, "mode": "max"} if metric else {}
    if kind == "asha":
        return ASHAScheduler(time_attr=SEEDS_DONE, max_t=n_seeds, grace_period=min(grace, n_seeds),
                             reduction_factor=reduction, **own)
    if kind in ("paired", "race"):
        return PairedSeedScheduler(n_seeds=n_seeds, grace_seeds=grace, alpha=alpha,
                                   rivals=rivals if kind == "race" else None, **own)
    return FIFOScheduler()
