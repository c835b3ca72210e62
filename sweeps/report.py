"""A study's outputs: the test table (markdown, JSON, per-class JSON) and the best-config export."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dkan
from dkan import runfolder
from dkan.config import to_dict
from dkan.evaluation.aggregate import aggregate_seeds, to_json, to_markdown
from dkan.names import HEADLINE, PER_CLASS_PREFIX
from sweeps.jobs import finetune_job
from sweeps.plan import Plan, Study

PerMethod = dict[str, dict[int, dict[str, float]]]  # {method: {seed: metrics}}


@dataclass(frozen=True)
class StudyResult:
    key: str
    best_hparams: dict[str, float]
    best_val: dict[str, float]
    table: dict[str, dict]
    markdown: str
    export_path: Path
    seed_finetunes: int


def results_table(study: Study, per_method: PerMethod) -> dict[str, dict]:
    return {f"TFA {study.shots}-shot": aggregate_seeds(per_method["tfa"]),
            f"DKAN {study.shots}-shot (best)": aggregate_seeds(per_method["dkan"])}


def markdown(plan: Plan, study: Study, table: dict[str, dict], hparams: dict[str, float]) -> str:
    names = [m for m in next(iter(table.values())) if m.startswith(PER_CLASS_PREFIX)]
    title = (f"{plan.dataset}, split {study.split}, {study.shots}-shot, test, seeds {plan.seeds[0]}-{plan.seeds[-1]} "
             "(AP50 in points, mean ± std)")
    if plan.protocol == "paper":
        title += " -- PAPER PROTOCOL: hyperparameters selected on test"
    best = ", ".join(f"{k}={v:.4g}" for k, v in hparams.items())
    return f"{title}\n\n{to_markdown(table, [*HEADLINE, *names])}\n\nbest hyperparameters: {best}"


def write_results(plan: Plan, study: Study, md: str, table: dict[str, dict], per_method: PerMethod,
                  hparams: dict[str, float], finetunes: int) -> list[Path]:
    """OUT/results/<key>.md, .json and _per_class_ap.json (each written atomically)."""
    d = plan.out / "results"
    per_class = {name: {m.removeprefix(PER_CLASS_PREFIX): agg[m]["mean"] for m in agg if m.startswith(PER_CLASS_PREFIX)}
                 for name, agg in table.items()}
    full = {"table": table, "per_seed": per_method, "best_hyperparameters": hparams,
            "seed_finetunes_in_search": finetunes}
    return [
        runfolder.write_text_atomic(d / f"{study.key}.md", md + "\n"),
        runfolder.write_text_atomic(d / f"{study.key}.json", to_json(full)),
        runfolder.write_text_atomic(d / f"{study.key}_per_class_ap.json", to_json(per_class)),
    ]


def code_version() -> str:
    try:
        rev = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5)
        if rev.returncode == 0:
            return f"{dkan.__version__}+{rev.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    return dkan.__version__


def export_best(plan: Plan, study: Study, hparams: dict[str, float], selection: dict[str, Any], table: dict,
                run_id: str) -> Path:
    """best_configs/<key>.yaml: a full fine-tune config `dkan finetune --config` runs (the first seed)."""
    out = plan.out / "reproduce" / study.key
    job = finetune_job(study.template, "dkan", plan.seeds[0], out, plan.select_split, hparams)
    cfg = to_dict(job.cfg)
    cfg["threads"] = max(1, int(plan.resources.cpus_per_worker))  # the sweep's: a re-run matches bit for bit
    chosen = {k: v for k, v in selection.items() if k.startswith(("val_", "test_")) and "seed" not in k}
    cfg["provenance"] = {
        "sweep": study.key, "protocol": plan.protocol, "selected_on": plan.select_split, "hyperparameters": hparams,
        "selection_metrics": chosen,
        "test_metrics": json.loads(to_json(table)), "mlflow_run_id": run_id, "code_version": code_version(),
        "note": f"fewshot_seed is the first of seeds {list(plan.seeds)}; change it (and out) to fine-tune another seed",
    }
    return runfolder.write_yaml(plan.out / "best_configs" / f"{study.key}.yaml", cfg)
