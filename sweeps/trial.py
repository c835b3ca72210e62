"""Tune trainables: a search trial (one hyperparameter set over seeds) and a final test run.

A search trial fine-tunes seed after seed, each a Ray Train run, and after each reports the
running mean of val AP_all with ``seeds_done`` (ASHA's time axis). Its checkpoint is the per-seed
metrics so far: a restored trial skips the seeds it finished.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from sweeps.seed_run import WorkerResources, run_fit

HPARAMS = ("fka_weight", "lka_weight", "fka_tau", "lka_tau")
METRIC = "AP_all"


def seed_config(template: dict[str, Any], hparams: dict[str, float], seed: int, out: str, eval_split: str, method: str = "dkan") -> dict[str, Any]:
    """The fine-tune config of one seed: the template with these hyperparameters."""
    cfg = json.loads(json.dumps(template))
    cfg["distill"].update({k: float(hparams[k]) for k in HPARAMS if k in hparams})
    cfg["distill"]["method"] = method
    cfg.update(fewshot_seed=seed, out=out, eval_split=eval_split)
    return cfg


def running_summary(per_seed: dict[int, dict[str, float]], prefix: str) -> dict[str, float]:
    """Mean over the seeds done so far of AP_base / AP_novel / AP_all (NaN seeds left out)."""
    out = {}
    for key in ("AP_base", "AP_novel", "AP_all"):
        vals = [m[key] for m in per_seed.values() if m.get(key) is not None and not math.isnan(m[key])]
        out[f"{prefix}{key}"] = sum(vals) / len(vals) if vals else float("nan")
    return out


def _load_done() -> dict[int, dict[str, float]]:
    from ray import tune

    ckpt = tune.get_checkpoint()
    if ckpt is None:
        return {}
    with ckpt.as_directory() as d:
        return {int(k): v for k, v in json.loads(Path(d, "seeds.json").read_text()).items()}


def _report(metrics: dict[str, Any], per_seed: dict[int, dict[str, float]]) -> None:
    from ray import tune
    from ray.tune import Checkpoint

    with tempfile.TemporaryDirectory() as d:
        Path(d, "seeds.json").write_text(json.dumps(per_seed))
        tune.report(metrics, checkpoint=Checkpoint.from_directory(d))


def search_trial(config: dict[str, Any], *, template: dict[str, Any], seeds: list[int], eval_split: str, runs_dir: str, res: WorkerResources, storage: str) -> None:
    """One hyperparameter set over the seeds; reports after each seed."""
    from ray import tune

    trial = tune.get_context().get_trial_id()
    per_seed = _load_done()
    for seed in seeds:
        if seed in per_seed:
            continue
        out = str(Path(runs_dir) / trial / f"seed{seed}")
        m = run_fit("finetune", seed_config(template, config, seed, out, eval_split), res, f"{trial}_seed{seed}", storage, resume=True)
        per_seed[seed] = {k: v for k, v in m.items() if k.startswith("AP") or k == "fit_seconds"}
        metrics = {**running_summary(per_seed, "val_" if eval_split == "val" else "test_"), "seeds_done": len(per_seed), "last_seed": seed}
        metrics.update({f"seed{s}_AP_all": v["AP_all"] for s, v in per_seed.items()})
        _report(metrics, per_seed)


def final_run(config: dict[str, Any], *, template: dict[str, Any], runs_dir: str, res: WorkerResources, storage: str) -> None:
    """One (method, seed) on test: evaluates an existing checkpoint when given, else fine-tunes."""
    from ray import tune

    from dkan.engine.evaluate_checkpoint import evaluate_checkpoint

    row = config["row"]
    seed, method = int(row["seed"]), row["method"]
    reuse = row.get("reuse_checkpoint")
    if reuse and Path(reuse).is_file():
        m = evaluate_checkpoint(Path(reuse), split="test", device="cpu" if not res.gpus_per_worker else "auto")
        source = "reused"
    else:
        out = str(Path(runs_dir) / f"final_{method}" / f"seed{seed}")
        m = run_fit("finetune", seed_config(template, row.get("hparams", {}), seed, out, "test", method), res, f"final_{method}_seed{seed}", storage, resume=True)
        source = "trained"
    tune.report({**{k: v for k, v in m.items() if k.startswith("AP")}, "seed": seed, "method": method, "source": source})
