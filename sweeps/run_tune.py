"""The sweep: Ray Tune + Optuna over DKAN's distillation weights and temperatures, every trial
over the few-shot seeds (one Ray Train run per trial, a fit() per seed), ASHA on seeds, MLflow, best-config export.

    python sweeps/run_tune.py --shots 1,3,5                  # embedded default: synthetic data, local Ray + MLflow
    python sweeps/run_tune.py --data data/neu-det --shots 1,3,5 --splits 1,2,3
    python sweeps/run_tune.py ... --resume                   # continue an interrupted sweep
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from anywhere

from dkan.cli import parse_int_list  # noqa: E402
from dkan.errors import DkanError  # noqa: E402
from sweeps.plan import ALL_SEEDS, QUICK, QUICK_SEEDS, Budget, Plan, PlanError, check_data, check_resources, default_cache_dir, load_points  # noqa: E402
from sweeps.space import load_space  # noqa: E402
from sweeps.seed_run import WorkerResources  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="prepared dataset (dkan prepare-data --out). Default: the synthetic set, generated into the cache, with a 15-minute budget")
    p.add_argument("--splits", type=parse_int_list, default=[1], help="class splits (default 1)")
    p.add_argument("--shots", type=parse_int_list, default=[1, 3, 5], help="K values (default 1,3,5)")
    p.add_argument("--seeds", type=parse_int_list, help="few-shot seeds per trial (default 1-10; 1-3 on the embedded default)")
    p.add_argument("--trials", type=int, help="Optuna trials per (split, K) (default 12; 2 on the embedded default)")
    p.add_argument("--profile", choices=["paper", "cpu-quick"], help="model/schedule profile (default: by hardware)")
    p.add_argument("--base-iterations", type=int, help="base training iterations (default: the profile's; 100 on the embedded default)")
    p.add_argument("--finetune-iterations", type=int, help="iterations per seed fine-tune (default: the profile's; 10 on the embedded default)")
    p.add_argument("--grace-seeds", type=int, help="ASHA: seeds every trial runs before it can be stopped (default 3; 1 on the embedded default)")
    p.add_argument("--reduction-factor", type=int, help="ASHA reduction factor (default 3)")
    p.add_argument("--workers", type=int, default=1, help="Ray Train workers (DDP) per fine-tune")
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="may be fractional (e.g. 0.5: two workers share a GPU)")
    p.add_argument("--max-concurrent", type=int, help="trials at once (default: as many as the cluster holds)")
    p.add_argument("--search-space", metavar="YAML", help="ranges overriding the default space")
    p.add_argument("--points", metavar="YAML", help="a list of hyperparameter sets to evaluate first (after the authors' defaults)")
    p.add_argument("--no-early-stop", action="store_true", help="run every trial on every seed (no ASHA)")
    p.add_argument("--protocol", choices=["val", "paper"], default="val", help="select on val (default) or on test as the paper did")
    p.add_argument("--base-checkpoint", metavar="PATH", help="use this base model instead of training or the cache")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite store in --out)")
    p.add_argument("--out", default="runs/sweep", help="run directory (default runs/sweep)")
    p.add_argument("--cache-dir", help="synthetic data and base models (default $DKAN_CACHE or ~/.cache/dkan-sweep)")
    p.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: this machine's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="fine-tune config override (repeatable)")
    p.add_argument("--base-set", action="append", default=[], metavar="KEY=VALUE", help="base-training config override")
    p.add_argument("--resume", action="store_true", help="continue the interrupted sweep in --out")
    return p.parse_args(argv)


def build_plan(args: argparse.Namespace) -> Plan:
    """Everything checked before any work; the synthetic set is prepared here when needed."""
    from dkan.data.prepare import PrepareConfig, prepare_data
    from dkan.profiles import choose_profile
    from sweeps.tracking import check_tracking_uri, default_tracking_uri

    cache = Path(args.cache_dir or default_cache_dir())
    embedded = args.data is None
    if embedded:
        data_root = cache / "data" / "synthetic"
        res = prepare_data(PrepareConfig(out=str(data_root), synthetic=True))
        print(f"synthetic data: {res.status} ({data_root})")
    else:
        data_root = Path(args.data)
    args.seeds = args.seeds or (QUICK_SEEDS if embedded else ALL_SEEDS)
    check_data(data_root, args.splits, args.shots, args.seeds)
    base = QUICK if embedded else Budget()
    budget = Budget(
        trials=args.trials or base.trials, base_iterations=args.base_iterations or base.base_iterations,
        finetune_iterations=args.finetune_iterations or base.finetune_iterations,
        grace_seeds=args.grace_seeds or base.grace_seeds, reduction_factor=args.reduction_factor or base.reduction_factor,
        early_stop=not args.no_early_stop,
    )
    if budget.trials < 1:
        raise PlanError(f"--trials {budget.trials}: need at least one trial")
    space = load_space(Path(args.search_space) if args.search_space else None)
    points = load_points(args.points, space)
    out = Path(args.out).absolute()
    uri = args.tracking_uri or default_tracking_uri(out)
    check_tracking_uri(uri)
    if args.base_checkpoint and not Path(args.base_checkpoint).is_file():
        raise PlanError(f"--base-checkpoint {args.base_checkpoint}: file not found. Fix: pass a model_final.pt from dkan base-train")
    return Plan(
        data_root=data_root.absolute(), dataset=data_root.absolute().name, splits=args.splits, shots=args.shots, seeds=args.seeds,
        profile=choose_profile(args.profile), budget=budget, space=space,
        resources=WorkerResources(args.workers, args.cpus_per_worker, args.gpus_per_worker), max_concurrent=args.max_concurrent or 0,
        out=out, tracking_uri=uri, protocol=args.protocol, base_checkpoint=Path(args.base_checkpoint).absolute() if args.base_checkpoint else None,
        cache_dir=cache.absolute(), base_overrides=args.base_set, finetune_overrides=args.set, extra_points=points,
    )


def ensure_base(plan: Plan, split: int) -> Path:
    """The split's base model: given, cached (same config and data), or trained now through Ray Train."""
    import json

    from sweeps.seed_run import run_fit

    if plan.base_checkpoint:
        return plan.base_checkpoint
    d = plan.base_cache_dir(split)
    if (d / "model_final.pt").is_file() and (d / "metrics.json").is_file():
        m = json.loads((d / "metrics.json").read_text())
        print(f"base model (split {split}): cached at {d} (val AP_base {m['AP_base'] * 100:.1f})")
        return d / "model_final.pt"
    cfg = plan.base_template(split)
    cfg["out"] = str(d)
    print(f"base model (split {split}): training {cfg['optim']['iterations']} iterations -> {d}", flush=True)
    t = time.time()
    # base training runs alone: give it the CPUs of every concurrent slot that fit on one node
    res = replace(plan.resources, cpus_per_worker=min(plan.node_cpus, plan.resources.cpus_per_worker * max(1, plan.max_concurrent)))
    m = run_fit("base", cfg, res, f"base_{d.name}", str(plan.out / "ray_results" / "train"), resume=True, watch=True)
    print(f"base model (split {split}): val AP_base {m['AP_base'] * 100:.1f} in {time.time() - t:.0f} s", flush=True)
    return d / "model_final.pt"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.time()
    try:
        plan = build_plan(args)
    except DkanError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # On Ctrl+C Tune waits up to this long for each trial to stop (600 s by default); a trial is
    # blocked in its seed's Train run, so stop it sooner: it resumes from its last finished seed.
    os.environ.setdefault("TUNE_FORCE_TRIAL_CLEANUP_S", "15")
    import ray

    from sweeps.study import SweepInterrupted, run_study
    from sweeps.tracking import Tracker

    if args.address is None:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        # one logical CPU more than the fine-tunes get: the trial drivers' (they only wait)
        local_cpus = args.num_cpus or os.cpu_count() or 1
        ray.init(address="local", num_cpus=local_cpus + 1, log_to_driver=False)
    else:
        ray.init(address=args.address, log_to_driver=False)
    try:
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        if args.address is None:
            nodes = [{**nodes[0], "CPU": float(local_cpus)}]
            fits = check_resources(plan.resources, nodes[0], nodes, driver_cpu=0.0)
        else:
            fits = check_resources(plan.resources, ray.cluster_resources(), nodes)
        plan.node_cpus = max(n.get("CPU", 0.0) for n in nodes)
        plan.max_concurrent = min(plan.max_concurrent or fits, fits)
        print(plan.describe(), flush=True)
        tracker = Tracker(plan.tracking_uri, plan.dataset)
        results = []
        for split in plan.splits:
            base = ensure_base(plan, split)
            for shots in plan.shots:
                r = run_study(plan, split, shots, base, tracker, args.resume)
                print(f"\n{r.markdown}\nexported: {r.export_path}\n", flush=True)
                results.append(r)
    except DkanError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except SweepInterrupted as e:
        print(f"\n{e}", file=sys.stderr)
        return 130
    finally:
        ray.shutdown()
    print(f"done in {(time.time() - t0) / 60:.1f} min; results in {plan.out / 'results'}; MLflow: mlflow ui --backend-store-uri {plan.tracking_uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
