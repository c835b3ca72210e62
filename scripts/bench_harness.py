"""Benchmark harness shared by ``scripts/bench_sweep.py``, ``scripts/record_trials.py`` and
``scripts/record_grid.py`` (imported as a sibling module: a script's folder is on its path; the tests
import it as ``scripts.bench_harness``): fixed hyperparameter points, and the replay of a scheduler
through Ray Tune's real Tuner on a recording of every trial's per-seed val AP_all. Not part of the
sweep: the package holds no bench code.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeps.core.progress import TrialReport
from sweeps.core.space import DISTILL_SPACE, Space


def sample_points(n: int, seed: int, space: Space = DISTILL_SPACE) -> list[dict[str, Any]]:
    """The authors' defaults and then ``n - 1`` seeded uniform (log-uniform) points of the distillation space:
    fixed trials that benchmarks and recordings run under every scheduler alike."""
    import random

    from dkan.config import authors_defaults

    rng = random.Random(seed)
    pts = [{k: min(max(authors_defaults()[k], d.low), d.high) for k, d in space.items()}]
    while len(pts) < n:
        pts.append({k: (d.low * (d.high / d.low) ** rng.random()) if d.log else rng.uniform(d.low, d.high)
                    for k, d in space.items()})
    return pts


@dataclass(frozen=True)
class Recording:
    """Every trial's per-seed val AP_all (``scripts/record_trials.py``)."""

    seeds: tuple[int, ...]
    trials: dict[str, dict[int, float]]  # trial id -> seed -> AP_all
    configs: dict[str, dict[str, float]]

    @classmethod
    def load(cls, path: Path) -> "Recording":
        d = json.loads(Path(path).read_text())
        trials = {t["id"]: {int(s): float(v) for s, v in t["seed_AP_all"].items()} for t in d["trials"]}
        seeds = tuple(s for s in d["seeds"] if all(s in v for v in trials.values()))  # a cut-off recording
        return cls(seeds, {k: {s: v[s] for s in seeds} for k, v in trials.items()},
                   {t["id"]: t["config"] for t in d["trials"]})

    def full_mean(self, trial: str) -> float:
        v = [x for x in self.trials[trial].values() if math.isfinite(x)]
        return sum(v) / len(v) if v else math.nan

    def all_seeds_choice(self) -> str:
        return max(self.trials, key=self.full_mean)


def replay_trial(config: dict[str, Any], *, recording: Recording, seconds_per_seed: float) -> None:
    """A sweep trial's reports (``sweeps.core.progress.TrialReport`` on val), read from the recording."""
    from ray import tune

    done: list[tuple[int, dict[str, float]]] = []
    for s in recording.seeds:
        time.sleep(seconds_per_seed)  # a seed's fine-tune: trials interleave as in a sweep
        done.append((s, {"AP_all": recording.trials[config["trial"]][s]}))
        tune.report(TrialReport.of_seeds("val", done).to_metrics())


def replay(rec: Recording, scheduler, max_concurrent: int, storage: Path, name: str,
           seconds_per_seed: float = 0.3) -> dict[str, Any]:
    """One scheduler over the recording through Ray Tune's Tuner: fine-tunes run, the config selected
    (the best that ran every seed, as ``sweeps.core.selection.pick_best``) and the all-seeds choice."""
    from ray import tune

    trainable = tune.with_resources(
        tune.with_parameters(replay_trial, recording=rec, seconds_per_seed=seconds_per_seed), {"cpu": 0.01})
    # reuse_actors: one worker process per concurrent slot, not per trial (start-up dwarfs a replayed seed)
    t = time.time()
    grid = tune.Tuner(
        trainable, param_space={"trial": tune.grid_search(list(rec.trials))},
        tune_config=tune.TuneConfig(metric="val_AP_all", mode="max", scheduler=scheduler,
                                    max_concurrent_trials=max_concurrent, reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0),
    ).fit()
    reports = {r.config["trial"]: TrialReport.from_result(r.metrics) for r in grid if r.metrics}
    seeds = {t: rep.seeds_done for t, rep in reports.items() if rep}
    full = [t for t, n in seeds.items() if n == len(rec.seeds)]
    pick = max(full or list(seeds), key=lambda t: reports[t].objective)
    best = rec.all_seeds_choice()
    return {
        "finetunes": sum(seeds.values()), "all_seeds_finetunes": len(rec.trials) * len(rec.seeds),
        "ratio": len(rec.trials) * len(rec.seeds) / max(1, sum(seeds.values())),
        "seeds_per_trial": seeds, "min_seeds_run": min(seeds.values()), "selected": pick, "all_seeds_choice": best,
        "same_choice": pick == best, "selected_full_seed_val_AP_all": rec.full_mean(pick),
        "gap_points": (rec.full_mean(best) - rec.full_mean(pick)) * 100, "wall_s": round(time.time() - t, 1),
    }
