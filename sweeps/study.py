"""One (split, K) study: the Optuna + ASHA search on val, then the best config and TFA on test."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

import dkan
from dkan.evaluation.aggregate import aggregate_seeds, to_json, to_markdown
from sweeps.plan import Plan
from sweeps.space import first_points, to_optuna
from sweeps.tracking import TAG_KEY, TAG_KIND, TrialLogger, Tracker
from sweeps.seed_run import seed_metrics
from sweeps.trial import HPARAMS, final_dir, final_trial, pack, search_trial

HEADLINE = ("AP_base", "AP_novel", "AP_all")


@dataclass
class StudyResult:
    key: str
    best_hparams: dict[str, float]
    best_val: dict[str, float]
    table: dict[str, dict]
    markdown: str
    export_path: Path
    seed_finetunes: int


class SweepInterrupted(KeyboardInterrupt):
    pass


def _on_sigint(sig, frame):  # a second Ctrl+C, after Tune has handed the signal back
    raise KeyboardInterrupt


def _fit(tuner: tune.Tuner, path: Path) -> tune.ResultGrid:
    """Tuner.fit(), but an interrupted run (Ctrl+C: Tune saves and returns) stops the sweep.

    Tune swaps in its own SIGINT handler and hands back the previous one only when the signal
    arrives: ours being back in place afterwards means the run was interrupted."""
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        signal.signal(signal.SIGINT, _on_sigint)
    grid = tuner.fit()
    interrupted = in_main and signal.getsignal(signal.SIGINT) is _on_sigint
    if in_main:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if interrupted or grid.num_terminated + grid.num_errors < len(grid):
        raise SweepInterrupted(f"interrupted; the state is saved in {path}. Resume with the same command plus --resume")
    return grid


def _tuner(path: Path, trainable, resume: bool, make) -> tune.Tuner:
    if resume and tune.Tuner.can_restore(str(path)):
        print(f"resuming {path}")
        return tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=True)
    return make()


def run_search(plan: Plan, split: int, shots: int, template: dict[str, Any], tracker: Tracker, parent: str, key: str, resume: bool) -> tune.ResultGrid:
    storage = plan.out / "ray_results"
    prefix = "test_" if plan.protocol == "paper" else "val_"
    metric = f"{prefix}AP_all"
    fn = tune.with_parameters(search_trial, template=template, seeds=plan.seeds, eval_split=plan.select_split, runs_dir=str(plan.out / "runs" / key), res=plan.resources, storage=str(storage / "train"))
    trainable = tune.with_resources(fn, {"cpu": 0.01})  # the trial only drives; its Train workers hold the CPUs

    def make() -> tune.Tuner:
        points = first_points(plan.space) + [p for p in plan.extra_points if p not in first_points(plan.space)]
        searcher = OptunaSearch(space=to_optuna(plan.space), metric=metric, mode="max", points_to_evaluate=points, seed=0, study_name=key)
        if plan.budget.early_stop:
            scheduler = ASHAScheduler(time_attr="seeds_done", max_t=len(plan.seeds), grace_period=min(plan.budget.grace_seeds, len(plan.seeds)), reduction_factor=plan.budget.reduction_factor)
        else:
            scheduler = FIFOScheduler()
        return tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(metric=metric, mode="max", search_alg=ConcurrencyLimiter(searcher, max_concurrent=plan.max_concurrent), scheduler=scheduler, num_samples=plan.budget.trials),
            run_config=tune.RunConfig(name=f"{key}_search", storage_path=str(storage), callbacks=[TrialLogger(plan.tracking_uri, plan.dataset, parent, key, len(plan.seeds))], verbose=1),
        )

    return _fit(_tuner(storage / f"{key}_search", trainable, resume, make), storage / f"{key}_search")


def pick_best(grid: tune.ResultGrid, metric: str, n_seeds: int):
    """The best trial among those that ran every seed (ASHA-stopped trials saw fewer)."""
    done = [r for r in grid if r.metrics and metric in r.metrics and not math.isnan(r.metrics[metric])]
    full = [r for r in done if r.metrics.get("seeds_done") == n_seeds]
    if not done:
        raise RuntimeError("no trial reported a result; see the errors above")
    return max(full or done, key=lambda r: r.metrics[metric])


def run_final(plan: Plan, key: str, template: dict[str, Any], best, resume: bool) -> dict[str, dict[int, dict]]:
    """Best config (its seed checkpoints reused where the trial finished them) and TFA, on test:
    their (method, seed) jobs packed into as many trials as run at once, each one Ray Train run."""
    storage = plan.out / "ray_results"
    runs_dir = plan.out / "runs" / key
    trial_dir = runs_dir / best.metrics["trial_id"]
    hparams = {k: float(best.config[k]) for k in HPARAMS}
    jobs = [{"method": "dkan", "seed": s, "hparams": hparams, "reuse": str(trial_dir / f"seed{s}" / "model_final.pt")} for s in plan.seeds]
    jobs += [{"method": "tfa", "seed": s} for s in plan.seeds]
    for j in jobs:  # a seed the best trial did not finish is fine-tuned here (the one place this is checked)
        if j.get("reuse") and not Path(j["reuse"]).is_file():
            del j["reuse"]
    fn = tune.with_parameters(final_trial, template=template, runs_dir=str(runs_dir), res=plan.resources, storage=str(storage / "train"))
    trainable = tune.with_resources(fn, {"cpu": 0.01})
    tuner = _tuner(storage / f"{key}_test", trainable, resume, lambda: tune.Tuner(
        trainable, param_space={"final": tune.grid_search(pack(jobs, plan.max_concurrent))},
        tune_config=tune.TuneConfig(max_concurrent_trials=plan.max_concurrent),
        run_config=tune.RunConfig(name=f"{key}_test", storage_path=str(storage), verbose=1),
    ))
    for r in _fit(tuner, storage / f"{key}_test"):
        if r.error:
            raise RuntimeError(f"test evaluation failed: {r.error}")
    out: dict[str, dict[int, dict]] = {}
    for m in ("dkan", "tfa"):
        out[m] = {}
        for s in plan.seeds:
            metrics = seed_metrics(final_dir(runs_dir, m, s))
            if metrics is None:
                raise RuntimeError(f"test evaluation of {m}, seed {s} left no results in {final_dir(runs_dir, m, s)}")
            out[m][s] = {k: v for k, v in metrics.items() if k.startswith("AP")}
    return out


def code_version() -> str:
    try:
        rev = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=5)
        if rev.returncode == 0:
            return f"{dkan.__version__}+{rev.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    return dkan.__version__


def export_best(plan: Plan, key: str, template: dict[str, Any], hparams: dict[str, float], val: dict[str, float], table: dict, run_id: str) -> Path:
    """best_configs/<dataset>_split<S>_<K>shot.yaml: a full fine-tune config `dkan finetune --config` runs."""
    from sweeps.trial import seed_config

    cfg = seed_config(template, hparams, plan.seeds[0], str(plan.out / "reproduce" / key), plan.select_split)
    cfg["threads"] = max(1, int(plan.resources.cpus_per_worker))
    cfg["provenance"] = {
        "sweep": key, "protocol": plan.protocol, "selected_on": plan.select_split, "hyperparameters": hparams,
        "selection_metrics": {k: v for k, v in val.items() if k.startswith(("val_", "test_")) and "seed" not in k},
        "test_metrics": json.loads(to_json(table)), "mlflow_run_id": run_id, "code_version": code_version(),
        "note": f"fewshot_seed is the first of seeds {plan.seeds}; change it (and out) to fine-tune another seed",
    }
    path = plan.out / "best_configs" / f"{key}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(cfg, sort_keys=False))
    tmp.replace(path)
    return path


def run_study(plan: Plan, split: int, shots: int, base_ckpt: Path, tracker: Tracker, resume: bool) -> StudyResult:
    key = f"{plan.dataset}_split{split}_{shots}shot"
    template = plan.finetune_template(split, shots, base_ckpt)
    parent = tracker.run(f"split {split}, {shots}-shot", {TAG_KEY: f"{plan.out.absolute()}|{key}", TAG_KIND: "sweep"},
                         {"split": split, "shots": shots, "seeds": f"{plan.seeds[0]}-{plan.seeds[-1]}", "trials": plan.budget.trials, "protocol": plan.protocol, "profile": plan.profile})
    grid = run_search(plan, split, shots, template, tracker, parent, f"{key}", resume)
    metric = f"{'test_' if plan.protocol == 'paper' else 'val_'}AP_all"
    best = pick_best(grid, metric, len(plan.seeds))
    hparams = {k: float(best.config[k]) for k in HPARAMS}
    finetunes = sum(int(r.metrics.get("seeds_done", 0)) for r in grid if r.metrics)
    per_method = run_final(plan, key, template, best, resume)
    table = {f"TFA {shots}-shot": aggregate_seeds(per_method["tfa"]), f"DKAN {shots}-shot (best)": aggregate_seeds(per_method["dkan"])}
    names = [m for m in table[f"TFA {shots}-shot"] if m.startswith("AP/")]
    md = to_markdown(table, [*HEADLINE, *names])
    title = f"{plan.dataset}, split {split}, {shots}-shot, test, seeds {plan.seeds[0]}-{plan.seeds[-1]} (AP50 in points, mean ± std)"
    if plan.protocol == "paper":
        title += " -- PAPER PROTOCOL: hyperparameters selected on test"
    md = f"{title}\n\n{md}\n\nbest hyperparameters: " + ", ".join(f"{k}={v:.4g}" for k, v in hparams.items())
    for method, rows in per_method.items():
        run = tracker.run(f"test: {'DKAN best' if method == 'dkan' else 'TFA'}", {TAG_KEY: f"{plan.out.absolute()}|{key}|test|{method}", TAG_KIND: "test"}, {**(hparams if method == "dkan" else {}), "method": method}, parent)
        for seed, m in rows.items():
            tracker.metrics(run, {f"seed_{k}": v for k, v in m.items() if k in HEADLINE}, step=seed)
        agg = aggregate_seeds(rows)
        tracker.metrics(run, {f"{k}_mean": v["mean"] for k, v in agg.items()} | {f"{k}_std": v["std"] for k, v in agg.items()})
        tracker.finish(run, "completed")
    export = export_best(plan, key, template, hparams, best.metrics, table, parent)
    out_dir = plan.out / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{key}.md").write_text(md + "\n")
    (out_dir / f"{key}.json").write_text(to_json({"table": table, "per_seed": per_method, "best_hyperparameters": hparams, "seed_finetunes_in_search": finetunes}))
    per_class = {name: {m.removeprefix("AP/"): agg[m]["mean"] for m in agg if m.startswith("AP/")} for name, agg in table.items()}
    (out_dir / f"{key}_per_class_ap.json").write_text(to_json(per_class))
    for f in (export, out_dir / f"{key}.md", out_dir / f"{key}.json", out_dir / f"{key}_per_class_ap.json"):
        tracker.client.log_artifact(parent, str(f))
    tracker.metrics(parent, {f"best_{k}": v for k, v in best.metrics.items() if k.startswith(("val_AP", "test_AP"))} | {"seed_finetunes": finetunes})
    tracker.finish(parent, "completed")
    return StudyResult(key, hparams, dict(best.metrics), table, md, export, finetunes)
