"""``fit(cfg)``: base training or K-shot fine-tuning (DKAN, TFA or plain), one loop in three phases.

1. ``_start``: seeds, the training setup (``dkan.engine.setup``: data, student, teacher), the optimizer,
   the resume point and the frozen-feature cache; config.yaml written.
2. ``_train``: the iterations (a distillation step each, ``dkan.distill.step.train_step``), with
   history.jsonl, progress.json for watchers and last.pt every ``checkpoint_every`` (resumable).
3. ``_finish``: model_final.pt (the student only, never the teacher; a fine-tune's holds what it changed
   and its base model's hash, ``dkan.model.checkpoint``), the evaluation on
   ``cfg.eval_split``, then metrics.json, written last: it marks the run done (``dkan.runfolder``).

``report`` (optional) receives the final metrics dict; the sweep's worker loop reports to Ray itself
after each job. ``on_iteration`` (optional, rank 0) is called after each optimizer step with the number of
iterations done and the setup (the student in train mode; a caller that evaluates it there puts it back
with ``dkan.engine.setup.set_train_mode``): ``scripts/record_grid.py`` scores points along one run.
Nothing here imports Ray, Optuna or MLflow.
"""

from __future__ import annotations

import bisect
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from dkan import runfolder
from dkan.config import FinetuneConfig, OptimConfig, TrainConfig, to_dict
from dkan.data.dataset import DetectionDataset, build_transforms, collate
from dkan.distill.cache import FeatureCache, MiB, budget_mb, eval_cache, image_key
from dkan.distill.features import DIRECT, CachedFeatures
from dkan.distill.step import backbone_is_frozen, train_step, weighted_total
from dkan.engine.distributed import average_gradients, broadcast_from_rank0, broadcast_module, rank_and_world, shard
from dkan.engine.evaluate import evaluate
from dkan.engine.precision import autocast, grad_scaler, resolve_precision
from dkan.engine.setup import TrainingSetup, build_setup
from dkan.errors import DkanError
from dkan.model.checkpoint import CheckpointError, as_delta, load_checkpoint, save_checkpoint

Report = Callable[[dict[str, Any]], None]
OnIteration = Callable[[int, TrainingSetup], None]


class TrainingError(DkanError, RuntimeError):
    pass


@dataclass
class Schedule:
    iterations: int
    lr_steps: list[int]

    @classmethod
    def of(cls, optim: OptimConfig, n_images: int) -> "Schedule":
        if optim.epochs > 0:
            per_epoch = n_images / optim.batch_size
            return cls(max(1, round(optim.epochs * per_epoch)), [round(e * per_epoch) for e in optim.lr_step_epochs])
        return cls(optim.iterations, list(optim.lr_steps))


@dataclass
class _Run:
    """What the three phases of ``fit`` share."""

    setup: TrainingSetup
    out: Path
    lead: bool  # rank 0: writes files and evaluates
    world: int
    train_set: DetectionDataset
    sched: Schedule
    params: list[torch.nn.Parameter]
    opt: torch.optim.Optimizer
    start: int  # the first iteration to run (> 0 when resumed)
    cache: FeatureCache | None
    cache_bytes: int
    precision: str  # fp32 | bf16 | fp16 (resolved for the device: dkan.engine.precision)
    scaler: torch.amp.GradScaler  # enabled for fp16 only


def fit(
    cfg: TrainConfig, report: Report | None = None, resume: bool = False, progress: bool = True,
    on_iteration: OnIteration | None = None,
) -> dict[str, Any]:
    """Train, checkpoint, evaluate on ``cfg.eval_split``; returns (and reports) the metrics.

    Under torch.distributed each rank trains on its share of every global batch with averaged
    gradients; rank 0 alone writes files and evaluates, and every rank returns its metrics.
    """
    t_start = time.time()
    run = _start(cfg, resume)
    train_seconds = _train(run, cfg, progress, on_iteration)
    metrics = _finish(run, cfg, train_seconds, t_start)
    if report:
        report(metrics)
    return metrics


def fit_once(cfg: TrainConfig, **kwargs: Any) -> dict[str, Any]:
    """The metrics of the finished run in ``cfg.out`` (``dkan.runfolder.done_metrics``), else ``fit`` it
    (resuming from its ``last.pt``): the one way to "run it unless it is done"."""
    done = runfolder.done_metrics(cfg.out)
    return done if done is not None else fit(cfg, resume=True, **kwargs)


def _start(cfg: TrainConfig, resume: bool) -> _Run:
    """Phase 1: everything the loop needs, from the config (and ``last.pt`` when resuming)."""
    rank, world = rank_and_world()
    lead = rank == 0
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    _seed_everything(cfg.seed)
    setup = build_setup(cfg)
    broadcast_module(setup.student)
    out = Path(cfg.out)
    if lead:
        out.mkdir(parents=True, exist_ok=True)
        runfolder.write_yaml(out / runfolder.CONFIG, to_dict(cfg))
    train_set = DetectionDataset(
        setup.train_records, setup.classes, build_transforms(train=True, hflip=cfg.data.hflip, vflip=cfg.data.vflip)
    )
    params = [p for p in setup.student.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg.optim.lr, momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay)
    precision = resolve_precision(cfg.precision, setup.device)
    scaler = grad_scaler(precision, setup.device)
    start = _resume(out / runfolder.LAST, setup, cfg, opt, scaler) if resume else 0
    cache_mb = cfg.cache_mb if isinstance(cfg, FinetuneConfig) else 0  # base training: nothing is frozen
    cache_bytes = budget_mb(cache_mb, setup.device) * MiB
    cache = FeatureCache(cache_bytes) if cache_bytes else None
    if lead and start == 0:
        (out / runfolder.HISTORY).unlink(missing_ok=True)
    return _Run(setup, out, lead, world, train_set, Schedule.of(cfg.optim, len(train_set)), params, opt, start,
                cache, cache_bytes, precision, scaler)


def _train(run: _Run, cfg: TrainConfig, progress: bool,
           on_iteration: OnIteration | None = None) -> float:
    """Phase 2: iterations ``run.start`` to the end; returns the seconds they took."""
    setup, sched, opt, out, lead = run.setup, run.sched, run.opt, run.out, run.lead
    lr_at = _lr_lambda(cfg.optim, sched)
    t0 = last_note = time.time()
    history_every = max(1, sched.iterations // 200)  # at most ~200 points of loss curve
    bar = tqdm(
        range(run.start, sched.iterations), initial=run.start, total=sched.iterations,
        desc=f"{setup.stage} {setup.method}", disable=not (progress and lead), mininterval=2.0,
    )
    for it in bar:
        for g in opt.param_groups:
            g["lr"] = cfg.optim.lr * lr_at(it)
        batch = shard(_batch_indices(cfg.seed, it, cfg.optim.batch_size, len(run.train_set)))
        images, targets = collate([run.train_set[i] for i in batch])
        # each image's view names its cached features (taken on the CPU, before the transform)
        features = CachedFeatures(run.cache, [image_key(im) for im in images]) if run.cache is not None else DIRECT
        with autocast(run.precision, setup.device):  # the forward passes; the distillation losses in fp32
            losses = train_step(
                setup.student, [im.to(setup.device) for im in images], [_to(t, setup.device) for t in targets],
                setup.teacher, setup.n_base, setup.distill, features,
            )
        _check_finite(losses, it, [setup.train_records[i].path for i in batch])
        opt.zero_grad(set_to_none=True)
        run.scaler.scale(weighted_total(losses, setup.distill)).backward()
        average_gradients(run.params)
        run.scaler.unscale_(opt)  # a no-op unless fp16
        if cfg.optim.clip_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(run.params, cfg.optim.clip_grad_norm)
        run.scaler.step(opt)
        run.scaler.update()
        loss = sum(v.item() for v in losses.values())
        bar.set_postfix({k.removeprefix("loss_"): f"{v.item():.3f}" for k, v in losses.items()}, refresh=False)
        if not lead:
            continue
        if on_iteration is not None:
            on_iteration(it + 1, setup)
        if (it + 1) % history_every == 0 or it + 1 == sched.iterations:
            row = {"iteration": it + 1, "loss": loss, "lr": opt.param_groups[0]["lr"]}
            runfolder.append_jsonl(out / runfolder.HISTORY, row | {k: v.item() for k, v in losses.items()})
        if time.time() - last_note > 10:  # for watchers without a terminal (the sweep's driver)
            last_note = time.time()
            _note_progress(out, it + 1, sched.iterations, (last_note - t0) / (it + 1 - run.start), loss)
        if cfg.checkpoint_every and (it + 1) % cfg.checkpoint_every == 0 and it + 1 < sched.iterations:
            save_checkpoint(out / runfolder.LAST, _state(setup, cfg, opt, it + 1, run.scaler))
    return time.time() - t0


def _finish(run: _Run, cfg: TrainConfig, train_seconds: float, t_start: float) -> dict[str, Any]:
    """Phase 3 (rank 0): model_final.pt, the evaluation, metrics.json last; every rank gets the metrics."""
    metrics = None
    if run.lead:
        setup, out, cache = run.setup, run.out, run.cache
        final = {"model": setup.student.state_dict(), "meta": _meta(setup, cfg, run.sched.iterations)}
        if setup.stage == "finetune" and cfg.checkpoint_format == "delta":
            final = as_delta(final, Path(cfg.base_checkpoint))  # only what changed, beside the base's hash
        save_checkpoint(out / runfolder.FINAL, final)
        for stale in (runfolder.LAST, runfolder.PROGRESS):
            (out / stale).unlink(missing_ok=True)
        # the val body features of a frozen body are shared by the seeds this process runs
        frozen_body = cache is not None and backbone_is_frozen(setup.student)
        val_cache = eval_cache(setup.student.backbone.body, run.cache_bytes, run.precision) if frozen_body else None
        metrics = evaluate(setup.student, setup.eval_records, setup.eval_gt, setup.base, setup.novel, setup.device,
                           cache=val_cache, precision=run.precision)
        if cache is not None:  # the eval cache's counts depend on the seeds run before: in cache.json, not the metrics
            metrics.update(cache.stats.as_metrics())
            process = val_cache.stats.as_metrics("eval_cache") if val_cache else None  # this process's totals
            runfolder.write_json(out / runfolder.CACHE, {"train": cache.stats.as_metrics(),
                                                         "eval_process_total": process})
        metrics.update(
            iterations=run.sched.iterations, train_seconds=round(train_seconds, 2),
            s_per_iter=round(train_seconds / max(1, run.sched.iterations - run.start), 4), eval_split=cfg.eval_split,
        )
        metrics["fit_seconds"] = round(time.time() - t_start, 2)  # all of fit: setup, training, evaluation
        metrics["world_size"] = run.world
        metrics["precision"] = run.precision
        runfolder.write_json(out / runfolder.METRICS, metrics)  # last: marks the run done
    return broadcast_from_rank0(metrics)


def _note_progress(out: Path, it: int, total: int, s_per_it: float, loss: float) -> None:
    eta = round((total - it) * s_per_it)
    runfolder.write_json(
        out / runfolder.PROGRESS, {"iteration": it, "iterations": total, "loss": round(loss, 4), "eta_s": eta}
    )


def _batch_indices(seed: int, it: int, batch: int, n: int) -> list[int]:
    """Epoch-wise seeded shuffles, indexed by iteration: resuming needs no sampler state."""
    perms: dict[int, torch.Tensor] = {}  # a batch spans at most two epochs
    out = []
    for g in range(it * batch, (it + 1) * batch):
        epoch, pos = divmod(g, n)
        if epoch not in perms:
            perms[epoch] = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        out.append(int(perms[epoch][pos]))
    return out


def _lr_lambda(optim: OptimConfig, sched: Schedule) -> Callable[[int], float]:
    def factor(it: int) -> float:
        warm = 1.0
        if it < optim.warmup_iters:
            alpha = it / optim.warmup_iters
            warm = optim.warmup_factor * (1 - alpha) + alpha
        return warm * optim.gamma ** bisect.bisect_right(sorted(sched.lr_steps), it)

    return factor


def _check_finite(losses: dict[str, torch.Tensor], it: int, files: list[Path] | tuple[Path, ...] = ()) -> None:
    """Stop at the first non-finite loss, naming the iteration, the term and the batch's images.

    A bad box (validated data makes it rare) is as likely a cause as a too-high learning rate,
    so the message points at the images first.
    """
    for k, v in losses.items():
        if not torch.isfinite(v).all():
            shown = ", ".join(str(f) for f in files[:8]) + (f" (+{len(files) - 8} more)" if len(files) > 8 else "")
            raise TrainingError(
                f"iteration {it}: loss term {k} is {v.item()} (not finite); stopped at once. "
                f"Batch images: {shown or 'unknown'}. Fix: check the boxes of these images (dkan inspect-data), "
                "or lower optim.lr / raise optim.warmup_iters if the data is fine"
            )


def _to(t: dict, device: torch.device) -> dict:
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in t.items()}


def _meta(setup: TrainingSetup, cfg: Any, iteration: int) -> dict[str, Any]:
    return {
        "stage": setup.stage,
        "classes": list(setup.classes),
        "base": list(setup.base),
        "novel": list(setup.novel),
        "config": to_dict(cfg),
        "iteration": iteration,
    }


def _state(setup: TrainingSetup, cfg: Any, opt: torch.optim.Optimizer, iteration: int,
           scaler: torch.amp.GradScaler | None = None) -> dict[str, Any]:
    """The resume payload: tensors and plain types only, so ``weights_only=True`` loads it."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    rng = {
        "torch": torch.get_rng_state(),
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss},
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
    }
    meta = _meta(setup, cfg, iteration)
    state = {"model": setup.student.state_dict(), "optimizer": opt.state_dict(), "meta": meta, "rng": rng}
    if scaler is not None and scaler.is_enabled():  # fp16's loss scale resumes where it was
        state["scaler"] = scaler.state_dict()
    return state


def _resume(path: Path, setup: TrainingSetup, cfg: Any, opt: torch.optim.Optimizer,
            scaler: torch.amp.GradScaler | None = None) -> int:
    if not path.is_file():
        return 0
    ckpt = load_checkpoint(path, "resume checkpoint", "delete it to start over")
    if ckpt["meta"]["classes"] != list(setup.classes):
        raise TrainingError(
            f"{path}: resume checkpoint is for classes {ckpt['meta']['classes']}, not {list(setup.classes)}. "
            "Fix: use another --out or delete it"
        )
    try:
        setup.student.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if scaler is not None and scaler.is_enabled() and "scaler" in ckpt:
            scaler.load_state_dict(ckpt["scaler"])
        py, npy = ckpt["rng"]["python"], ckpt["rng"]["numpy"]
        torch.set_rng_state(ckpt["rng"]["torch"])
        random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))
        keys = npy["keys"].numpy().astype(np.uint32)
        np.random.set_state((npy["name"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:  # a model_final.pt or older layout
        raise CheckpointError(
            f"{path}: not a resume checkpoint of this dkan version ({type(e).__name__}: {e}). "
            "Fix: delete it to start over, or resume with the dkan version that wrote it"
        ) from e
    print(f"resumed from {path} at iteration {ckpt['meta']['iteration']}")
    changed = config_changes(ckpt["meta"].get("config", {}), to_dict(cfg))
    if changed:  # allowed (e.g. more iterations), but the schedule so far followed the old values
        print(f"note: {path} was written under another config; resuming with: {'; '.join(changed)}")
    return int(ckpt["meta"]["iteration"])


def config_changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """``key old -> new`` for every value that differs between two config dicts (``out`` left out)."""
    out = []
    for k in sorted(set(old) | set(new)):
        key = f"{prefix}{k}"
        a, b = old.get(k), new.get(k)
        if key == "out":
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_changes(a, b, key + ".")
        elif a != b:
            out.append(f"{key} {a} -> {b}")
    return out


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
