"""Record every trial's per-seed val AP_all once, for replaying the sweep's schedulers on it.

    .venv/bin/python scripts/record_trials.py --out runs/record_trials \
        --fixture tests/fixtures/trial_recording.json

N fixed hyperparameter sets (``bench_harness.sample_points``: the authors' defaults first) x the seeds,
each a real seed fine-tune: the sweep's own plan (``build_plan`` on the embedded synthetic set,
cpu-quick), study template and ``finetune_job``, run by the same ``fit`` a sweep worker calls, with
no early stopping. Ray is left out (a fine-tune's metrics do not depend on it; its start-up would
double the cost on a small machine). Seeds run seed-major (seed 1 of every trial, then seed 2...),
so an interrupted recording still holds every trial on its first seeds; a re-run skips the
fine-tunes whose ``metrics.json`` exists and resumes a half-done one.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

from bench_harness import sample_points

from dkan import runfolder
from dkan.names import parse_int_list
from sweeps.core.inputs import build_plan
from sweeps.core.jobspec import SeedJob, finetune_job
from sweeps.core.space import DISTILL_SPACE
from sweeps.run_tune import parse_args


def _run(job: SeedJob) -> dict:
    from dkan.engine.train import fit_once

    return fit_once(replace(job.cfg, threads=1, device="cpu"), progress=False)


def _base(plan, split) -> Path:
    """The split's base model from the sweep's cache, else trained here (same config as the sweep's)."""
    from dkan.engine.train import fit_once

    d = plan.base_cache_dir(split)
    fit_once(replace(plan.base_template(split), out=str(d), threads=1, device="cpu"), progress=False)
    return d / runfolder.FINAL


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/record_trials", help="run folders of the fine-tunes")
    p.add_argument("--fixture", default="runs/record_trials/trial_recording.json", help="the recording (JSON)")
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--seeds", type=parse_int_list, default=list(range(1, 11)))
    p.add_argument("--shots", default="3")
    p.add_argument("--finetune-iterations", type=int, default=10)
    p.add_argument("--points-seed", type=int, default=0, help="seed of the sampled hyperparameter sets")
    p.add_argument("--jobs", type=int, default=1, help="fine-tunes at once (one CPU thread each)")
    p.add_argument("--cache-dir", help="synthetic data and base models (default: the sweep's)")
    p.add_argument("--base-iterations", type=int, help="base training iterations (default: the sweep's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="fine-tune config override")
    p.add_argument("--base-set", action="append", default=[], metavar="KEY=VALUE", help="base-training override")
    a = p.parse_args()
    out = Path(a.out).absolute()
    argv = ["--shots", a.shots, "--profile", "cpu-quick", "--no-early-stop", "--out", str(out),
            "--finetune-iterations", str(a.finetune_iterations), "--trials", str(a.trials),
            "--seeds", ",".join(map(str, a.seeds)), *(["--cache-dir", a.cache_dir] if a.cache_dir else []),
            *(["--base-iterations", str(a.base_iterations)] if a.base_iterations else []),
            *(x for kv in a.set for x in ("--set", kv)), *(x for kv in a.base_set for x in ("--base-set", kv))]
    plan = build_plan(parse_args(argv))
    split = plan.splits[0]
    study = plan.study(split, plan.shots[0], _base(plan, split))
    points = sample_points(a.trials, a.points_seed)
    names = [f"trial{i:02d}" for i in range(len(points))]
    jobs = [(n, s, finetune_job(study.template, "dkan", s, plan.layout.trial_seed(study.key, n, s),
                                plan.select_split, pt))
            for s in plan.seeds for n, pt in zip(names, points)]  # seed-major: a cut-off run keeps every trial
    per_seed: dict[str, dict[str, float]] = {n: {} for n in names}
    t0 = time.time()
    fixture = Path(a.fixture)
    with ProcessPoolExecutor(max_workers=a.jobs) as pool:
        for i, ((n, s, _), m) in enumerate(zip(jobs, pool.map(_run, [j for _, _, j in jobs]))):
            per_seed[n][str(s)] = float(m["AP_all"])
            print(f"[{i + 1}/{len(jobs)} {time.time() - t0:.0f} s] {n} seed {s}: AP_all {m['AP_all']:.4f}", flush=True)
            write(fixture, plan, study, names, points, per_seed)  # after every fine-tune: a cut-off run keeps them
    print(f"wrote {fixture} ({len(jobs)} fine-tunes, {time.time() - t0:.0f} s)")


def write(path: Path, plan, study, names, points, per_seed) -> None:
    rec = {
        "about": "per-seed val AP_all of fixed hyperparameter sets, each a real seed fine-tune "
                 "(scripts/record_trials.py)",
        "dataset": plan.dataset, "profile": plan.profile, "shots": study.shots, "method": "dkan",
        "finetune_iterations": study.template.optim.iterations, "metric": "AP_all", "split": plan.select_split,
        "seeds": list(plan.seeds), "base_iterations": plan.base_template(plan.splits[0]).optim.iterations,
        "finetune_overrides": list(plan.finetune_overrides), "base_overrides": list(plan.base_overrides),
        "trials": [{"id": n, "config": {k: pt[k] for k in DISTILL_SPACE}, "seed_AP_all": per_seed[n]}
                   for n, pt in zip(names, points)],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec, indent=1) + "\n")


if __name__ == "__main__":
    main()
