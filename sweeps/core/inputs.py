"""From command-line arguments to a checked, immutable ``sweeps.core.plan.Plan``: every bad input fails here,
before any work (data and few-shot files, class splits, seeds, the search space and points, the
candidates and the selection rule, the tracking URI, the base checkpoint)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from dkan.config import FinetuneConfig, apply_overrides, read_yaml
from dkan.data.fewshot import fewshot_path
from dkan.data.prepared import PreparedData
from dkan.data.splits import (
    check_class_split,
    load_class_splits,
    parse_class_list,
    resolve_class_split,
    split_name,
)
from dkan.errors import shown
from dkan.names import HPARAMS
from dkan.profiles import choose_profile, finetune_config
from sweeps.core.jobspec import WorkerResources
from sweeps.core.layout import CacheLayout, RunLayout
from sweeps.core.plan import (
    ALL_SEEDS,
    CANDIDATES,
    KEEP_CHECKPOINTS,
    QUICK,
    QUICK_SEEDS,
    Budget,
    ClassSplitSpec,
    Plan,
    PlanError,
)
from sweeps.core.space import SearchSpaceError, Space, describe_space, first_points, load_space, point_of, value_in
from sweeps.tracking import check_tracking_uri, sqlite_uri

OBJECTIVES = ("ap_all", "pareto")


def default_cache_dir() -> Path:
    return Path(os.environ.get("DKAN_CACHE", Path.home() / ".cache" / "dkan-sweep"))


def build_plan(args: argparse.Namespace, prepare: bool = True) -> Plan:
    """Everything checked before any work. The embedded default's synthetic set is prepared into the cache
    (``prepare``; without it, a plan only: into a temporary folder that is removed again)."""
    cache = Path(args.cache_dir or default_cache_dir()).absolute()
    embedded = args.data is None
    data_root = _synthetic(CacheLayout(cache).synthetic_data, prepare) if embedded else Path(args.data).absolute()
    seeds = args.seeds or (QUICK_SEEDS if embedded else ALL_SEEDS)
    splits = class_splits(args, data_root)
    data = check_data(data_root, splits, args.shots, seeds)
    # the files handed in, checked (size, anchors) before the profile's GPU probe loads torch (a second)
    if args.search_space:
        read_yaml(Path(args.search_space), "search-space file", SearchSpaceError)
    if args.points:
        read_yaml(Path(args.points), "--points file", PlanError)
    profile = choose_profile(args.profile)
    # cpu-quick sizes its input from the data (recorded by prepare-data); paper keeps the authors' 800 px
    input_size = data.manifest().get("input_size") if profile == "cpu-quick" else None
    budget = _budget(args, QUICK if embedded else Budget())
    template = apply_overrides(finetune_config(profile), list(args.set))  # the default lr range: around --set's
    space = load_space(Path(args.search_space) if args.search_space else None, template)
    objective, min_retention = _objective(args)
    out = Path(args.out).absolute()
    uri = args.tracking_uri or sqlite_uri(RunLayout(out).mlflow_db)
    check_tracking_uri(uri)
    if args.base_checkpoint and not Path(args.base_checkpoint).is_file():
        raise PlanError(
            f"--base-checkpoint {args.base_checkpoint}: file not found. Fix: pass a model_final.pt from dkan base-train"
        )
    plan = Plan(
        data_root=data_root, dataset=data_root.name, splits=splits, shots=tuple(args.shots),
        seeds=tuple(seeds), profile=profile, input_size=input_size, metric=args.metric, search_seed=args.search_seed,
        budget=budget, space=space, objective_kind=objective, min_retention=min_retention,
        resources=WorkerResources(args.workers, args.cpus_per_worker, args.gpus_per_worker), out=out, tracking_uri=uri,
        protocol=args.protocol, base_checkpoint=Path(args.base_checkpoint).absolute() if args.base_checkpoint else None,
        cache_dir=cache, base_overrides=tuple(args.base_set), finetune_overrides=tuple(args.set),
        extra_points=tuple(load_points(args.points, space, template)), max_concurrent=args.max_concurrent or 0,
        verbose=bool(getattr(args, "verbose", False)), device_tflops=getattr(args, "device_tflops", None) or 0.0,
    )
    if plan.base_checkpoint:
        check_base_checkpoint_fits(plan)
    return plan


def check_base_checkpoint_fits(plan: Plan) -> None:
    """``--base-checkpoint`` read (weights only) and matched against every study before any work: a base
    model of the split's base classes, with the architecture and input size the studies fine-tune."""
    from dkan.config import BaseTrainConfig, ConfigError, from_dict
    from dkan.engine.setup import check_student_fits
    from dkan.model.checkpoint import check_base_checkpoint, load_checkpoint

    path = plan.base_checkpoint
    ckpt = load_checkpoint(path, "--base-checkpoint", "pass a model_final.pt from dkan base-train")
    data = PreparedData.load(plan.data_root)
    for split in plan.splits:
        cs = resolve_class_split(list(data.classes), split.number, list(split.base) if split.base else None,
                                 list(split.novel) if split.novel is not None else None)
        check_base_checkpoint(ckpt, path, cs.base)
        student = plan.study(split, plan.shots[0], path).template.model
        try:
            check_student_fits(from_dict(BaseTrainConfig, ckpt["meta"]["config"], str(path)).model, student, path)
        except ConfigError as e:
            raise PlanError(f"--base-checkpoint {e}") from e


def _synthetic(root: Path, prepare: bool) -> Path:
    from dkan.data.prepare import PrepareConfig, prepare_data

    if not prepare:
        if (root / "dataset.yaml").is_file():
            return root
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="dkan-plan-")) / "synthetic"  # removed by the caller (--dry-run)
    res = prepare_data(PrepareConfig(out=str(root), synthetic=True), overwrite=True)  # our cache: refresh it
    print(f"synthetic data: {res.status} ({root})")
    return root


def _budget(args: argparse.Namespace, d: Budget) -> Budget:
    candidates = tuple(getattr(args, "candidates", None) or d.candidates)
    unknown = [c for c in candidates if c not in CANDIDATES]
    if unknown or not candidates or len(set(candidates)) != len(candidates):
        raise PlanError(f"--candidates {','.join(candidates)}: choose each of {', '.join(CANDIDATES)} at most once "
                        f"(unknown: {unknown or 'none'}). Fix: e.g. --candidates tfa,dkan")
    margin = getattr(args, "select_margin", None)
    if margin is not None and not 0 <= margin < 100:
        raise PlanError(f"--select-margin {margin}: AP points in [0, 100). Fix: e.g. --select-margin 0.5")
    alpha = getattr(args, "paired_alpha", None)  # checked in (0, 1) with the other flags (sweeps/run_tune.py)
    keep = getattr(args, "keep_checkpoints", None) or d.keep_checkpoints
    if keep not in KEEP_CHECKPOINTS:
        raise PlanError(f"--keep-checkpoints {keep}: one of {', '.join(KEEP_CHECKPOINTS)}. Fix: --keep-checkpoints "
                        "selected (the default: model files no one can choose are deleted) or all")
    b = Budget(
        keep_checkpoints=keep, trials=args.trials or d.trials,
        base_iterations=args.base_iterations or d.base_iterations,
        finetune_iterations=args.finetune_iterations or d.finetune_iterations,
        grace_seeds=args.grace_seeds or d.grace_seeds, reduction_factor=args.reduction_factor or d.reduction_factor,
        early_stop=not args.no_early_stop and getattr(args, "scheduler", None) != "fifo",
        scheduler=getattr(args, "scheduler", None) or d.scheduler,
        paired_alpha=d.paired_alpha if alpha is None else alpha,
        max_failures=d.max_failures if getattr(args, "max_failures", None) is None else args.max_failures,
        candidates=candidates, margin=d.margin if margin is None else margin / 100,
        select_rule=getattr(args, "select_rule", None) or d.select_rule,
    )
    if b.trials < 1:
        raise PlanError(f"--trials {b.trials}: need at least one trial")
    return b


def _objective(args: argparse.Namespace) -> tuple[str, float]:
    kind = getattr(args, "objective", None) or "ap_all"
    low = getattr(args, "min_retention", None)
    if kind not in OBJECTIVES:
        raise PlanError(f"--objective {kind}: choose {' or '.join(OBJECTIVES)}")
    if low is not None and not 0 < low <= 1:
        raise PlanError(f"--min-retention {low}: a share of the base model's AP_B in (0, 1]. Fix: e.g. 0.9")
    if kind == "pareto" and args.protocol == "paper":
        raise PlanError("--objective pareto with --protocol paper: the Pareto search selects on val. Fix: drop one")
    if low is not None and kind != "pareto":
        raise PlanError("--min-retention: only the Pareto search uses it. Fix: add --objective pareto or drop it")
    return kind, 0.9 if low is None else low


def class_splits(args: argparse.Namespace, data_root: Path) -> tuple[ClassSplitSpec, ...]:
    """The splits to sweep: ``--base``/``--novel``, the splits of ``--class-splits FILE``, NEU-DET
    presets ``--splits``, else those recorded in the prepared dataset, else preset 1."""
    ways = (("--splits", args.splits), ("--base", args.base), ("--class-splits", args.class_splits))
    given = [n for n, v in ways if v]
    if len(given) > 1:
        raise PlanError(f"{' and '.join(given)}: give one way of naming class splits. Fix: keep one of them")
    if args.novel and not args.base:
        raise PlanError("--novel needs --base. Fix: add --base a,b,c (the base classes)")
    if args.base:
        base, novel = parse_class_list(args.base), parse_class_list(args.novel)
        name = split_name(None, base, novel)
        return (ClassSplitSpec(name, None, tuple(base), tuple(novel) if novel is not None else None),)
    if args.class_splits:
        named = load_class_splits(Path(args.class_splits))
    elif args.splits:
        return tuple(ClassSplitSpec(split_name(n), n) for n in args.splits)
    else:
        named = PreparedData.load(data_root).class_splits()
        if not named:
            return (ClassSplitSpec("split1", 1),)
    return tuple(ClassSplitSpec(n, None, cs.base, cs.novel or None) for n, cs in named.items())


def check_data(data_root: Path, splits: tuple[ClassSplitSpec, ...], shots: list[int],
               seeds: list[int]) -> PreparedData:
    """Every (split, K, seed) needs its few-shot files; seeds must be a sane range."""
    if not seeds or min(seeds) < 1:
        raise PlanError(f"--seeds {seeds}: seeds start at 1. Fix: pass e.g. --seeds 1-10")
    data = PreparedData.load(data_root)
    for s in splits:  # a study fine-tunes on novel classes: a split without any is refused here, not in a trial
        cs = resolve_class_split(list(data.classes), s.number, list(s.base) if s.base else None,
                                 list(s.novel) if s.novel is not None else None)
        check_class_split(cs, data.classes, f"class split {s.name}")
    missing = [(s, k) for s in seeds for k in shots
               if not all(fewshot_path(data.annotations, s, k, c).is_file() for c in data.classes)]
    if missing:
        have = sorted(int(p.name) for p in (data.annotations / "fewshot-split").iterdir() if p.name.isdigit())
        s, k = missing[0]
        raise PlanError(
            f"{data_root}: no few-shot files for seed {s}, K={k} ({len(missing)} (seed, K) pairs missing; "
            f"seeds present: {have}). Fix: run `dkan prepare-data ... --seeds {seeds[0]}-{seeds[-1]} "
            f"--shots {','.join(map(str, shots))}` or choose --seeds/--shots that exist"
        )
    return data


def load_points(path: str | None, space: Space, template: FinetuneConfig | None = None) -> list[dict[str, Any]]:
    """A YAML list of DKAN points to evaluate first, each inside the space: every distillation key of the
    space set; a key it leaves out (e.g. ``optim.lr``) takes the profile's value (``template``)."""
    if not path:
        return []
    p = Path(path)
    points = read_yaml(p, "--points file", PlanError) or []
    if not isinstance(points, list):
        raise PlanError(f"--points {p}: expected a list of {{{', '.join(space)}}} mappings")
    must = sorted(k for k in space if k in HPARAMS)
    fill = first_points({k: d for k, d in space.items() if k not in HPARAMS}, template or FinetuneConfig())
    for i, pt in enumerate(points):
        if not isinstance(pt, dict) or not set(must) <= set(pt) or not set(pt) <= set(space):
            raise PlanError(f"--points {p}: entry {i} must set {must} and may set {sorted(set(space) - set(must))} "
                            f"(the profile's value where it does not), got {shown(pt)}")
        for k, v in pt.items():
            if not value_in(space[k], v):
                raise PlanError(f"--points {p}: entry {i}: {k}={shown(v)} lies outside the space "
                                f"({describe_space({k: space[k]})})")
    return [point_of({**fill, **pt}, space) for pt in points]
