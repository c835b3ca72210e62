"""The sweep: Ray Tune + Optuna over DKAN's distillation weights and temperatures, every trial
over the few-shot seeds (one Ray Train run per trial, a fit() per seed), ASHA on seeds, MLflow,
best-config export. The same options as `dkan sweep`.

    python sweeps/run_tune.py --shots 1,3,5                  # embedded default: synthetic data, local Ray + MLflow
    python sweeps/run_tune.py --data data/neu-det --shots 1,3,5 --splits 1,2,3
    python sweeps/run_tune.py ... --resume                   # continue an interrupted sweep
"""

from __future__ import annotations

import argparse
import sys
import time

from dkan.errors import DkanError
from dkan.names import PROFILES, PROTOCOLS, parse_int_list


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The sweep's options (shared by `python sweeps/run_tune.py` and `dkan sweep`)."""
    a = p.add_argument
    a(
        "--data",
        help="prepared dataset (dkan prepare-data --out). "
        "Default: the synthetic set, generated into the cache, with a 15-minute budget",
    )
    a("--splits", type=parse_int_list, default=[1], help="class splits (default 1)")
    a("--shots", type=parse_int_list, default=[1, 3, 5], help="K values (default 1,3,5)")
    a("--seeds", type=parse_int_list, help="few-shot seeds per trial (default 1-10; 1-3 on the embedded default)")
    a("--trials", type=int, help="Optuna trials per (split, K) (default 12; 2 on the embedded default)")
    a("--profile", choices=PROFILES, help="model/schedule profile (default: by hardware)")
    a(
        "--base-iterations",
        type=int, help="base training iterations (default: the profile's; 100 on the embedded default)",
    )
    a(
        "--finetune-iterations",
        type=int, help="iterations per seed fine-tune (default: the profile's; 10 on the embedded default)",
    )
    a(
        "--grace-seeds",
        type=int, help="ASHA: seeds every trial runs before it can be stopped (default 3; 1 on the embedded default)",
    )
    a("--reduction-factor", type=int, help="ASHA reduction factor (default 3)")
    a("--workers", type=int, default=1, help="Ray Train workers (DDP) per fine-tune")
    a("--cpus-per-worker", type=float, default=1.0)
    a("--gpus-per-worker", type=float, default=0.0, help="may be fractional (e.g. 0.5: two workers share a GPU)")
    a("--max-concurrent", type=int, help="trials at once (default: as many as the cluster holds)")
    a("--search-space", metavar="YAML", help="ranges overriding the default space")
    a("--points", metavar="YAML", help="a list of hyperparameter sets to evaluate first (after the authors' defaults)")
    a("--no-early-stop", action="store_true", help="run every trial on every seed (no ASHA)")
    a("--protocol", choices=PROTOCOLS, default="val", help="select on val (default) or on test as the paper did")
    a("--base-checkpoint", metavar="PATH", help="use this base model instead of training or the cache")
    a("--tracking-uri", help="MLflow tracking URI (default: sqlite store in --out)")
    a("--out", default="runs/sweep", help="run directory (default runs/sweep)")
    a("--cache-dir", help="synthetic data and base models (default $DKAN_CACHE or ~/.cache/dkan-sweep)")
    a("--address", help="Ray cluster address (default: start a local Ray)")
    a("--num-cpus", type=int, help="CPUs of the local Ray (default: this machine's)")
    a("--set", action="append", default=[], metavar="KEY=VALUE", help="fine-tune config override (repeatable)")
    a("--base-set", action="append", default=[], metavar="KEY=VALUE", help="base-training config override")
    a("--resume", action="store_true", help="continue the interrupted sweep in --out")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    """The sweep of parsed arguments; the exit code (2: bad input, 130: interrupted)."""
    from sweeps.plan import build_plan
    from sweeps.search import SweepInterrupted
    from sweeps.sweep import run_sweep

    t0 = time.time()
    try:
        plan = build_plan(args)
        run_sweep(plan, args.address, args.num_cpus, args.resume)
    except DkanError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except SweepInterrupted as e:
        print(f"\n{e}", file=sys.stderr)
        return 130
    print(
        f"done in {(time.time() - t0) / 60:.1f} min; results in {plan.out / 'results'}; "
        f"MLflow: mlflow ui --backend-store-uri {plan.tracking_uri}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
