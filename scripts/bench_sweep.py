"""Sweep benchmarks: ASHA's savings at equal selection quality, and orchestration overhead.

    scripts/venv-run python scripts/bench_sweep.py --out runs/bench_sweep

1. The same N hyperparameter sets (fixed, so both runs see the same trials), every one over all
   seeds: once with ASHA on seeds_done, once with every trial on every seed. Reported: seed
   fine-tunes executed in each (target: ASHA at least 3x fewer) and the full-seed val AP_all of
   the config each run selects (target: within 0.5 points).
2. Orchestration overhead at the default profile (cpu-quick, its full 200-iteration fine-tune):
   one trial over a few seeds, alone, (wall time of the search - sum of every seed's fit() time,
   set-up and evaluation included) / wall time.
   Target: at most 5%.
Prints a table, writes JSON. Uses the synthetic set and a cached base model.

With ``--replay tests/fixtures/trial_recording.json`` (every trial's per-seed val AP_all, recorded
once by ``scripts/record_trials.py``) nothing is trained: each scheduler (ASHA, the paired rule of
``sweeps.shell.schedulers``, FIFO) runs through Ray Tune's real Tuner on a trainable that reports the
recorded seeds one after another, exactly as a sweep trial does. Reported per scheduler: seed
fine-tunes executed, the ratio to all seeds, and the selected config (the best that ran every seed,
as ``sweeps.core.selection.pick_best``) against the all-seeds choice, by full-seed mean.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench_harness import sample_points

from sweeps.core.inputs import build_plan
from sweeps.core.space import DISTILL_SPACE
from sweeps.run_tune import parse_args
from sweeps.shell.sweep import ensure_base


def search(plan, split, shots: int, base: Path, name: str):
    from sweeps.core.shape import RunSpec
    from sweeps.shell.search import tune_run
    from sweeps.shell.tracker import Tracker
    from sweeps.tracking import TAG_KEY, TAG_KIND

    tracker = Tracker(plan.tracking_uri, plan.dataset)
    parent = tracker.run(name, {TAG_KEY: f"bench|{plan.out}|{name}", TAG_KIND: "sweep"})
    t = time.time()
    study = replace(plan.study(split, shots, base), key=name)
    spec = RunSpec("search", "dkan", plan.space, plan.budget.trials, tuple(plan.extra_points))  # every point searched
    grid = tune_run(plan, study, parent, False, spec)
    return grid, time.time() - t


def per_config(grid) -> dict[tuple, dict]:
    return {tuple(round(float(r.config[k]), 9) for k in DISTILL_SPACE): r.metrics for r in grid if r.metrics}


# label -> (scheduler, grace seeds, trials at once, alpha): ASHA as the sweep runs it, the paired
# rule, and ASHA with more trials at once
REPLAYS = {
    "ASHA grace 1, 2 at once": ("asha", 1, 2, 0.0), "ASHA grace 3, 2 at once": ("asha", 3, 2, 0.0),
    "ASHA grace 1, 4 at once": ("asha", 1, 4, 0.0), "ASHA grace 1, 6 at once": ("asha", 1, 6, 0.0),
    "paired t, alpha 0.05, grace 2": ("paired", 2, 2, 0.05), "paired t, alpha 0.1, grace 2": ("paired", 2, 2, 0.1),
    "paired t, alpha 0.1, grace 3": ("paired", 3, 2, 0.1), "paired t, alpha 0.1, grace 2, 4 at once":
    ("paired", 2, 4, 0.1),
}


def run_replays(path: Path, out: Path, seconds_per_seed: float) -> dict[str, Any]:
    from bench_harness import Recording, replay

    from sweeps.shell.localray import start_local_ray, stop_local_ray
    from sweeps.shell.schedulers import make_scheduler

    rec = Recording.load(path)
    start_local_ray(8)  # retried once when the raylet misses Ray's start-up wait (an overloaded machine)
    try:
        rows = {label: replay(rec, make_scheduler(kind, len(rec.seeds), grace, 3, alpha), conc, out / "replay",
                              label.replace(" ", "_").replace(",", ""), seconds_per_seed)
                for label, (kind, grace, conc, alpha) in REPLAYS.items()}
    finally:
        stop_local_ray()
    print(f"\nreplay of {path}: {len(rec.trials)} trials x {len(rec.seeds)} seeds; all-seeds choice "
          f"{rec.all_seeds_choice()} (full-seed val AP_all {rec.full_mean(rec.all_seeds_choice()) * 100:.2f})")
    print("\n| scheduler | seed fine-tunes | vs all seeds | fewest seeds run | selected | same as all seeds "
          "| full-seed val AP_all (gap) |\n|---|---|---|---|---|---|---|")
    for label, r in rows.items():
        print(f"| {label} | {r['finetunes']} | {r['ratio']:.2f}x fewer | {r['min_seeds_run']} | {r['selected']} "
              f"| {'yes' if r['same_choice'] else 'no'} | {r['selected_full_seed_val_AP_all'] * 100:.2f} "
              f"({r['gap_points']:.2f} pt) |")
    return {"recording": str(path), "trials": len(rec.trials), "seeds": list(rec.seeds), "replays": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench_sweep")
    p.add_argument("--trials", type=int, default=9)
    p.add_argument("--seeds", default="1-10")
    p.add_argument("--shots", default="3")
    p.add_argument(
        "--finetune-iterations",
        type=int, default=10, help="per seed in the ASHA comparison (kept small: it runs every trial on every seed)",
    )
    p.add_argument(
        "--overhead-seeds",
        default="1-2",
        help="seeds of the overhead trial (fewer seeds: a larger share of start-up, so a conservative figure)",
    )
    p.add_argument(
        "--overhead-iterations",
        type=int, help="per seed in the overhead run (default: the cpu-quick profile's fine-tune)",
    )
    p.add_argument("--skip-overhead", action="store_true")
    p.add_argument("--only-overhead", action="store_true", help="skip the ASHA comparison")
    p.add_argument("--replay", metavar="JSON", help="replay the schedulers on a recording instead (no training)")
    p.add_argument("--seconds-per-seed", type=float, default=0.3, help="--replay: a replayed seed's duration")
    a = p.parse_args()
    out = Path(a.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if a.replay:
        report = run_replays(Path(a.replay), out, a.seconds_per_seed)
        (out / "bench_sweep_replay.json").write_text(json.dumps(report, indent=2))
        print(f"\nwrote {out / 'bench_sweep_replay.json'}")
        return
    import ray

    from dkan import yamlio

    pts = out / "points.yaml"
    pts.write_text(yamlio.dumps(sample_points(a.trials, 0)))
    common = ["--shots", a.shots, "--profile", "cpu-quick", "--points", str(pts), "--trials", str(a.trials)]
    ray.init(
        address="local", num_cpus=(os.cpu_count() or 1) + 1, log_to_driver=False
    )  # + the trial drivers' CPU, as tune_run does
    report: dict = {}
    try:
        runs = {}
        for label, extra in (
            ()
            if a.only_overhead
            else (("asha", ["--grace-seeds", "1", "--reduction-factor", "3"]), ("all seeds", ["--no-early-stop"]))
        ):
            args = [
                *common,
                "--seeds",
                a.seeds,
                "--finetune-iterations",
                str(a.finetune_iterations),
                "--out",
                str(out / label.replace(" ", "_")), *extra,
            ]
            plan = replace(build_plan(parse_args(args)), max_concurrent=os.cpu_count() or 1)
            base = ensure_base(plan, plan.splits[0])
            grid, wall = search(plan, plan.splits[0], plan.shots[0], base, f"bench_{label.replace(' ', '_')}")
            runs[label] = {
                "grid": per_config(grid),
                "wall_s": wall,
                "finetunes": sum(int(m.get("seeds_done", 0)) for m in per_config(grid).values()),
            }
        full = runs["all seeds"]["grid"] if runs else {}
        for label, r in runs.items():
            pick = max(
                (c for c, m in r["grid"].items() if m.get("seeds_done") == len(plan.seeds)) or r["grid"],
                key=lambda c: r["grid"][c]["val_AP_all"],
            )
            r["selected"] = dict(zip(DISTILL_SPACE, pick))
            r["selected_full_seed_val_AP_all"] = full[pick]["val_AP_all"]
            del r["grid"]
        if runs:
            report["asha_vs_all_seeds"] = runs
            report["finetune_ratio"] = runs["all seeds"]["finetunes"] / max(1, runs["asha"]["finetunes"])
            report["selected_val_AP_gap_points"] = (
                abs(runs["asha"]["selected_full_seed_val_AP_all"] - runs["all seeds"]["selected_full_seed_val_AP_all"])
                * 100
            )
        if not a.skip_overhead:
            from dkan.profiles import finetune_config

            iters = a.overhead_iterations or finetune_config("cpu-quick").optim.iterations
            args = [
                "--shots",
                a.shots,
                "--profile",
                "cpu-quick",
                "--trials",
                "1",
                "--seeds",
                a.overhead_seeds,
                "--no-early-stop",
                "--out",
                str(out / "overhead"),
                "--finetune-iterations",
                str(iters),
            ]
            plan = replace(build_plan(parse_args(args)), max_concurrent=1)
            base = ensure_base(plan, plan.splits[0])
            grid, wall = search(plan, plan.splits[0], plan.shots[0], base, "bench_overhead")
            m = next(iter(grid)).metrics
            compute = float(m["fit_seconds_total"])  # every seed's fit(): set-up, training, evaluation
            report["overhead"] = {
                "wall_s": wall,
                "fit_compute_s": compute,
                "seeds": int(m["seeds_done"]),
                "fraction": (wall - compute) / wall,
                "iterations_per_seed": iters,
            }
    finally:
        ray.shutdown()
    print("\n| measure | value | target |\n|---|---|---|")
    r = report.get("asha_vs_all_seeds")
    if r:
        print(f"| seed fine-tunes, ASHA | {r['asha']['finetunes']} ({r['asha']['wall_s']:.0f} s) | |")
        print(
            f"| seed fine-tunes, every trial on all seeds | {r['all seeds']['finetunes']} "
            f"({r['all seeds']['wall_s']:.0f} s) | |"
        )
        print(f"| ratio | {report['finetune_ratio']:.2f}x fewer | >= 3x |")
        print(
            f"| selected config's full-seed val AP_all: ASHA / all seeds "
            f"| {r['asha']['selected_full_seed_val_AP_all'] * 100:.2f} / "
            f"{r['all seeds']['selected_full_seed_val_AP_all'] * 100:.2f} "
            f"(gap {report['selected_val_AP_gap_points']:.2f} pt) | <= 0.5 pt |"
        )
    if "overhead" in report:
        o = report["overhead"]
        print(
            f"| orchestration overhead ({o['seeds']} seeds x {o['iterations_per_seed']} it, serial) "
            f"| {o['fraction'] * 100:.1f}% (wall {o['wall_s']:.0f} s, fit {o['fit_compute_s']:.0f} s) | <= 5% |"
        )
    (out / "bench_sweep.json").write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out / 'bench_sweep.json'}")


if __name__ == "__main__":
    main()
