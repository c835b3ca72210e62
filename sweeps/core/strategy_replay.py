"""Search strategies composed of ``sweeps.core.strategy``'s decisions, replayed on a recorded grid (no Ray start).

A replay draws, per K, the study's seeds (with replacement from the recorded ones: slot i fine-tunes on
recorded seed ``slots[i]``) and the order in which the search meets the DKAN points. A strategy runs one
study per K on it (in the grid's K order: a transfer strategy hands each study's ranking to the next) and
spends fine-tune iterations: per (config, seed slot) the longest it trained (a run scored at a shorter rung
and continued later costs its full length once). The fixed candidates and the tuned point are selected by a
rule: ``ci95`` and ``se1`` (``sweeps.core.selection.recommend``, the sweep's --select-rule: the lower end of the
paired gain's 95% interval, or one standard error below it, above 0), ``one-se`` (the simplest within one standard
error of the best) or ``confirm`` (the search on the first seeds, ci95 on the held-back rest).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import Any

from sweeps.core.grid import Grid, GridError
from sweeps.core.plan import Budget
from sweeps.core.selection import recommend
from sweeps.core.strategy import (
    asha_continues,
    confirmation_split,
    halve,
    incumbent,
    ladder,
    mean,
    one_se,
    paired_t,
    paired_worse,
    race_drops,
    ranking,
    transfer_first,
)

MARGIN = Budget().margin  # the sweep's selection margin (AP_all, a fraction)
RULES = ("ci95", "se1", "one-se", "confirm")
TRANSFERS = ("none", "first", "shared")


@dataclass(frozen=True)
class Strategy:
    name: str
    about: str
    seeds: str = "all"  # all: every seed | asha: ASHA's rungs | paired: the sweep's paired scheduler, one run after
    # another | lockstep: every alive config runs the next seed
    on_iterations: bool = False  # rungs on training length (on the grace seeds) before more seeds
    race_fixed: bool = False  # the fixed candidates raced too (else each runs every seed at full length)
    transfer: str = "none"  # first: the previous K's best points first | shared: only those points
    grace: int = 3
    reduction: int = 3
    alpha: float = 0.1
    transfer_points: int = 3


STRATEGIES = {s.name: s for s in (
    Strategy("full", "every config on every seed at full length (the reference)"),
    Strategy("asha", "ASHA on seeds (grace 3, reduction 3), every trial at full length; fixed on every seed (the "
             "sweep's --scheduler asha, the default before 2026-12-07)", "asha"),
    Strategy("paired", "the sweep's --scheduler paired: a trial stops when a paired t (alpha 0.1) finds it worse than "
             "the best trial before it", "paired"),
    Strategy("race", "the paired scheduler on the fixed candidates too (the sweep's --scheduler race): each run "
             "stops when a paired t (alpha 0.1) finds it worse than the best run before it, fixed or searched",
             "paired", race_fixed=True),
    Strategy("race-first", "race, the previous K's best 3 points met first", "paired", race_fixed=True,
             transfer="first"),
    Strategy("asha-iters", "ASHA on (seeds, iterations): the grace seeds at each shorter rung first", "asha", True),
    Strategy("lockstep", "racing in lockstep over seeds (every alive config runs the next seed), paired one-sided "
             "t (alpha 0.1) against the incumbent; fixed on every seed", "lockstep"),
    Strategy("lockstep-all", "lockstep, the fixed candidates raced too", "lockstep", race_fixed=True),
    Strategy("lockstep-iters", "halving on iterations on the grace seeds (the points), then racing over seeds; fixed "
             "on every seed", "lockstep", True),
    Strategy("lockstep-iters-all", "lockstep-iters, the fixed candidates halved and raced too", "lockstep", True,
             True),
    Strategy("asha-first", "asha, the previous K's best 3 points met first", "asha", transfer="first"),
    Strategy("lockstep-iters-all-shared", "lockstep-iters-all; each later K races only the previous K's best 3 "
             "points and the fixed candidates (at full length from the first seed)", "lockstep", True, True,
             "shared"),
)}


@dataclass(frozen=True)
class Replay:
    slots: dict[int, tuple[int, ...]]  # K -> the recorded seed of each seed slot
    order: dict[int, tuple[str, ...]]  # K -> the DKAN points in the order the search meets them


@dataclass(frozen=True)
class StudyResult:
    k: int
    iterations: int
    candidates: dict[str, str]  # candidate (tfa | plain | dkan_defaults | dkan) -> config id, simplest first
    recommended: str  # a config id
    ranking: tuple[str, ...]  # the searched points, best first (what a transfer hands on)
    seed_ap: dict[str, dict[int, float]]  # config -> slot -> val AP_all at full length, where it ran so


@dataclass
class _Runs:
    """What one study trained: per (config, slot) its longest fine-tune."""

    grid: Grid
    k: int
    slots: tuple[int, ...]
    trained: dict[tuple[str, int], int] = field(default_factory=dict)

    def run(self, config: str, slot: int, iterations: int) -> float:
        key = (config, slot)
        self.trained[key] = max(self.trained.get(key, 0), iterations)
        return self.grid.val(self.k, config, self.slots[slot], iterations)

    def level(self, config: str, use: list[int], iterations: int) -> float:
        return mean({i: self.run(config, s, iterations) for i, s in enumerate(use)})

    def full(self, config: str, use: list[int]) -> dict[int, float]:
        return {s: self.run(config, s, self.grid.length) for s in use}

    def at_full(self, config: str) -> dict[int, float]:
        return {s: self.grid.val(self.k, config, self.slots[s]) for (c, s), it in sorted(self.trained.items())
                if c == config and it == self.grid.length}

    def reached(self, config: str) -> tuple[int, int, float]:
        """How far a config got: (seeds at full length, its longest run, the mean val AP of the runs that long)."""
        mine = {s: it for (c, s), it in self.trained.items() if c == config}
        if not mine:
            return 0, 0, math.nan
        top = max(mine.values())
        at = {s: self.grid.val(self.k, config, self.slots[s], top) for s, it in mine.items() if it == top}
        return (len(at) if top == self.grid.length else 0), top, mean(at)

    @property
    def iterations(self) -> int:
        return sum(self.trained.values())


def _asha(st: Strategy, runs: _Runs, points: list[str], use: list[int]) -> None:
    """The search's trials one after another through ASHA's rungs (a stopped trial's value is still recorded)."""
    levels = ladder(len(use), runs.grid.rungs, st.grace, st.reduction, st.on_iterations)
    recorded: list[list[float]] = [[] for _ in levels]
    for c in points:
        for i, lev in enumerate(levels):
            value = runs.level(c, use[:lev.seeds], lev.iterations)
            if i == len(levels) - 1:
                break
            go_on = asha_continues(value, recorded[i], st.reduction)
            recorded[i].append(value)
            if not go_on:
                break


def _paired(st: Strategy, runs: _Runs, points: list[str], use: list[int]) -> None:
    """Today's ``PairedSeedScheduler``, one trial after another: after each seed from the grace seeds on, a trial
    stops when the paired test finds it worse than the incumbent among the trials before it (the best by mean
    of those that ran the most seeds), on the seeds both ran."""
    for i, c in enumerate(points):
        before = {p: runs.at_full(p) for p in points[:i]}
        best = incumbent(before) if before else None
        for n, s in enumerate(use, 1):
            runs.run(c, s, runs.grid.length)
            if best is None or not st.grace <= n < len(use):
                continue
            mine = runs.at_full(c)
            common = sorted(set(mine) & set(before[best]))
            if len(common) >= max(2, st.grace) and paired_worse([mine[x] for x in common],
                                                                [before[best][x] for x in common], st.alpha):
                break


def _race(st: Strategy, runs: _Runs, fixed: list[str], points: list[str], use: list[int]) -> None:
    """Halving on iterations over the grace seeds (``on_iterations``; two left at least), then every alive config
    runs the next seed at full length and the paired test against the incumbent drops the worse (after ``grace``
    seeds)."""
    protected = [] if st.race_fixed else list(fixed)
    alive = list(fixed) + list(points)
    if st.on_iterations:
        g = use[:min(st.grace, len(use))]
        for r in runs.grid.rungs[:-1]:
            raced = [c for c in alive if c not in protected]
            keep = set(halve({c: runs.level(c, g, r) for c in raced}, st.reduction, at_least=2))  # a race needs 2
            alive = [c for c in alive if c in protected or c in keep]
    for n, s in enumerate(use, 1):
        for c in alive:
            runs.run(c, s, runs.grid.length)
        if n >= st.grace and n < len(use):
            drop = race_drops({c: runs.at_full(c) for c in alive}, st.grace, st.alpha, protected=protected)
            alive = [c for c in alive if c not in drop]


def _candidates(grid: Grid, fixed: list[str], seed_ap: dict[str, dict[int, float]], use: list[int]) -> dict[str, str]:
    """The fixed candidates that ran every seed, and the tuned point: the best mean among the searched points
    that ran every seed and the authors' defaults (none when the defaults are best), as ``sweeps.core.selection``."""
    done = [c for c, v in seed_ap.items() if len(v) == len(use)]
    out = {c: c for c in fixed if c in done}
    pool = [c for c in done if c in grid.points or c == "dkan_defaults"]
    if pool:
        tuned = max(pool, key=lambda c: mean(seed_ap[c]))
        if tuned != "dkan_defaults":
            out["dkan"] = tuned
    return out


@dataclass(frozen=True)
class _Seeds:  # what sweeps.core.selection.recommend reads of a candidate
    seed_ap: dict[int, float]


def apply_rule(rule: str, candidates: dict[str, str], seed_ap: dict[str, dict[int, float]]) -> str:
    """The config a selection rule recommends among ``candidates`` (name -> config, simplest first)."""
    if rule == "one-se":
        name = one_se({n: seed_ap[c] for n, c in candidates.items()})
    else:
        # t only: the Wilcoxon p the rule does not read costs 0.7 s a call on a bootstrap's tied seeds
        name, _ = recommend({n: _Seeds(seed_ap[c]) for n, c in candidates.items()}, MARGIN, compare=paired_t,
                            rule="se1" if rule == "se1" else "ci95")
    return candidates[name]


def run_study(grid: Grid, st: Strategy, rule: str, k: int, slots: tuple[int, ...], order: tuple[str, ...],
              previous: StudyResult | None = None) -> StudyResult:
    """One study of the strategy on the replay's seeds of K: what it trained and what the rule recommends."""
    runs = _Runs(grid, k, slots)
    every = list(range(len(slots)))
    use, held = confirmation_split(every, len(every) // 2) if rule == "confirm" else (every, [])
    points = list(order)
    if previous is not None and st.transfer == "first":
        points = transfer_first(previous.ranking, points, st.transfer_points)
    elif previous is not None and st.transfer == "shared":  # points screened already: no short rungs again
        points = list(previous.ranking[:st.transfer_points])
        st = replace(st, on_iterations=False)
    fixed = list(grid.fixed)
    if st.seeds == "lockstep":
        _race(st, runs, fixed, points, use)
    elif st.seeds == "paired" and st.race_fixed:  # the fixed candidates first, then the search, one incumbent pool
        _paired(st, runs, fixed + points, use)
    else:
        for c in fixed + (points if st.seeds == "all" else []):
            runs.full(c, use)
        if st.seeds == "asha":
            _asha(st, runs, points, use)
        elif st.seeds == "paired":
            _paired(st, runs, points, use)
    seed_ap = {c: runs.at_full(c) for c in fixed + points}
    candidates = _candidates(grid, fixed, seed_ap, use)
    if not candidates:
        raise GridError(f"{grid.source}: no candidate ran every seed of K={k} under {st.name}. Fix: report this")
    if held:  # the candidates afresh on seeds the search did not use
        fresh = {c: runs.full(c, held) for c in candidates.values()}
        recommended = apply_rule("ci95", candidates, fresh)
    else:
        recommended = apply_rule(rule, candidates, seed_ap)
    ranked = tuple(ranking({c: runs.reached(c) for c in points}))
    return StudyResult(k, runs.iterations, candidates, recommended, ranked, seed_ap)


def replay_once(grid: Grid, st: Strategy, rule: str, replay: Replay) -> list[StudyResult]:
    """One study per K, in the grid's order (each handing its ranking to the next)."""
    out: list[StudyResult] = []
    for k in grid.shots:
        out.append(run_study(grid, st, rule, k, replay.slots[k], replay.order[k], out[-1] if out else None))
    return out


def draw(grid: Grid, rng: random.Random, n_seeds: int | None = None, n_points: int | None = None) -> Replay:
    """A bootstrap replay: each K's seeds drawn with replacement from its recorded ones; the search meets
    ``n_points`` of the points (all), in a random order."""
    slots = {k: tuple(rng.choices(grid.seeds[k], k=n_seeds or len(grid.seeds[k]))) for k in grid.shots}
    return Replay(slots, {k: tuple(rng.sample(grid.points, n_points or len(grid.points))) for k in grid.shots})


def full_cost(grid: Grid, replay: Replay) -> int:
    """Every config the replay's search meets and every fixed candidate on every seed at full length."""
    return sum((len(grid.fixed) + len(replay.order[k])) * len(replay.slots[k]) * grid.length for k in grid.shots)


def on_test(grid: Grid, k: int, config: str, slots: tuple[int, ...]) -> dict[int, float]:
    return {i: grid.test(k, config, s) for i, s in enumerate(slots)}


def judge(grid: Grid, result: StudyResult, reference: StudyResult, slots: tuple[int, ...]) -> dict[str, Any]:
    """On test over the replay's seeds: regret against the best config (points), against the reference's
    recommendation, and whether another candidate (the study's or the reference's: a race may have dropped
    the fixed ones) beats the recommended one (paired 95% t interval above 0)."""
    test = {c: on_test(grid, result.k, c, slots) for c in grid.fixed + grid.points}
    best = max(mean(v) for v in test.values())
    rec = test[result.recommended]
    worse = False
    for c in set(result.candidates.values()) | set(reference.candidates.values()):
        if c != result.recommended:
            d = paired_t(test[c], rec)
            worse = worse or (math.isfinite(d["ci95_low"]) and d["ci95_low"] > 0)
    return {"regret": (best - mean(rec)) * 100, "vs_reference": (mean(test[reference.recommended]) - mean(rec)) * 100,
            "same": result.recommended == reference.recommended, "significantly_worse": worse}


def check(grid: Grid, names: list[str], rules: list[str], n_seeds: int | None = None,
          grace: int | None = None, alpha: float | None = None) -> list[Strategy]:
    """The strategies asked for, each checked against what the grid can support; one clear error otherwise."""
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        raise GridError(f"--strategies {','.join(unknown)}: unknown. Fix: choose from {', '.join(STRATEGIES)}")
    bad = [r for r in rules if r not in RULES]
    if bad:
        raise GridError(f"--rules {','.join(bad)}: unknown. Fix: choose from {', '.join(RULES)}")
    few = {k: len(v) for k, v in grid.seeds.items() if len(v) < 2}
    if few:
        raise GridError(f"{grid.source}: K={next(iter(few))} holds {next(iter(few.values()))} complete seed(s); a "
                        "paired test needs 2. Fix: record more seeds (the recorder resumes)")
    out = []
    for n in names:
        st = STRATEGIES[n] if grace is None else replace(STRATEGIES[n], grace=grace)
        st = st if alpha is None else replace(st, alpha=alpha)
        for rule in rules:
            seeds = min(n_seeds or len(v) for v in grid.seeds.values())
            search = seeds - seeds // 2 if rule == "confirm" else seeds
            if rule == "confirm" and seeds // 2 < 2:
                raise GridError(f"{grid.source}: --rules confirm holds back half the seeds and compares on them: "
                                f"{seeds} seeds give {seeds // 2}, a paired test needs 2. Fix: 4 seeds or more")
            if st.seeds != "all" and search <= st.grace:
                raise GridError(f"{grid.source}: strategy {n} (rule {rule}) needs more seeds than its {st.grace} "
                                f"grace seeds to stop anything; the replay has {search}. Fix: record more seeds, "
                                "pass a smaller --grace, or leave the strategy out")
        if st.on_iterations and len(grid.rungs) < 2:
            raise GridError(f"{grid.source}: strategy {n} stops on training length but the grid was scored at "
                            f"{len(grid.rungs)} rung ({list(grid.rungs)}). Fix: record with --fractions 0.25,0.5,1, "
                            "or leave the strategy out")
        if st.transfer != "none" and len(grid.shots) < 2:
            raise GridError(f"{grid.source}: strategy {n} hands one K's search to the next; the grid holds one K "
                            f"({list(grid.shots)}). Fix: record two K or more, or leave the strategy out")
        out.append(st)
    return out
