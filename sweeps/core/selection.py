"""Selection on the selection split (val; test under ``--protocol paper``): one recommendation per study.

The candidates, simplest first: TFA < plain < DKAN with the authors' defaults < DKAN tuned. Each ran
every seed on val (``sweeps.shell.search``); the tuned one is the search trial with the best mean objective
among those that ran every seed (the Pareto search: the best AP_all on its front among the points
that keep ``--min-retention`` of the base model's AP_B), or the defaults when no trial beat them.

The rule: the simplest candidate stands; each next one replaces the one standing only when it beats it
on the same seeds by at least the margin (``--select-margin``, 0.5 AP_all points) on average, with the
95% t interval of the paired difference above 0. A trial stopped early is never a candidate, so nothing
is compared on seeds it did not run. Test only confirms or does not (``sweeps.core.outcome``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dkan.errors import DkanError
from dkan.evaluation.stats import paired
from sweeps.core.plan import Plan, interval_words
from sweeps.core.progress import TrialReport, error_line
from sweeps.core.shape import NAMES, RunSpec
from sweeps.core.space import point_of


class NoTrialSucceeded(DkanError, RuntimeError):
    """Every candidate of a study failed: the sweep stops with their first error, not a traceback."""


@dataclass(frozen=True)
class TrialSummary:
    """One Tune trial of a study's runs, as the outputs and MLflow need it."""

    trial_id: str | None
    method: str
    point: dict[str, Any]  # its searched values (a fixed candidate: its whole point)
    report: TrialReport | None  # its last report (None: no seed finished)
    error: str | None  # "Type: message" of a trial that failed
    wall_s: float = 0.0
    candidate: str | None = None  # a fixed candidate's name
    run: str = "search"

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
class Candidate:
    name: str  # one of sweeps.core.shape.NAMES
    method: str
    point: dict[str, Any]
    trial: TrialSummary  # its runs on the selection split, every seed

    @property
    def seed_ap(self) -> dict[int, float]:
        return self.trial.report.seed_ap if self.trial.report else {}


@dataclass(frozen=True)
class Step:
    """One comparison of the rule: ``challenger`` minus ``incumbent`` on the same seeds (``stats.paired``)."""

    challenger: str
    incumbent: str
    diff: dict[str, Any]
    replaced: bool


@dataclass(frozen=True)
class Selection:
    candidates: dict[str, Candidate]  # simplest first
    recommended: str
    steps: tuple[Step, ...]
    trials: tuple[TrialSummary, ...]  # every trial of the study's runs
    n_seeds: int
    margin: float
    how_tuned: str  # how the tuned candidate was picked
    rule: str = "ci95"  # the interval the rule reads (``low``)

    def rule_sentence(self) -> str:
        return rule_sentence(self.margin, self.rule)

    @property
    def choice(self) -> Candidate:
        return self.candidates[self.recommended]

    @property
    def finetunes(self) -> int:
        """Seed fine-tunes the study ran on the selection split."""
        return sum(t.seeds_done for t in self.trials)

    def search_summary(self) -> dict[str, Any]:
        """How the searches went: trials that ran every seed, were stopped early, or failed (each named)."""
        searched = [t for t in self.trials if t.candidate is None]
        ok = [t for t in searched if t.error is None]
        failed = [{"hyperparameters": t.point, "seeds_done": t.seeds_done, "error": t.error, "method": t.method}
                  for t in self.trials if t.error is not None]
        return {"trials": len(searched), "all_seeds": sum(t.seeds_done == self.n_seeds for t in ok),
                "stopped_early": sum(t.seeds_done < self.n_seeds for t in ok), "failed": failed}


def trial_summaries(grid: Iterable[Any], spec: RunSpec | None = None) -> list[TrialSummary]:
    """One summary per result of a Tune ResultGrid (or anything with ``config``, ``metrics``, ``error``)."""
    spec = spec or RunSpec("search")
    out = []
    for r in grid:
        m, config = r.metrics or {}, r.config or {}
        name = config.get("candidate")
        method, point = spec.fixed[name] if name in spec.fixed else (spec.method, point_of(config, spec.space))
        error = None if r.error is None else f"{type(r.error).__name__}: {r.error}"
        out.append(TrialSummary(m.get("trial_id"), method, dict(point), TrialReport.from_result(m), error,
                                float(m.get("time_total_s") or 0.0), name, spec.name))
    return out


def _complete(trials: Iterable[TrialSummary], n_seeds: int) -> list[TrialSummary]:
    return [t for t in trials if t.error is None and t.seeds_done == n_seeds and not math.isnan(t.objective)]


def pick_best(trials: list[TrialSummary], n_seeds: int) -> TrialSummary:
    """The best trial among those that ran every seed (all that reported, when none did)."""
    done = [t for t in trials if t.error is None and t.report is not None and not math.isnan(t.objective)]
    if not done:
        raise_nothing_ran(trials)
    return max(_complete(done, n_seeds) or done, key=lambda t: t.objective)


def raise_nothing_ran(trials: Sequence[TrialSummary]) -> None:
    errors = [error_line(t.error) for t in trials if t.error is not None]
    first = f"; the first error: {errors[0]}" if errors else ""
    raise NoTrialSucceeded(
        f"no trial reported a result ({len(errors)} of {len(trials)} failed{first}). Fix: read each trial's error "
        "above (or its dkan.failure_reason tag in MLflow), fix the cause, then rerun with --resume")


def pareto_front(trials: Sequence[TrialSummary]) -> list[TrialSummary]:
    """The trials no other beats on both mean AP_novel and AP_B retention."""
    def pt(t: TrialSummary) -> tuple[float, float]:
        return t.report.means.get("AP_novel", math.nan), t.report.retention

    ok = [t for t in trials if t.report and all(math.isfinite(v) for v in pt(t))]
    return [t for t in ok if not any(all(a >= b for a, b in zip(pt(o), pt(t))) and pt(o) != pt(t) for o in ok)]


def _tuned(plan: Plan, trials: list[TrialSummary], defaults: TrialSummary | None) -> tuple[TrialSummary | None, str]:
    pool = _complete(trials, len(plan.seeds)) + ([defaults] if defaults else [])
    if plan.objective_kind == "pareto":
        front = pareto_front(pool)
        keep = [t for t in front if t.report.retention >= plan.min_retention]
        how = (f"the best mean {plan.objective} among the Pareto front's trials (mean AP_novel against AP_B "
               f"retention) that keep {plan.min_retention:.0%} of the base model's AP_B")
        if not keep and front:
            keep = [max(front, key=lambda t: t.report.retention)]
            how += f"; none does, so the front's trial with the highest retention ({keep[0].report.retention:.0%})"
        return (max(keep, key=lambda t: t.objective) if keep else None), how
    how = f"the best mean {plan.objective} among the DKAN trials that ran all {len(plan.seeds)} seeds"
    return (max(pool, key=lambda t: t.objective) if pool else None), how


RULES = ("ci95", "se1")  # --select-rule: the interval a gain's lower end must clear (``low``)


def low(d: dict[str, Any], rule: str) -> float:
    """The lower end of the paired difference's interval the rule reads: ``ci95`` the 95% t interval's,
    ``se1`` the mean minus one standard error (NaN with fewer than 2 seeds)."""
    if rule == "se1":
        n, sd = d.get("n", 0), d.get("std", math.nan)
        return d["mean_diff"] - sd / math.sqrt(n) if n >= 2 and math.isfinite(sd) else math.nan
    if rule != "ci95":
        raise ValueError(f"selection rule {rule!r}: one of {', '.join(RULES)}")
    return d["ci95_low"]


def rule_sentence(margin: float, rule: str) -> str:
    """The rule in words (results, MLflow, the plan): "simplest first; a candidate replaces ..."."""
    return (f"simplest first; a candidate replaces the one standing when it gains at least {margin * 100:g} AP_all "
            f"points on the same seeds with {interval_words(rule)} above 0")


def recommend(candidates: dict[str, Candidate], margin: float, compare=paired,
              rule: str = "ci95") -> tuple[str, list[Step]]:
    """The rule (module docstring) over candidates given simplest first: a candidate replaces the one standing
    when it gains at least ``margin`` with the lower end of its interval (``low``: the 95% CI's, or one standard
    error below the mean) above 0. ``compare``: the paired statistics (``dkan.evaluation.stats.paired``; a replay
    passes a t-only one: the rule reads the mean and its interval)."""
    names = list(candidates)
    standing, steps = names[0], []
    for name in names[1:]:
        d = compare(candidates[name].seed_ap, candidates[standing].seed_ap)
        lo = low(d, rule)
        better = math.isfinite(d["mean_diff"]) and d["mean_diff"] >= margin and math.isfinite(lo) and lo > 0
        steps.append(Step(name, standing, d, better))
        standing = name if better else standing
    return standing, steps


def select(plan: Plan, runs: Sequence[tuple[RunSpec, Iterable[Any]]]) -> Selection:
    """The candidates of one study's finished runs on the selection split, and the recommended one."""
    trials = [t for spec, grid in runs for t in trial_summaries(grid, spec)]
    n = len(plan.seeds)
    found: dict[str, Candidate] = {}
    for t in _complete(trials, n):  # a fixed candidate that failed is no candidate (named in the results)
        if t.candidate:
            found[t.candidate] = Candidate(t.candidate, t.method, t.point, t)
    for c in plan.shape.of_role("baseline"):  # a baseline's own search: its best trial that ran every seed
        mine = _complete([t for t in trials if t.candidate is None and t.method == c.method], n)
        if mine and c.name not in found:
            best = max(mine, key=lambda t: t.objective)
            found[c.name] = Candidate(c.name, c.method, best.point, best)
    how = _tuned(plan, [], None)[1]
    for c in plan.shape.of_role("tuned"):  # the best of the method's search or its defaults
        defaults = next((found[d.name] for d in plan.shape.of_role("defaults")
                         if d.method == c.method and d.name in found), None)
        searched = [t for t in trials if t.candidate is None and t.method == c.method]
        tuned, how = _tuned(plan, searched, defaults.trial if defaults else None)
        if tuned is not None and (defaults is None or tuned is not defaults.trial):
            found[c.name] = Candidate(c.name, c.method, tuned.point, tuned)
    if not found:
        raise_nothing_ran(trials)
    candidates = {name: found[name] for name in NAMES if name in found}
    recommended, steps = recommend(candidates, plan.budget.margin, rule=plan.budget.select_rule)
    return Selection(candidates, recommended, tuple(steps), tuple(trials), n, plan.budget.margin, how,
                     plan.budget.select_rule)
