"""The decisions a budgeted search makes, as plain functions on typed data (no Ray, Optuna or MLflow).

Fidelities: seeds (a trial runs seed after seed) and training length (a fine-tune scored at rungs of its
iterations, then continued). The decisions:

- ASHA's (Ray Tune's ``ASHAScheduler`` rules, replayed exactly): ``asha_milestones`` and ``asha_continues``,
  on seeds alone (the sweep's --scheduler asha) or on a ``ladder`` of (seeds, iterations) levels;
- successive halving on iterations: ``halve`` keeps the best 1/reduction of the configs at a rung (a floor given);
- racing over seeds (irace, SMAC's intensification): every config still alive runs the next seed, then
  ``race_drops`` drops each that a one-sided paired test (``paired_worse``) finds worse than the incumbent;
- transfer across the studies of a split: ``transfer_first`` (another K's best points first) and ``ranking`` (how far
  each config got);
- selection: the sweep's rules are ``sweeps.core.selection.recommend``'s; ``one_se`` is the one-standard-error rule
  (paired); ``confirmation_split`` holds seeds back to confirm the tuned point on seeds its search did not use.

``sweeps.core.strategy_replay`` composes them into search strategies and replays them on a recorded grid.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from dkan.evaluation.stats import paired

SeedAP = Mapping[int, float]  # seed (slot) -> AP_all


def paired_worse(x: Sequence[float], best: Sequence[float], alpha: float, test: str = "t") -> bool:
    """True when ``x`` is worse than ``best`` (higher is better) on paired values, one-sided at ``alpha``.

    ``t``: the mean difference is below 0 and so is its one-sided upper bound at level ``alpha``
    (Student t, n-1 degrees of freedom; needs 2 pairs). ``wilcoxon``: the signed-rank test's
    one-sided p-value is below ``alpha`` (exact for few pairs: with n pairs it is at least 2^-n,
    so it cannot stop before log2(1/alpha) seeds)."""
    from scipy import stats

    d = [a - b for a, b in zip(x, best)]
    n = len(d)
    if n < 2 or sum(d) >= 0:
        return False
    if test == "wilcoxon":
        if all(v == 0 for v in d):
            return False
        return bool(stats.wilcoxon(d, alternative="less").pvalue < alpha)
    mean = sum(d) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in d) / (n - 1))
    return bool(mean + stats.t.ppf(1 - alpha, n - 1) * sd / math.sqrt(n) < 0)


def paired_t(a: SeedAP, b: SeedAP) -> dict[str, object]:
    """A minus B over the seeds both have: ``dkan.evaluation.stats.paired`` without its Wilcoxon p (NaN)."""
    return paired(a, b, wilcoxon=False)


def mean(values: SeedAP) -> float:
    v = [x for x in values.values() if math.isfinite(x)]
    return sum(v) / len(v) if v else math.nan


# --- ASHA and successive halving -------------------------------------------------------------------------

def asha_milestones(max_t: int, grace: int, reduction: int) -> list[int]:
    """The rungs of Ray Tune's ASHA (one bracket), ascending: grace * reduction^k below ``max_t``."""
    if grace >= max_t:
        return []
    n = int(math.log(max_t / grace) / math.log(reduction) + 1)
    return [grace * reduction ** k for k in range(n) if grace * reduction ** k < max_t]


def asha_continues(value: float, recorded: Sequence[float], reduction: int) -> bool:
    """ASHA at a rung: a trial goes on unless it is below the (1 - 1/reduction) quantile of the values the
    trials before it recorded there (linear interpolation, as numpy's; the first trial always goes on)."""
    v = sorted(x for x in recorded if math.isfinite(x))
    if not v or not math.isfinite(value):
        return True
    pos = (1 - 1 / reduction) * (len(v) - 1)
    lo = math.floor(pos)
    cut = v[lo] + (v[min(lo + 1, len(v) - 1)] - v[lo]) * (pos - lo)
    return value >= cut


@dataclass(frozen=True)
class Level:
    """A fidelity: the first ``seeds`` seeds, each fine-tuned ``iterations`` iterations."""

    seeds: int
    iterations: int


def ladder(n_seeds: int, rungs: Sequence[int], grace: int, reduction: int, on_iterations: bool) -> list[Level]:
    """The levels a trial climbs, cheapest first, the last every seed at full length. Seeds alone: ASHA's
    milestones on seeds. ``on_iterations``: first the grace seeds at each shorter rung of training length."""
    full = rungs[-1]
    short = [Level(min(grace, n_seeds), r) for r in rungs[:-1]] if on_iterations else []
    return short + [Level(s, full) for s in asha_milestones(n_seeds, grace, reduction)] + [Level(n_seeds, full)]


def halve(scores: Mapping[str, float], reduction: int, at_least: int = 1) -> list[str]:
    """Successive halving at one rung: the best ceil(n / reduction) configs, at least ``at_least`` (ties: the
    first given)."""
    keep = max(at_least, math.ceil(len(scores) / reduction))
    return sorted(scores, key=lambda c: -scores[c] if math.isfinite(scores[c]) else math.inf)[:keep]


# --- racing over seeds ------------------------------------------------------------------------------------

def incumbent(seed_ap: Mapping[str, SeedAP]) -> str:
    """The config with the best mean among those that ran the most seeds (ties: the first given)."""
    most = max(len(v) for v in seed_ap.values())
    pool = [c for c, v in seed_ap.items() if len(v) == most]
    return max(pool, key=lambda c: mean(seed_ap[c]) if math.isfinite(mean(seed_ap[c])) else -math.inf)


def race_drops(seed_ap: Mapping[str, SeedAP], grace: int, alpha: float, test: str = "t",
               protected: Iterable[str] = ()) -> set[str]:
    """The configs a race drops after a seed: each worse than the incumbent by a one-sided paired test on
    the seeds both ran, once they share ``grace`` seeds. The incumbent and ``protected`` are never dropped."""
    if not seed_ap:
        return set()
    best = incumbent(seed_ap)
    keep = set(protected) | {best}
    out = set()
    for c, v in seed_ap.items():
        common = sorted(set(v) & set(seed_ap[best]))
        if c in keep or len(common) < max(2, grace):
            continue
        if paired_worse([v[s] for s in common], [seed_ap[best][s] for s in common], alpha, test):
            out.add(c)
    return out


# --- transfer across studies ------------------------------------------------------------------------------

def ranking(reached: Mapping[str, tuple[int, int, float]]) -> list[str]:
    """Configs best first by how far they got, (seeds at full length, longest iterations, mean val AP there):
    what a study hands the next."""
    return sorted(reached, key=lambda c: (-reached[c][0], -reached[c][1],
                                          -reached[c][2] if math.isfinite(reached[c][2]) else math.inf))


def transfer_first(previous: Sequence[str], order: Sequence[str], m: int) -> list[str]:
    """The points a study's search meets: the previous study's best ``m`` first, then its own in their order, as
    many in all as its own order holds."""
    first = list(previous[:m])
    return (first + [c for c in order if c not in first])[:max(len(order), len(first))]


# --- selection rules besides the sweep's (sweeps.core.selection.recommend) ---------------------------------------

def one_se(candidates: Mapping[str, SeedAP]) -> str:
    """The one-standard-error rule, paired: the simplest candidate (given simplest first) whose mean is within
    one standard error of the paired difference of the best candidate's mean (the best by mean)."""
    names = list(candidates)
    best = max(names, key=lambda c: mean(candidates[c]) if math.isfinite(mean(candidates[c])) else -math.inf)
    for c in names:
        d = paired_t(candidates[best], candidates[c])
        se = d["std"] / math.sqrt(d["n"]) if d["n"] >= 2 and math.isfinite(d["std"]) else 0.0
        if c == best or (math.isfinite(d["mean_diff"]) and d["mean_diff"] <= se):
            return c
    return best


def confirmation_split(slots: Sequence[int], held_back: int) -> tuple[list[int], list[int]]:
    """The seeds the search uses and the ``held_back`` last ones on which its candidates are compared afresh."""
    if not 0 < held_back < len(slots):
        raise ValueError(f"held_back {held_back}: between 1 and {len(slots) - 1} of {len(slots)} seeds")
    return list(slots[:-held_back]), list(slots[-held_back:])
