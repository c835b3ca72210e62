"""An estimate before launch: wall time, worker-hours and disk of each study, from the budget and
measured rates, and the actual beside it once the study is done.

Rates (``Rates``), best first: this cluster's calibration (``CACHE/calibration/<profile>.json``, written
from every finished study's own seed jobs), else the base model's run (its training step and its
evaluation, a cached base model's or the one just trained), else, for cpu-quick, numbers measured on a
2-core machine, else a model: the configured detector's FLOPs (``sweeps.core.flops``) over a device's FLOP
rate (``--device-tflops``, default ``DEVICE_TFLOPS``), stated with its range. The count of seed
fine-tunes is an upper bound: early stopping only lowers it.

What a sweep spends, in units no machine changes (``Units``): fine-tune iteration-images (iterations x
batch size, over the seed fine-tunes), evaluation images, base-training iteration-images. The plan
states the upper bound (``bound_units``), a study's results what its runs trained (``measured``).
"""

from __future__ import annotations

import functools
import math
import os
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from dkan import runfolder
from dkan.data.coco import load_coco_json
from dkan.data.splits import resolve_class_split
from sweeps.core.flops import DetectorFlops, cached_flops
from sweeps.core.plan import ClassSplitSpec, Plan, StudySpec

RUN_START_S = 14.0  # a Ray Train run's start (measured on 2 cores; the same order on a cluster)
# a study's fine-tune iteration over a base-training one, its candidates' mix (TFA trains the last layer only,
# the others all but the body): 0.56 on the tiles set at 320 px, 0.84 on NEU-DET at 200 px (cpu-quick, 2026-12)
FINETUNE_PER_BASE_ITER = 0.7


@dataclass(frozen=True)
class Rates:
    s_per_iter: float  # one fine-tune iteration, one worker's share of a batch
    s_per_seed: float  # a seed job besides its training: set-up and its evaluation on val
    s_per_eval: float  # a test-phase evaluation of one checkpoint
    s_per_run: float  # starting one Ray Train run (a trial, a test-phase group)
    model_mb: float  # a full model file
    delta_share: float  # a DKAN / plain seed's file against the full model (TFA's is ~0.1%)
    source: str
    overhead: float = 1.0  # the study's wall time over what the rates above account for (calibrated)


# The model's device rates (TFLOPS of torch's count on this detector's training, 2 per multiply-add), when
# --device-tflops names none. CPU, per core (times --cpus-per-worker): measured on these 2-core machines, cpu-quick,
# in CPU seconds (0.045-0.073 over its steps, scripts/bench_cost_model.py; whole dkan runs within 31%, 2026-12-06).
# GPU, per GPU (times --gpus-per-worker): an H100-class card in bf16 at ~4% of its 989 dense TFLOPS, a detector's
# realistic share (small kernels, NMS, RoI sampling, Python): an assumption, not measured here. A model's figure is
# good to MODEL_RANGE on the machine it was calibrated on (docs/benchmarks.md, the estimate before any base model).
DEVICE_TFLOPS = {"CPU": 0.05, "GPU": 40.0}
MODEL_RANGE = (0.5, 2.0)
SEED_SET_UP_S = 4.0  # a seed job's set-up besides its training and evaluation (data, model, checkpoint)


# cpu-quick on one of the 2-core machines (2026-12, fp32): 1.2 s per iteration on one core at batch 4
BUILT_IN = {"cpu-quick": Rates(1.2, 6.0, 4.0, RUN_START_S, 52.4, 0.185, "built-in: measured on a 2-core machine")}


@dataclass(frozen=True)
class Estimate:
    finetunes: int  # seed fine-tunes on val, at most
    evaluations: int  # test-phase evaluations
    train_runs: int
    wall_s: float
    worker_h: float
    unit: str  # GPU | CPU
    disk_mb: float  # the study's run folders after pruning (the candidates' seed files)
    source: str
    finetune_images: int = 0  # at most: fine-tune iterations x batch size over the seed fine-tunes (Units)
    eval_images: int = 0  # at most: each fine-tune's val images and each test evaluation's test images

    def line(self) -> str:
        return (f"estimate: {self.wall_s / 60:.1f} min, {self.worker_h:.2g} {self.unit}-hours, "
                f"{self.disk_mb:.0f} MB ({self.finetunes} seed fine-tunes at most, {self.evaluations} test "
                f"evaluations; {Units(self.finetune_images, self.eval_images).line()} at most; "
                f"rates: {self.source})")


def runs_of(plan: Plan) -> list[int]:
    """The trials of each Tune run of one study on val, in order (``sweeps.core.shape``: the runs ``sweeps.study``
    makes)."""
    return plan.shape.trials


def counts(plan: Plan) -> tuple[int, int, int, int]:
    """(seed fine-tunes at most, of them kept as candidates, test evaluations, Train runs) of one study."""
    seeds, runs = len(plan.seeds), runs_of(plan)
    candidates = len(plan.candidate_names())
    groups = max(1, plan.max_concurrent)
    return sum(runs) * seeds, candidates * seeds, candidates * seeds + 1, sum(runs) + groups


def estimate(plan: Plan, rates: Rates) -> Estimate:
    """One study's estimate at these rates: each Tune run in waves of ``max_concurrent`` trials (a trial runs
    its seeds one after another), then the test phase's groups side by side; times ``rates.overhead``."""
    finetunes, kept, evaluations, runs = counts(plan)
    iters = plan.study(plan.splits[0], plan.shots[0], Path("base.pt")).template.optim.iterations
    res, at_once, seeds = plan.resources, max(1, plan.max_concurrent), len(plan.seeds)
    per_trial = seeds * (iters * rates.s_per_iter / max(1, res.workers) + rates.s_per_seed) + rates.s_per_run
    groups = min(at_once, evaluations)
    test = rates.s_per_run + math.ceil(evaluations / groups) * rates.s_per_eval
    wall = (sum(math.ceil(n / at_once) for n in runs_of(plan)) * per_trial + test) * rates.overhead
    work = (sum(runs_of(plan)) * per_trial + groups * rates.s_per_run + evaluations * rates.s_per_eval) * rates.overhead
    unit, per_worker = ("GPU", res.gpus_per_worker) if res.gpus_per_worker else ("CPU", res.cpus_per_worker)
    worker_h = work * res.workers * per_worker / 3600
    tfa = seeds if "tfa" in plan.budget.candidates else 0  # TFA's seed files are a few KB
    # the tuned DKAN is the defaults' own files when no search trial beats them: counted as likely as any
    # other of the DKAN trials to win (1 in --trials)
    same = seeds / max(1, plan.budget.trials) if "dkan" in plan.budget.candidates else 0.0
    disk = (kept - tfa - same) * rates.model_mb * rates.delta_share  # the candidates' seeds in the run folder
    units = bound_units(plan)
    return Estimate(finetunes, evaluations, runs, wall, worker_h, unit, disk, rates.source, units.finetune_images,
                    units.eval_images)


def calibration_file(plan: Plan) -> Path:
    return plan.cache_dir / "calibration" / f"{plan.profile}_w{plan.resources.workers}.json"


def rates_for(plan: Plan, base_ckpt: Path | None = None) -> Rates | None:
    """The best rates there are (module docstring); None when nothing is known yet."""
    cal = runfolder.read_json(calibration_file(plan)) if calibration_file(plan).is_file() else None
    if isinstance(cal, dict):
        try:
            return Rates(**cal)
        except TypeError:  # an older or edited file: measured again after the next study
            pass
    m = runfolder.done_metrics(Path(base_ckpt).parent) if base_ckpt else None
    if m and m.get("s_per_iter") and m.get("fit_seconds") and m.get("train_seconds") is not None:
        evaluation = max(1.0, float(m["fit_seconds"]) - float(m["train_seconds"]))
        size = Path(base_ckpt).stat().st_size / 1e6
        return Rates(float(m["s_per_iter"]) * FINETUNE_PER_BASE_ITER, evaluation, evaluation, RUN_START_S, size,
                     BUILT_IN.get(plan.profile, BUILT_IN["cpu-quick"]).delta_share, "the base model's run")
    return BUILT_IN.get(plan.profile)


def measured(plan: Plan, study: StudySpec, wall_s: float) -> dict[str, Any]:
    """What the study cost, and the rates its own seed jobs show (saved as this cluster's calibration)."""
    root = plan.layout.runs(study.key)
    seeds = [{**m, "_batch": _batch_size(d)} for d in root.glob("*/seed*") if (m := runfolder.done_metrics(d))]
    trained = [m for m in seeds if m.get("source") != "reused" and m.get("s_per_iter")]
    reused = [m for m in seeds if m.get("source") == "reused"]
    files = list(root.glob("*/seed*/model_final.pt"))
    disk = folder_bytes(root)
    units = seed_units(plan, study, seeds)
    actual = {"wall_s": round(wall_s, 1), "seed_finetunes": len(trained), "test_evaluations": len(reused),
              "disk_mb": round(disk / 1e6, 1), "finetune_images": units.finetune_images,
              "eval_images": units.eval_images}
    if trained:
        delta = [p.stat().st_size for p in files if p.stat().st_size > 1e5]  # not TFA's (a few KB)
        base = Path(study.template.base_checkpoint)
        full = base.stat().st_size / 1e6 if base.is_file() else 0.0
        rates = Rates(
            s_per_iter=statistics.median(float(m["s_per_iter"]) for m in trained),
            s_per_seed=statistics.median(max(0.0, float(m["fit_seconds"]) - float(m["train_seconds"]))
                                         for m in trained),
            s_per_eval=statistics.median(float(m["fit_seconds"]) for m in reused) if reused else 0.0,
            s_per_run=RUN_START_S, model_mb=full or 1.0,
            delta_share=statistics.median(delta) / 1e6 / full if delta and full else 0.2,
            source=f"calibrated on this cluster ({study.key})")
        # what the rates leave out (Tune and MLflow book-keeping, uneven waves), as a factor on the next estimate
        overhead = min(5.0, max(0.5, wall_s / max(1.0, estimate(plan, rates).wall_s)))
        runfolder.write_json(calibration_file(plan), {**asdict(rates), "overhead": round(overhead, 3)})
    return actual


def _batch_size(seed_dir: Path) -> int | None:
    """The batch size a seed job ran with (its config.yaml), None when unknown."""
    from dkan import yamlio
    from dkan.errors import DkanError

    try:
        return int(yamlio.read(seed_dir / runfolder.CONFIG, "seed config")["optim"]["batch_size"])
    except (OSError, DkanError, KeyError, TypeError, ValueError):
        return None


def folder_bytes(path: Path) -> int:
    """Bytes under ``path``, a hard-linked file counted once."""
    seen, total = set(), 0
    for dirpath, _, names in os.walk(path):
        for n in names:
            st = os.lstat(os.path.join(dirpath, n))
            if (st.st_dev, st.st_ino) not in seen:  # a hard link counted once
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


@dataclass(frozen=True)
class Units:
    """What a sweep spends, whatever the machine: images through a training step, images evaluated."""

    finetune_images: int = 0  # fine-tune iterations x batch size, over the seed fine-tunes
    eval_images: int = 0  # each fine-tune's evaluation set, each test-phase checkpoint's test set
    base_images: int = 0  # base-training iterations x batch size

    def line(self) -> str:
        base = f", {self.base_images:,} base-training iteration-images" if self.base_images else ""
        return f"{self.finetune_images:,} fine-tune iteration-images, {self.eval_images:,} evaluation images{base}"


@dataclass(frozen=True)
class DataSizes:
    """What the estimate needs of a prepared data set (read once per process: ``data_sizes``)."""

    val: int  # images of the val split
    test: int
    image_hw: tuple[int, int]  # the training images' median size (height, width)
    classes: tuple[str, ...]
    train_images_of: dict[str, frozenset[int]]  # class -> the training images holding a box of it

    def of(self, split: str) -> int:
        return self.test if split == "test" else self.val


def data_sizes(plan: Plan) -> DataSizes:
    return _read_sizes(str(plan.data_root))


@functools.lru_cache(maxsize=4)
def _read_sizes(root: str) -> DataSizes:
    coco = {s: load_coco_json(Path(root) / "annotations" / f"{s}.json") for s in ("train", "val", "test")}
    train = coco["train"]
    hw = sorted((im["height"], im["width"]) for im in train["images"]) or [(800, 800)]
    names = {c["id"]: c["name"] for c in train["categories"]}
    images: dict[str, set[int]] = {n: set() for n in names.values()}
    for a in train["annotations"]:
        images[names[a["category_id"]]].add(a["image_id"])
    return DataSizes(len(coco["val"]["images"]), len(coco["test"]["images"]), hw[len(hw) // 2],
                     tuple(names.values()), {n: frozenset(v) for n, v in images.items()})


def bound_units(plan: Plan) -> Units:
    """One study's units at most (every trial on every seed; the search's points at the template's length)."""
    finetunes, _, evaluations, _ = counts(plan)
    optim, sizes = plan.study(plan.splits[0], plan.shots[0], Path("base.pt")).template.optim, data_sizes(plan)
    return Units(finetunes * optim.iterations * optim.batch_size,
                 finetunes * sizes.of(plan.select_split) + evaluations * sizes.test)


def base_iterations(plan: Plan, split: ClassSplitSpec) -> int:
    """A base model's iterations (an epoch-based schedule over the split's base-class training images)."""
    sizes = data_sizes(plan)
    base = resolve_class_split(list(sizes.classes), **split.data_fields()).base
    images = set().union(*(sizes.train_images_of[c] for c in base))
    from dkan.engine.train import Schedule  # lazily, as torch: the estimate is read before any work

    return Schedule.of(plan.base_template(split).optim, len(images)).iterations


def seed_units(plan: Plan, study: StudySpec, seeds: list[dict[str, Any]]) -> Units:
    """What these finished seed jobs (``measured``'s metrics, with their ``_batch``) spent."""
    sizes = data_sizes(plan)
    trained = [m for m in seeds if m.get("source") != "reused"]
    return Units(sum(int(m.get("iterations", 0)) * int(m.get("_batch") or study.template.optim.batch_size)
                     for m in trained),
                 sum(sizes.of(m.get("eval_split", plan.select_split)) for m in seeds))


def device_rate(plan: Plan) -> tuple[float, str]:
    """TFLOPS of one worker: --device-tflops, else the device kind's default times the worker's share."""
    res = plan.resources
    if plan.device_tflops:
        return plan.device_tflops, f"--device-tflops {plan.device_tflops:g}"
    kind, n = ("GPU", res.gpus_per_worker) if res.gpus_per_worker else ("CPU", res.cpus_per_worker)
    return DEVICE_TFLOPS[kind] * n, f"{DEVICE_TFLOPS[kind]:g} TFLOPS per {kind} (the default; --device-tflops)"


def plan_flops(plan: Plan, keep: bool = True) -> DetectorFlops:
    """The detector's FLOPs for this plan (``keep``: in the cache folder; a dry run writes nothing)."""
    split = plan.splits[0]
    classes = resolve_class_split(list(data_sizes(plan).classes), **split.data_fields())
    ft = plan.study(split, plan.shots[0], Path("base.pt")).template
    return cached_flops(plan.cache_dir, plan.base_template(split).model, ft.model, len(classes.base),
                        len(classes.all), data_sizes(plan).image_hw, ft.freeze_backbone, keep)


def model_rates(plan: Plan, keep: bool = True) -> Rates:
    """``Rates`` from the detector's FLOPs at ``device_rate``: a study's mix of fine-tunes (its trials per
    method), each with the frozen-feature cache's misses (the few-shot views' first visits; all visits of those
    past its budget; on 30 NEU-DET images x 4 flips, 120 image-steps: 76 first visits expected, 77 counted),
    the evaluations at the test size."""
    tflops, why = device_rate(plan)
    flops, sizes = plan_flops(plan, keep), data_sizes(plan)
    ft = plan.study(plan.splits[0], max(plan.shots), Path("base.pt")).template
    mix = plan.shape.trials_by_method()  # the study's fine-tunes per method (sweeps.core.shape)
    steps = ft.optim.iterations * ft.optim.batch_size
    views = max(plan.shots) * len(sizes.classes)  # the K-shot set's images at most
    views *= (1 + (ft.data.hflip > 0)) * (1 + (ft.data.vflip > 0)) * len(ft.model.train_min_sizes or [1])
    from dkan.distill.cache import CPU_DEFAULT_MB, CUDA_MAX_DEFAULT_MB

    mb = ft.cache_mb if ft.cache_mb >= 0 else CUDA_MAX_DEFAULT_MB if plan.resources.gpus_per_worker else CPU_DEFAULT_MB
    per_image = 0.0
    for m, n in mix.items():
        held = min(views, mb * 2**20 / max(1.0, flops.view_bytes[m])) if mb else 0.0
        visited = views * (1 - (1 - 1 / views) ** steps)  # distinct views among ``steps`` draws, expected
        misses = visited * held / views + steps * (views - held) / views  # first visits; all beyond the budget
        per_image += n * (flops.finetune_step[m] + flops.finetune_miss[m] * misses / steps)
    rate = tflops * 1e12
    s_iter = per_image / sum(mix.values()) * ft.optim.batch_size / rate
    source = (f"model: {per_image / sum(mix.values()) / 1e9:.3g} GFLOP per fine-tune image at {why}, "
              f"x{MODEL_RANGE[0]:g} to x{MODEL_RANGE[1]:g}")
    # an evaluation after the first reuses the frozen body's features (a worker's val cache, the test phase's pass)
    heads = flops.eval_image - flops.eval_body
    return Rates(s_iter, SEED_SET_UP_S + sizes.of(plan.select_split) * heads / rate, sizes.test * heads / rate,
                 RUN_START_S, flops.params * 4 / 1e6, flops.delta_params / flops.params, source)


def base_estimate(plan: Plan, split: ClassSplitSpec, keep: bool = True) -> tuple[float, float, int]:
    """(wall seconds, worker-hours, iteration-images) of one base model by the model: it trains alone, on the
    CPUs of every slot that fit on one node (sweeps.shell.sweep), or on one worker's GPUs."""
    cfg, flops, sizes = plan.base_template(split), plan_flops(plan, keep), data_sizes(plan)
    tflops, _ = device_rate(plan)
    res = plan.resources
    share = res.gpus_per_worker or min(plan.node_cpus, res.cpus_per_worker * max(1, plan.max_concurrent))
    if not plan.device_tflops and not res.gpus_per_worker:  # the CPUs it gets
        tflops *= share / res.cpus_per_worker
    images = base_iterations(plan, split) * cfg.optim.batch_size
    wall = RUN_START_S + SEED_SET_UP_S + (images * flops.base_step + sizes.val * flops.eval_image) / (tflops * 1e12)
    return wall, wall * share / 3600, images


def plan_line(plan: Plan, keep: bool = True) -> str:
    """The whole sweep's budget in units and its estimate for the plan: every study and the base models to
    train; a paper-profile plan on CPUs also says what one GPU would take. ``keep``: the FLOP count in the cache
    folder (a dry run writes nothing)."""
    first = plan.splits[0]
    cached = plan.base_checkpoint or plan.base_cache_dir(first) / runfolder.FINAL
    rates = rates_for(plan, cached if Path(cached).is_file() else None) or model_rates(plan, keep)
    lines = _sweep_lines(plan, rates, keep)
    if plan.profile == "paper" and not plan.resources.gpus_per_worker:
        gpu = replace(plan, resources=replace(plan.resources, gpus_per_worker=1.0), max_concurrent=1, device_tflops=0.0)
        lines.append("  on 1 GPU    " + _sweep_lines(gpu, model_rates(gpu, keep), keep)[1].split(None, 1)[1]
                     + " (--gpus-per-worker 1 on a GPU machine or cluster)")
    return "\n".join(lines)


def _to_train(plan: Plan) -> list[ClassSplitSpec]:
    if plan.base_checkpoint:
        return []
    return [s for s in plan.splits if not (plan.base_cache_dir(s) / runfolder.FINAL).is_file()]


def _sweep_lines(plan: Plan, rates: Rates, keep: bool) -> list[str]:
    """[the budget in units, the estimate]: every study at ``rates``, the base models by the model."""
    one, n = estimate(plan, rates), len(plan.studies())
    optim = plan.study(first := plan.splits[0], plan.shots[0], Path("base.pt")).template.optim
    bases = [base_estimate(plan, s, keep) for s in _to_train(plan)]
    units = Units(one.finetune_images * n, one.eval_images * n, sum(b[2] for b in bases))
    base_it = f"; base training {len(bases)} x {base_iterations(plan, first):,} iterations" if bases else ""
    wall, hours = one.wall_s * n + sum(b[0] for b in bases), one.worker_h * n + sum(b[1] for b in bases)
    disk = one.disk_mb * n + len(bases) * rates.model_mb
    spread = ""
    if rates.source.startswith("model:"):
        low, high = MODEL_RANGE
        spread = f" (range {_duration(wall * low)} to {_duration(wall * high)})"
    base = f"{_duration(sum(b[0] for b in bases))} for {len(bases)} base model(s), " if bases else ""
    return [
        f"  cost        at most {units.line()} ({one.finetunes * n} seed fine-tunes x {optim.iterations:,} "
        f"iterations x {optim.batch_size} images{base_it})",
        f"  estimate    {_duration(wall)}{spread}: {base}{_duration(one.wall_s * n)} for {n} "
        f"stud{'y' if n == 1 else 'ies'}; {hours:.3g} {one.unit}-hours, {disk:.0f} MB ({one.finetunes * n} seed "
        f"fine-tunes at most; rates: {rates.source})",
    ]


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 2 * 3600 else f"{seconds / 3600:.1f} h"
