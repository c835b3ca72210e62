"""What a seed job is, without Ray: ``SeedJob`` (one ``fit`` or the evaluation of a finished checkpoint,
the typed unit that crosses to a Ray Train worker), ``finetune_job`` (a seed's fine-tune from a study's
template and a point of the space), and the resources a job and its trial hold. ``sweeps.shell.jobs`` runs
them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dkan.config import BaseTrainConfig, FinetuneConfig
from sweeps.core.space import apply_point

# CPU share of a Tune trial's own process: it only drives its Ray Train run (whose workers hold
# the real CPUs) but Tune refuses 0. It must be counted: two 1-CPU fine-tunes plus two drivers do
# not fit in 2 CPUs, and the second Train run then waits on a 60 s worker-start timeout.
DRIVER_CPU = 0.01



@dataclass(frozen=True)
class WorkerResources:
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0

    def bundle(self) -> dict[str, float]:
        return {"CPU": self.cpus_per_worker, **({"GPU": self.gpus_per_worker} if self.gpus_per_worker else {})}

    def trial_cost(self) -> tuple[float, float]:
        """(CPUs, GPUs) a trial holds while it runs: its workers and its driver."""
        return self.workers * self.cpus_per_worker + DRIVER_CPU, self.workers * self.gpus_per_worker


@dataclass(frozen=True)
class SeedJob:
    """One unit of work for a worker: train ``cfg`` (into ``cfg.out``), or evaluate ``reuse``."""

    method: str  # base | dkan | tfa
    seed: int  # few-shot seed (0 for base training)
    cfg: FinetuneConfig | BaseTrainConfig
    reuse: str | None = None  # a finished checkpoint of the same job: evaluate it on cfg.eval_split
    label: str = ""  # how the job is named in reports (e.g. "tfa/3")

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)


def finetune_job(
    template: FinetuneConfig, method: str, seed: int, out: Path, eval_split: str,
    point: dict[str, Any] | None = None, reuse: str | None = None, name: str | None = None,
) -> SeedJob:
    """The fine-tune of one seed: the template with a point of the search space (``sweeps.core.space``) and this
    method, seed, output and evaluation split; labelled ``name/seed`` (a test row's name: two DKAN rows
    share the method), else ``method/seed``."""
    cfg = apply_point(template, point or {})
    cfg = replace(cfg, distill=replace(cfg.distill, method=method), fewshot_seed=seed, out=str(out),
                  eval_split=eval_split)
    return SeedJob(method, seed, cfg, reuse, f"{name or method}/{seed}")
