"""What a Ray Train run reports after each job, typed: the one thing that crosses the Ray boundary.

A worker (``sweeps.shell.jobs``) reports a ``TrialReport`` after each seed of a search trial, or a
``JobsReport`` after each job of the test phase and base training, through ``ray.train.report``;
Ray Train's ``TuneReportCallback`` hands it to Tune, and ASHA, the paired scheduler, the console
and the MLflow trial logger read it back with ``from_result``. The metrics dict is encoded and
decoded here only. Per-seed values travel as two parallel lists (``seeds``, ``seed_AP_all``):
Tune flattens nested dicts for its schedulers (``a/b`` keys) but passes lists through unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dkan.evaluation.aggregate import aggregate_seeds
from dkan.names import HEADLINE

SEEDS_DONE = "seeds_done"  # ASHA's time attribute: a trial's rungs are seeds


def metric_name(split: str, name: str = "AP_all") -> str:
    """The reported name of a running mean, e.g. ``val_AP_all`` (the search's objective on val)."""
    return f"{split}_{name}"


@dataclass(frozen=True)
class TrialReport:
    """A search trial after one more seed: each seed's AP_all and the running means on ``split``."""

    split: str  # where the APs were measured: the selection split (val; test under --protocol paper)
    seed_ap: dict[int, float]  # AP_all of each seed done, in the order they ran (NaN: no defined AP)
    means: dict[str, float]  # AP_base, AP_novel, AP_all over the seeds done (NaN seeds left out)
    last_seed: int
    fit_seconds_total: float = 0.0
    retention: float = math.nan  # mean AP_base over the base model's AP_base on the same split (NaN: unknown)

    @property
    def seeds_done(self) -> int:
        return len(self.seed_ap)

    @property
    def objective(self) -> float:
        """The mean AP_all over the seeds done: what the search maximises."""
        return self.means.get("AP_all", math.nan)

    def named_means(self) -> dict[str, float]:
        """The running means by their reported names (``val_AP_base``, ``val_AP_novel``, ``val_AP_all``,
        ``val_retention``)."""
        return {**{metric_name(self.split, k): v for k, v in self.means.items()},
                metric_name(self.split, "retention"): self.retention}

    def finite_seed_ap(self) -> dict[int, float]:
        """The seeds with a defined AP (a NaN seed pairs with nothing)."""
        return {s: v for s, v in self.seed_ap.items() if math.isfinite(v)}

    @classmethod
    def of_seeds(cls, split: str, per_seed: Sequence[tuple[int, Mapping[str, Any]]],
                 fit_seconds_total: float = 0.0, base_ap: float | None = None) -> TrialReport:
        """The report after the (seed, metrics) pairs done so far (``base_ap``: the base model's AP_base on
        the split, for the retention)."""
        agg = aggregate_seeds({s: m for s, m in per_seed})
        means = {k: agg[k]["mean"] if k in agg else math.nan for k in HEADLINE}
        seed_ap = {int(s): float(m.get("AP_all", math.nan)) for s, m in per_seed}
        retention = means["AP_base"] / base_ap if base_ap else math.nan
        return cls(split, seed_ap, means, int(per_seed[-1][0]), fit_seconds_total, retention)

    def to_metrics(self) -> dict[str, Any]:
        return {
            **self.named_means(),
            SEEDS_DONE: self.seeds_done, "last_seed": self.last_seed, "split": self.split,
            "seeds": list(self.seed_ap), "seed_AP_all": list(self.seed_ap.values()),
            "fit_seconds_total": self.fit_seconds_total,
        }

    @classmethod
    def from_result(cls, result: Mapping[str, Any] | None) -> TrialReport | None:
        """The report in a Tune result (as reported, or flattened by Tune); None when it holds none."""
        if not result or "seeds" not in result or "split" not in result:
            return None
        split = str(result["split"])
        means = {k: float(result.get(metric_name(split, k), math.nan)) for k in HEADLINE}
        seed_ap = {int(s): float(v) for s, v in zip(result["seeds"], result["seed_AP_all"])}
        return cls(split, seed_ap, means, int(result.get("last_seed", 0)), float(result.get("fit_seconds_total", 0)),
                   float(result.get(metric_name(split, "retention"), math.nan)))


@dataclass(frozen=True)
class JobsReport:
    """A Train run of mixed jobs (the test phase, base training) after one more job."""

    jobs_done: int
    last_job: str  # its label, e.g. "tfa/3"
    fit_seconds_total: float = 0.0

    def to_metrics(self) -> dict[str, Any]:
        return {"jobs_done": self.jobs_done, "last_job": self.last_job, "fit_seconds_total": self.fit_seconds_total}

    @classmethod
    def from_result(cls, result: Mapping[str, Any] | None) -> JobsReport | None:
        if not result or "jobs_done" not in result:
            return None
        seconds = float(result.get("fit_seconds_total", 0))
        return cls(int(result["jobs_done"]), str(result.get("last_job", "?")), seconds)


def error_line(text: str | None) -> str:
    """The line of a (Tune error file's) traceback that says what went wrong: the last exception line."""
    if not text:
        return "unknown error"
    skip = ("Traceback", "The above exception", "During handling", "Failure #", "^", "~")
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    top = [ln for ln in lines if not ln.startswith(skip) and not ln.startswith(("File ", '"'))]
    said = [ln for ln in top if ":" in ln and not ln.startswith(" ")]
    return (said or top or lines or ["unknown error"])[-1][:300]
