"""The sweep: per class split and K, the candidates (TFA, plain, DKAN with the authors' defaults, DKAN
tuned by Ray Tune + Optuna over any config values) fine-tuned over the few-shot seeds on val (one Ray
Train run per trial, a fit() per seed, ASHA on seeds), one recommended by a stated rule, confirmed
(or not) on test; MLflow; the recommended model exported and registered. The same options as
`dkan sweep`.

    python sweeps/run_tune.py --shots 1,3,5                  # embedded default: synthetic data, local Ray + MLflow
    python sweeps/run_tune.py --data data/neu-det --shots 1,3,5 --splits 1,2,3
    python sweeps/run_tune.py ... --dry-run                  # the checked plan only: no Ray, nothing written
    python sweeps/run_tune.py ... --resume                   # continue an interrupted sweep
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dkan.errors import DkanError, check_writable, storage_errors
from dkan.names import METRICS, PROFILES, PROTOCOLS, name_list_text, parse_int_list, parse_name_list


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The sweep's options (shared by `python sweeps/run_tune.py` and `dkan sweep`)."""
    a = p.add_argument
    a(
        "--data",
        help="prepared dataset (dkan prepare-data --out). "
        "Default: the synthetic set, generated into the cache, with a small budget (11-14 min on 2 CPU cores "
        "for --shots 1,3,5, docs/benchmarks.md)",
    )
    a("--splits", type=parse_int_list, help="NEU-DET's class split presets 1-3, only for NEU-DET's classes "
      "(default: the splits recorded by prepare-data --class-splits, else 1)")
    a("--base", type=name_list_text, metavar="A,B,C", help="base classes of your own split (any dataset)")
    a("--novel", type=name_list_text, metavar="D,E",
      help="novel classes (default: the dataset's other classes); needs --base")
    a("--class-splits", metavar="YAML", help="several named splits: NAME: {base: [...], novel: [...]}")
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
        type=int, help="seeds every run goes through before it can be stopped (default 3; 1 on the embedded default)",
    )
    a("--reduction-factor", type=int, help="ASHA reduction factor (default 3)")
    a("--scheduler", choices=("race", "asha", "paired", "fifo"), help="how weak runs stop between seeds: race "
      "(default: a per-seed paired t test against the best run before it, the fixed candidates raced too and the "
      "search's trials compared with them, sweeps/shell/schedulers.py), asha (the default before 2026-12-07: ASHA "
      "on seeds, the search's trials only), paired (race without the fixed candidates), fifo (= --no-early-stop)")
    a("--paired-alpha", type=float, help="--scheduler paired or race: one-sided level of the test (default 0.1)")
    a("--workers", type=int, default=1, help="Ray Train workers (DDP) per fine-tune")
    a("--cpus-per-worker", type=float, default=1.0)
    a("--gpus-per-worker", type=float, default=0.0, help="may be fractional (e.g. 0.5: two workers share a GPU)")
    a("--max-concurrent", type=int, help="trials at once (default: as many as the cluster holds)")
    a("--max-failures", type=int, help="retries of a trial or base training whose worker, driver or node was lost; "
      "the retry goes on at the next unfinished seed (default 2; a non-finite loss or bad data is never retried)")
    a("--search-space", metavar="YAML", help="config keys to search: dotted keys of the fine-tune config with "
      "{low, high, log} or {choices: [...]} (e.g. optim.lr), over the default space: the distillation weights "
      "and temperatures and the learning rate optim.lr (sweeps/core/space.py)")
    a("--points", metavar="YAML", help="a list of DKAN points to evaluate first (after the authors' defaults)")
    a("--candidates", type=parse_name_list, metavar="tfa,plain,dkan",
      help="what a study compares on val and may recommend, simplest first (default all three; dkan: its "
      "authors' defaults and the tuned values)")
    a("--select-margin", type=float, metavar="POINTS", help="the AP_all points a candidate must gain over a "
      "simpler one on the same val seeds (with the interval of --select-rule above 0) to replace it (default 0.5)")
    a("--select-rule", choices=("ci95", "se1"), help="the interval whose lower end a candidate's paired gain must "
      "clear: se1 (default: one standard error below the mean gain) or ci95 (the 95%% t interval; the default "
      "before 2026-12-07)")
    a("--objective", choices=("ap_all", "pareto"), help="what DKAN's search maximises: the mean AP_all (default) "
      "or the Pareto front of AP_novel against AP_B retention (the pick: --min-retention)")
    a("--min-retention", type=float, help="--objective pareto: the pick is the best AP_all on the front among "
      "the points keeping this share of the base model's AP_B (default 0.9)")
    a("--keep-checkpoints", choices=("selected", "all"), help="selected (default): once a study has selected, the "
      "model files of search trials no one can choose are deleted (metrics, config and history stay); all: keep them")
    a("--dry-run", action="store_true", help="check and print the whole plan (data, splits, space, resources, "
      "candidates), start no Ray, write nothing")
    a("--no-early-stop", action="store_true", help="run every trial on every seed (no ASHA)")
    a("--metric", choices=METRICS, default="coco", help="AP50 of the tables: coco (101-point, default) or voc07 "
      "(11-point, the paper's; the reference rows compare in it). Selection uses COCO AP_all")
    a("--search-seed", type=int, default=0,
      help="seed of the TPE sampler; each (split, K) study derives its own from it (default 0)")
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
    a("--device-tflops", type=float, metavar="TFLOPS", help="the estimate's model, where this cluster has measured "
      "nothing yet: what one worker's device sustains on this detector's training (default: 40 per GPU, an "
      "H100-class card; 0.05 per CPU core, measured on 2 cores; sweeps/core/estimate.py)")
    a("--verbose", action="store_true", help="also print Ray Tune's trial tables (default: one line per trial event)")


class ArgumentError(DkanError, ValueError):
    pass


# option -> (smallest value, why): a value below is an error, never silently a default
_MINIMUM = {
    "trials": (1, "at least one trial per (split, K)"), "base_iterations": (1, "base training needs iterations"),
    "finetune_iterations": (1, "a fine-tune needs iterations"),
    "grace_seeds": (1, "ASHA must let every trial run at least one seed"),
    "reduction_factor": (2, "ASHA keeps 1/reduction-factor of the trials at each rung"),
    "max_concurrent": (1, "at least one trial must run at a time"), "workers": (1, "a fine-tune needs a worker"),
    "num_cpus": (1, "the local Ray needs a CPU"), "max_failures": (0, "0 turns retries off"),
}
# list options -> (smallest value, why)
_LIST_MINIMUM = {"shots": (1, "K is the number of boxes per class"), "seeds": (1, "the few-shot seeds start at 1")}


def check_args(args: argparse.Namespace) -> None:
    """Refuse bad option values before any work (exit 2), naming the value and the fix."""
    for name, (low, why) in _MINIMUM.items():
        v = getattr(args, name, None)
        if v is not None and v < low:
            flag = "--" + name.replace("_", "-")
            raise ArgumentError(f"{flag} {v}: must be at least {low} ({why}). Fix: pass {flag} {low} or more, "
                                "or leave it out for the default")
    for name, (low, why) in _LIST_MINIMUM.items():
        values = getattr(args, name, None) or []
        if values and min(values) < low:
            flag = "--" + name
            raise ArgumentError(f"{flag} {','.join(map(str, values))}: every value must be at least {low} ({why}). "
                                f"Fix: e.g. {flag} {'1,3,5' if name == 'shots' else '1-10'}")
    alpha = getattr(args, "paired_alpha", None)
    if alpha is not None and not 0 < alpha < 1:
        raise ArgumentError(f"--paired-alpha {alpha}: a test level lies in (0, 1). Fix: e.g. --paired-alpha 0.1")
    tflops = getattr(args, "device_tflops", None)
    if tflops is not None and not (math.isfinite(tflops) and tflops > 0):
        raise ArgumentError(f"--device-tflops {tflops}: a device's FLOP rate is a positive number. Fix: e.g. "
                            "--device-tflops 40 (an H100-class GPU), or leave it out for the default")
    if getattr(args, "cpus_per_worker", 1.0) <= 0 or getattr(args, "gpus_per_worker", 0.0) < 0:
        raise ArgumentError(f"--cpus-per-worker {args.cpus_per_worker} / --gpus-per-worker {args.gpus_per_worker}: "
                            "a worker needs some CPU and no negative GPU. Fix: e.g. --cpus-per-worker 1")
    out = str(args.out)
    if "://" in out:
        raise ArgumentError(
            f"--out {out}: the sweep writes its run folders (checkpoints, metrics, results) with plain file I/O, "
            "so a cloud URI is not supported. Fix: mount the bucket or an NFS share at the same path on every node "
            "(e.g. /mnt/sweeps) and pass --out /mnt/sweeps/<name>; see clusters/README.md"
        )
    if "'" in out and '"' in out:
        raise ArgumentError(f"--out {out}: holds both ' and \", which MLflow's run search cannot quote. "
                            "Fix: choose a path without quote characters")
    check_writable(Path(out))
    if args.resume and getattr(args, "dry_run", False):
        raise ArgumentError("--resume with --dry-run: a dry run resumes nothing. Fix: drop one of them")
    if args.resume and not (Path(out) / "ray_results").is_dir():
        raise ArgumentError(f"--resume: {Path(out).absolute()} holds no sweep state (no ray_results folder), "
                            "so there is nothing to resume. Fix: check --out, or run without --resume to start")


def dry_run(args: argparse.Namespace) -> int:
    """The whole plan checked and printed as the sweep would start it, on this machine's resources (or
    the cluster's, read without starting Ray there: the ones given to --num-cpus); no Ray, nothing written."""
    import os
    import shutil

    from sweeps.core.estimate import plan_line
    from sweeps.core.inputs import build_plan
    from sweeps.core.plan import complete_plan

    plan = build_plan(args, prepare=False)
    try:
        import torch

        gpus = float(torch.cuda.device_count())
        node = {"CPU": float(args.num_cpus or os.cpu_count() or 1) + (1.0 if args.address is None else 0.0),
                "GPU": gpus}
        plan = complete_plan(plan, [node], local=args.address is None)
        print(plan.describe())
        print(plan_line(plan, keep=False))
        print("dry run: the plan above is checked; nothing was started or written"
              + (f" (on {args.address} the resources are the cluster's)" if args.address else ""))
    finally:
        if plan.data_root.parent.name.startswith("dkan-plan-"):  # the embedded default's data, made for the check
            shutil.rmtree(plan.data_root.parent, ignore_errors=True)
    return 0


@contextmanager
def one_sweep_in(out: Path) -> Iterator[None]:
    """Hold ``out``'s lock while the sweep runs: a second sweep (or --resume) there is refused at once, naming
    the process that holds it; a lock left by a sweep that died is taken over with a note. A folder made only
    for the lock (the sweep then stopped at a bad input) is removed again."""
    from dkan import runfolder
    from sweeps.core.layout import RunLayout

    out = out.absolute()
    lock = RunLayout(out).lock
    made = [p for p in (out, *out.parents) if not p.exists()]  # made for the lock: out, then its new parents

    def busy(holder: str) -> ArgumentError:
        pid = holder.split()[1] if holder.startswith("pid ") else "PID"
        return ArgumentError(f"--out {out}: in use by another sweep, {holder}. Fix: wait for it to end, or stop it "
                             f"(kill {pid}; --resume continues it later), or choose another --out")

    with runfolder.exclusive(lock, busy=busy) as stale:
        if stale:
            print(f"note: {lock} was held by {stale}, which ended without releasing it; taken over", flush=True)
        try:
            yield
        finally:
            if made and out.is_dir() and [p.name for p in out.iterdir()] == [lock.name]:
                lock.unlink()
                for folder in made:
                    if any(folder.iterdir()):
                        break
                    folder.rmdir()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    """The sweep of parsed arguments; the exit code (2: bad input, 130: interrupted)."""
    t0 = time.time()
    try:
        with storage_errors():  # disk full, read-only or no permission: one clear line
            check_args(args)
            if getattr(args, "dry_run", False):
                return dry_run(args)
            with one_sweep_in(Path(args.out)):  # before the heavy imports: a second sweep is refused at once
                from sweeps.core.inputs import build_plan

                plan = build_plan(args)  # every input checked before Ray, Optuna and MLflow load (seconds, a GB)
                from sweeps.shell.search import SweepInterrupted
                from sweeps.shell.sweep import run_sweep

                try:
                    run_sweep(plan, args.address, args.num_cpus, args.resume)
                except SweepInterrupted as e:
                    print(f"\n{e}", file=sys.stderr)
                    return 130
    except DkanError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from sweeps.shell.tracker import runs_address

    print(  # the console's last line: where everything is, and the address that opens the runs table
        f"done in {(time.time() - t0) / 60:.1f} min; results in {plan.out / 'results'}; "
        f"MLflow: {runs_address(plan.tracking_uri, plan.dataset)}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
