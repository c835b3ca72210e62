"""Seed jobs and the one Ray Train worker loop that runs them.

A ``SeedJob`` is one ``fit`` (a seed's fine-tune, or base training) or the evaluation of a
checkpoint the search already made (``reuse``). ``run_jobs`` starts one ``TorchTrainer`` run (its
workers start once) and the workers run the jobs one after another, reporting after each through
``ray.train.report`` (a ``sweeps.core.progress`` report); inside a Tune trial ``TuneReportCallback``
passes the reports on, so ASHA sees ``seeds_done`` grow and can stop the trial between seeds.

A job is done when its run folder holds ``metrics.json`` (``dkan.runfolder``): a restarted trial
skips those, and a half-done job resumes from its ``last.pt``. Run folders must be on storage
every node sees.

Faults: a lost worker or node (its process killed, the node removed) is retried up to
``max_failures`` times by Ray Train (``FailureConfig``); the new workers skip the finished jobs, so
the run goes on at its next unfinished seed. A job that fails for a reason a retry cannot change
(``DkanError``: a non-finite loss, bad data) writes ``failed.json`` with its error and the sweep's
``session``: no retry of this sweep runs it again, the run raises ``SeedFailed`` with that error; a
later sweep (``--resume``, a new session) tries it again.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from dkan import runfolder
from dkan.errors import DkanError
from sweeps.core.jobspec import SeedJob, WorkerResources
from sweeps.core.progress import JobsReport, TrialReport

FAILED = "failed.json"  # a job's deterministic failure: {"session", "error"}

class SeedFailed(DkanError, RuntimeError):
    """A job failed for a reason a retry cannot change; its error was recorded in its run folder."""


def progress_report(done: list[tuple[SeedJob, dict[str, Any]]], split: str | None,
                    base_ap: float | None = None, new: int = 1) -> TrialReport | JobsReport:
    """The report after the jobs ``done``: a search trial's (``split``: the selection split; every job a
    seed of one method; ``base_ap``: the base model's AP_base there) or, without ``split``, counts only
    (the test phase's mixed jobs, base training), naming the ``new`` jobs done since the last report."""
    seconds = sum(m.get("fit_seconds", 0.0) for _, m in done)
    if split is None:
        return JobsReport(len(done), ", ".join(j.label for j, _ in done[-max(1, new):]), seconds)
    return TrialReport.of_seeds(split, [(j.seed, m) for j, m in done], seconds, base_ap)


def setup_worker(threads: float, use_gpu: bool) -> str:
    """The one place a worker's CPU threads and device are set; returns the device name."""
    import ray.train.torch
    import torch

    torch.set_num_threads(max(1, int(threads)))
    return str(ray.train.torch.get_device()) if use_gpu else "cpu"


def _run_job(job: SeedJob, device: str, threads: int) -> dict[str, Any]:
    from dkan.engine.train import fit

    # threads recorded in the run's config.yaml: a re-run matches bit for bit
    return fit(replace(job.cfg, threads=threads, device=device), progress=False, resume=True)


def _evaluate_reused(jobs: list[SeedJob], device: str, session: str) -> set[Path]:
    """Score every unfinished ``reuse`` job of the group in one pass over its images (rank 0; the others
    wait): the parts their checkpoints share run once (``dkan.engine.evaluate_many``). Returns their folders."""
    import ray.train

    from dkan.engine.distributed import broadcast_from_rank0

    todo = [j for j in jobs if j.reuse and not (j.out / FAILED).exists() and runfolder.done_metrics(j.out) is None]
    if not todo:
        return set()
    ok = evaluate_reused(todo, device, session) if ray.train.get_context().get_world_rank() == 0 else None
    if not broadcast_from_rank0(ok):
        raise SeedFailed("; ".join(recorded_failures(todo, session)) or "a test evaluation failed on rank 0")
    return {j.out for j in todo}


def evaluate_reused(jobs: list[SeedJob], device: str, session: str = "") -> bool:
    """Score each job's ``reuse`` checkpoint on the sweep's data (not the data root the checkpoint recorded: a
    ``--base-checkpoint`` may come from another folder or machine), all in one pass; metrics.json in each
    ``job.out``, ``fit_seconds`` its share of the pass. A checkpoint that cannot be read is recorded as its
    job's failure (False)."""
    from dkan.engine.evaluate_checkpoint import MAX_AT_ONCE, evaluand_from_checkpoint
    from dkan.engine.evaluate_many import evaluate_many
    from dkan.engine.setup import resolve_device

    for start in range(0, len(jobs), MAX_AT_ONCE):
        chunk, loaded, data = jobs[start:start + MAX_AT_ONCE], [], {}
        t = time.time()
        for j in chunk:
            try:
                loaded.append(evaluand_from_checkpoint(Path(j.reuse), j.cfg.eval_split, j.cfg.data.root, device, data))
            except DkanError as e:  # the same on any retry: recorded, never run again by this sweep
                record_failure(j, session, f"{type(e).__name__}: {e}")
                return False
        try:
            metrics = evaluate_many(loaded, resolve_device(device))
        except DkanError as e:  # e.g. an unreadable test image: the same on any retry
            for j in chunk:
                record_failure(j, session, f"{type(e).__name__}: {e}")
            return False
        share = round((time.time() - t) / len(chunk), 2)
        for j, m in zip(chunk, metrics):
            m.update(eval_split=j.cfg.eval_split, source="reused", checkpoint=j.reuse, fit_seconds=share)
            runfolder.write_json(j.out / runfolder.METRICS, m)
    return True


def record_failure(job: SeedJob, session: str, error: str) -> None:
    runfolder.write_json(job.out / FAILED, {"session": session, "error": error})


def raise_recorded_failures(jobs: list[SeedJob], session: str) -> None:
    """``SeedFailed`` naming each failure this sweep recorded for ``jobs``, if any."""
    failed = recorded_failures(jobs, session)
    if failed:
        raise SeedFailed("; ".join(failed))


def recorded_failures(jobs: list[SeedJob], session: str) -> list[str]:
    """The errors this sweep (``session``) recorded for ``jobs``; a record of an earlier sweep is
    removed (that one is tried again)."""
    found = []
    for j in jobs:
        rec = runfolder.read_json(j.out / FAILED)
        if rec is not None and rec.get("session") == session:
            found.append(f"{j.label or j.out.name}: {rec.get('error', 'error')}")
        elif rec is not None:
            (j.out / FAILED).unlink(missing_ok=True)
    return found


def _worker_loop(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker (torch.distributed is already set up by TorchTrainer)."""
    import ray.train

    device = setup_worker(config["threads"], config["use_gpu"])
    done: list[tuple[SeedJob, dict[str, Any]]] = []
    reported = 0

    def report() -> None:  # one round trip to the driver for every job done since the last one
        nonlocal reported
        ray.train.report(progress_report(done, config["split"], config["base_ap"], len(done) - reported).to_metrics())
        reported = len(done)

    fresh = _evaluate_reused(config["jobs"], device, config["session"])
    batch = 0  # jobs of that pass not reported yet: one report for all (each is a round trip to the driver)
    for job in config["jobs"]:
        if (job.out / FAILED).exists():  # failed in an earlier attempt of this run: run_jobs raises its error
            return
        m = runfolder.done_metrics(job.out)  # finished before a restart: counted, not run again
        if m is not None and job.out in fresh:  # evaluated together just now
            done.append((job, m))
            batch += 1
        elif m is None:
            if batch:  # those first, then the fine-tune
                report()
                batch = 0
            try:
                m = _run_job(job, device, max(1, int(config["threads"])))
            except DkanError as e:  # the same on any retry: recorded, never run again by this sweep
                record_failure(job, config["session"], f"{type(e).__name__}: {e}")
                raise
            done.append((job, m))
            report()
        else:
            done.append((job, m))
    if reported < len(done):  # the pass's jobs, or the last jobs done before: said once
        report()


def run_jobs(
    jobs: list[SeedJob], res: WorkerResources, name: str, storage: str, split: str | None = None,
    in_trial: bool = False, watch: bool = False, max_failures: int = 0, session: str = "",
    base_ap: float | None = None,
) -> list[dict[str, Any]]:
    """One TorchTrainer run over ``jobs``; returns each job's metrics (read from its run folder).

    ``split``: a search trial's selection split (its reports are ``TrialReport``s); ``in_trial``:
    inside a Tune trial, every report reaches Tune. ``watch``: print the running
    job's progress every 30 s (base training, run from the driver). ``max_failures``: lost workers
    retried this many times; ``session``: the sweep's, for the failure records (module docstring)."""
    raise_recorded_failures(jobs, session)  # a retried trial whose failure this sweep recorded: no workers
    from ray.train import ControllerError, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from sweeps.shell.localray import START_RETRIES, WorkersDidNotStart, resource_holders

    callbacks = []
    if in_trial:
        from ray.tune.integration.ray_train import TuneReportCallback

        callbacks = [TuneReportCallback()]
    use_gpu = res.gpus_per_worker > 0
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"jobs": jobs, "split": split, "base_ap": base_ap, "threads": res.cpus_per_worker,
                           "use_gpu": use_gpu, "session": session},
        scaling_config=ScalingConfig(num_workers=res.workers, use_gpu=use_gpu, resources_per_worker=res.bundle()),
        # worker-start time-outs are retried START_RETRIES times (Ray's default: forever), then named;
        # a lost worker or node max_failures times (the new workers go on at the next unfinished job)
        run_config=RunConfig(name=name, storage_path=storage, callbacks=callbacks,
                             failure_config=FailureConfig(max_failures=max_failures,
                                                          controller_failure_limit=START_RETRIES)),
    )
    stop = threading.Event()
    if watch:
        threading.Thread(target=_print_progress, args=(jobs, name, stop), daemon=True).start()
    try:
        result = trainer.fit()
    except ControllerError as e:
        err = WorkersDidNotStart(name, res, e.controller_failure, resource_holders())
        for j in jobs:  # bounded already (START_RETRIES): a retry of the trial by this sweep fails at once
            if runfolder.done_metrics(j.out) is None:
                record_failure(j, session, f"WorkersDidNotStart: {err}")
        raise err from e
    finally:
        stop.set()
    raise_recorded_failures(jobs, session)
    if result.error is not None:
        raise result.error
    metrics = [runfolder.done_metrics(j.out) for j in jobs]
    missing = [str(j.out) for j, m in zip(jobs, metrics) if m is None]
    if missing:
        raise RuntimeError(f"{name}: the Train run ended but left no {runfolder.METRICS} in {missing}")
    return metrics


def _print_progress(jobs: list[SeedJob], name: str, stop: threading.Event, every: float = 30.0) -> None:
    t0 = time.time()  # a progress file older than this run is a killed run's: not this one's progress
    while not stop.wait(every):
        files = [j.out / runfolder.PROGRESS for j in jobs]
        fresh = [f for f in files if f.is_file() and f.stat().st_mtime >= t0]
        for p in filter(None, map(runfolder.read_json, fresh)):
            left = f"about {p['eta_s'] / 60:.1f} min left"
            print(f"  {name}: iteration {p['iteration']}/{p['iterations']}, loss {p['loss']:.3f}, {left}", flush=True)
