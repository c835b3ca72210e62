"""Selection on the selection split (val; test under ``--protocol paper``): a study's search, read once.

``select`` turns Tune's ResultGrid into one ``TrialSummary`` per trial (hyperparameters, last report,
error, wall time), then picks the tuned candidate: the best mean objective among the trials that ran
every seed (ASHA-stopped trials saw fewer; a trial that raised is never picked). The authors'
defaults are a candidate too, tied to the trial that ran them (the search runs them first), so the
test phase reuses that trial's checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dkan.config import authors_defaults
from dkan.errors import DkanError
from sweeps.console import error_line
from sweeps.plan import Plan, StudySpec
from sweeps.progress import TrialReport
from sweeps.space import first_points, point_of


class NoTrialSucceeded(DkanError, RuntimeError):
    """Every trial of a study's search failed: the sweep stops with their first error, not a traceback."""


@dataclass(frozen=True)
class Candidate:
    """A hyperparameter set and the search trial that ran it (None: no trial did)."""

    hparams: dict[str, float]
    trial_id: str | None = None


@dataclass(frozen=True)
class TrialSummary:
    """One search trial as the outputs and MLflow need it."""

    trial_id: str | None
    hparams: dict[str, float]
    report: TrialReport | None  # its last report (None: no seed finished)
    error: str | None  # "Type: message" of a trial that failed
    wall_s: float = 0.0

    @property
    def seeds_done(self) -> int:
        return self.report.seeds_done if self.report else 0

    @property
    def objective(self) -> float:
        return self.report.objective if self.report else math.nan

    def state(self, n_seeds: int, selected: str | None) -> str:
        """failed | selected | stopped early | completed (the figures' colours)."""
        if self.error is not None:
            return "failed"
        if self.trial_id is not None and self.trial_id == selected:
            return "selected"
        return "stopped early" if self.seeds_done < n_seeds else "completed"


@dataclass(frozen=True)
class Selection:
    """What the search chose and how it went."""

    tuned: Candidate
    defaults: Candidate
    best: TrialSummary  # the tuned candidate's trial
    trials: tuple[TrialSummary, ...]
    n_seeds: int

    @property
    def finetunes(self) -> int:
        """Seed fine-tunes the search ran."""
        return sum(t.seeds_done for t in self.trials)

    def search_summary(self) -> dict[str, Any]:
        """How the search went: trials that ran every seed, were stopped early, or failed (each named)."""
        ok = [t for t in self.trials if t.error is None]
        failed = [{"hyperparameters": t.hparams, "seeds_done": t.seeds_done, "error": t.error}
                  for t in self.trials if t.error is not None]
        return {"trials": len(self.trials), "all_seeds": sum(t.seeds_done == self.n_seeds for t in ok),
                "stopped_early": sum(t.seeds_done < self.n_seeds for t in ok), "failed": failed}


def summarize(grid: Iterable[Any]) -> list[TrialSummary]:
    """One summary per result of a Tune ResultGrid (or anything with ``config``, ``metrics``, ``error``)."""
    out = []
    for r in grid:
        m = r.metrics or {}
        error = None if r.error is None else f"{type(r.error).__name__}: {r.error}"
        out.append(TrialSummary(m.get("trial_id"), point_of(r.config or {}), TrialReport.from_result(m), error,
                                float(m.get("time_total_s") or 0.0)))
    return out


def pick_best(trials: list[TrialSummary], n_seeds: int) -> TrialSummary:
    """The best trial among those that ran every seed (all that reported, when none did)."""
    done = [t for t in trials if t.error is None and t.report is not None and not math.isnan(t.objective)]
    if not done:
        errors = [error_line(t.error) for t in trials if t.error is not None]
        first = f"; the first error: {errors[0]}" if errors else ""
        raise NoTrialSucceeded(
            f"no trial reported a result ({len(errors)} of {len(trials)} failed{first}). Fix: read each trial's error "
            "above (or its dkan.failure_reason tag in MLflow), fix the cause, then rerun with --resume")
    full = [t for t in done if t.seeds_done == n_seeds]
    return max(full or done, key=lambda t: t.objective)


def select(plan: Plan, study: StudySpec, grid: Iterable[Any]) -> Selection:
    """The tuned candidate and the authors' defaults of one study's finished search."""
    trials = summarize(grid)
    best = pick_best(trials, len(plan.seeds))
    defaults = Candidate(first_points(plan.space, authors_defaults(study.split.number))[0])
    for t in trials:  # the search ran the defaults first: reuse that trial's checkpoints
        if t.trial_id and all(math.isclose(t.hparams.get(k, math.nan), v) for k, v in defaults.hparams.items()):
            defaults = Candidate(defaults.hparams, t.trial_id)
            break
    return Selection(Candidate(best.hparams, best.trial_id), defaults, best, tuple(trials), len(plan.seeds))
