"""Record a grid on real data for replaying search strategies without Ray (``scripts/bench_strategies.py``).

    scripts/venv-run dkan prepare-data --source ../shared/datasets/NEU-DET \\
        --split-json ../shared/datasets/NEU-DET/reference-split --out data/neu-det
    scripts/venv-run python scripts/record_grid.py --data data/neu-det --shots 5,10 --seeds 1-10 --points 12 \\
        --finetune-iterations 60 --base-iterations 300 --jobs 2 \\
        --out runs/record_grid --grid benchmarks/data/neu_det_grid.json

The configs: the sweep's fixed candidates (TFA, plain and DKAN with the authors' defaults, at the profile's
values), then ``--points`` DKAN points of the default search space (``sweeps.core.space.default_space``: the four
distillation values and the learning rate), drawn uniform / log-uniform as the search's start-up trials
draw them (seeded). Each (K, seed, config) is one fine-tune at full
length, built as the sweep builds it (``build_plan``, the study template, ``finetune_job``), scored on
val *and* test at each of ``--fractions`` of its length in the same run: the rungs a scheduler on
training length stops at. The base
model is the sweep's own (its cache; trained here when missing, from scratch at cpu-quick).

Per-seed AP only: the grid JSON holds, per cell and fraction, AP_all / AP_base / AP_novel on val and test,
and the seconds each cell took. Order: seed-major (seed 1 of every K and config, then seed 2, ...), so a
cut-off recording holds every config on its first seeds. Resumable: the JSON is rewritten after every
fine-tune and a re-run skips the cells it holds (the same arguments: a different grid is refused).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dkan import runfolder
from dkan.names import parse_int_list
from sweeps.core.inputs import build_plan
from sweeps.core.jobspec import finetune_job
from sweeps.core.space import Range, default_space
from sweeps.run_tune import parse_args

GRID_VERSION = 1
KEYS = ("AP_all", "AP_base", "AP_novel")
FIXED = (("tfa", "tfa"), ("plain", "plain"), ("dkan_defaults", "dkan"))  # (config id, method)


@dataclass(frozen=True)
class Cell:
    shots: int
    seed: int
    config: str
    cfg: Any  # FinetuneConfig
    fractions: tuple[float, ...]


def rungs(iterations: int, fractions: tuple[float, ...]) -> list[int]:
    """The iterations at which a run is scored: each fraction of its length (at least 1, distinct, sorted)."""
    return sorted({max(1, min(iterations, round(f * iterations))) for f in fractions})


def _scores(m: dict[str, float]) -> dict[str, float | None]:
    """AP_all / AP_base / AP_novel, 6 digits; None where undefined (the base model has no novel class)."""
    return {k: round(float(m[k]), 6) if math.isfinite(float(m[k])) else None for k in KEYS}


def run_cell(cell: Cell) -> dict[str, Any]:
    """One fine-tune at full length, scored on val and test at each rung (the final val score is fit's own)."""
    from dkan.data.prepared import PreparedData
    from dkan.distill.cache import MiB, budget_mb, eval_cache
    from dkan.engine.evaluate import evaluate
    from dkan.engine.setup import eval_ground_truth, set_train_mode
    from dkan.engine.train import fit

    t0 = time.time()
    cfg = cell.cfg
    data = PreparedData.load(Path(cfg.data.root))
    at = rungs(cfg.optim.iterations, cell.fractions)
    points: dict[int, dict[str, dict[str, float]]] = {}
    test: dict[str, Any] = {}

    def score(it: int, setup) -> None:
        if it not in at:
            return
        if not test:
            gt = eval_ground_truth(data, "test", setup.classes)
            test.update(records=data.records(gt), gt=gt)
        st = setup.student
        cache = eval_cache(st.backbone.body, budget_mb(cfg.cache_mb, setup.device) * MiB)  # the body is frozen
        row = points.setdefault(it, {})
        row["test"] = _scores(evaluate(st, test["records"], test["gt"], setup.base, setup.novel, setup.device,
                                       cache=cache))
        if it < cfg.optim.iterations:  # the last val score is fit's own evaluation
            row["val"] = _scores(evaluate(st, setup.eval_records, setup.eval_gt, setup.base, setup.novel,
                                          setup.device, cache=cache))
        set_train_mode(st)

    m = fit(cfg, progress=False, on_iteration=score)
    points[cfg.optim.iterations]["val"] = _scores(m)
    return {"shots": cell.shots, "seed": cell.seed, "config": cell.config, "seconds": round(time.time() - t0, 1),
            "points": {str(k): v for k, v in sorted(points.items())}}


def _base(plan, split) -> tuple[Path, dict[str, Any]]:
    """The split's base model from the sweep's cache, else trained here (the sweep's config), and its metrics."""
    from dkan.engine.train import fit_once

    d = plan.base_cache_dir(split)
    m = fit_once(replace(plan.base_template(split), out=str(d), device="cpu"), progress=True)
    return d / runfolder.FINAL, m


def configs(template, n_points: int, points_seed: int) -> list[tuple[str, str, dict[str, Any]]]:
    """(id, method, point): the fixed candidates at the profile's values, then the sampled DKAN points."""
    space, rng = default_space(template), random.Random(points_seed)
    pts = [{k: round(_draw(d, rng), 6) for k, d in space.items()} for _ in range(n_points)]
    return [(c, m, {}) for c, m in FIXED] + [(f"p{i:02d}", "dkan", p) for i, p in enumerate(pts, 1)]


def _draw(d, rng: random.Random):
    """One value of a dimension, uniform (log-uniform when ``d.log``), as a search's start-up trial draws it."""
    if not isinstance(d, Range):
        return rng.choice(list(d.choices))
    x = d.low * (d.high / d.low) ** rng.random() if d.log else rng.uniform(d.low, d.high)
    return round(x) if d.integer else x


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="a folder written by `dkan prepare-data`")
    p.add_argument("--split", default="1", help="the class split (a NEU-DET split number)")
    p.add_argument("--base", metavar="A,B,C", help="your own split's base classes (any data set; instead of --split)")
    p.add_argument("--novel", metavar="D,E", help="its novel classes (default: the data set's other classes)")
    p.add_argument("--shots", type=parse_int_list, default=[5, 10])
    p.add_argument("--seeds", type=parse_int_list, default=list(range(1, 11)))
    p.add_argument("--points", type=int, default=12, help="sampled DKAN points (besides the fixed candidates)")
    p.add_argument("--points-seed", type=int, default=0)
    p.add_argument("--finetune-iterations", type=int, default=60)
    p.add_argument("--fractions", default="0.25,0.5,1", help="where along a fine-tune it is scored")
    p.add_argument("--base-iterations", type=int, default=300)
    p.add_argument("--jobs", type=int, default=1, help="fine-tunes at once (one CPU thread each)")
    p.add_argument("--out", default="runs/record_grid", help="run folders of the fine-tunes")
    p.add_argument("--grid", default="runs/record_grid/grid.json", help="the recording (JSON)")
    p.add_argument("--cache-dir", help="base models (default: the sweep's)")
    p.add_argument("--limit", type=int, default=0, help="stop after this many new cells (0: all)")
    a = p.parse_args(argv)
    fractions = tuple(float(x) for x in a.fractions.split(","))
    if not fractions or any(not 0 < f <= 1 for f in fractions) or max(fractions) != 1:
        p.error(f"--fractions {a.fractions!r}: fractions in (0, 1], the last 1 (the full run)")
    out = Path(a.out).absolute()
    split_args = ["--base", a.base, *(["--novel", a.novel] if a.novel else [])] if a.base else ["--splits", a.split]
    argv_plan = ["--data", a.data, *split_args, "--shots", ",".join(map(str, a.shots)),
                 "--seeds", ",".join(map(str, a.seeds)), "--profile", "cpu-quick", "--out", str(out),
                 "--finetune-iterations", str(a.finetune_iterations), "--base-iterations", str(a.base_iterations),
                 *(["--cache-dir", a.cache_dir] if a.cache_dir else [])]
    plan = build_plan(parse_args(argv_plan))
    split = plan.splits[0]
    from dkan.data.prepared import PreparedData
    from dkan.data.splits import resolve_class_split

    classes = resolve_class_split(list(PreparedData.load(plan.data_root).classes), split.number,
                                  list(split.base) if split.base else None, list(split.novel) if split.novel else None)
    base_ckpt, base_m = _base(plan, split)
    studies = {k: plan.study(split, k, base_ckpt) for k in plan.shots}
    template = studies[plan.shots[0]].template
    grid_path = Path(a.grid)
    head = {
        "about": "per-seed val and test AP of the sweep's candidates and sampled DKAN points at several points of "
                 "one fine-tune's length (scripts/record_grid.py)",
        "version": GRID_VERSION, "command": "python scripts/record_grid.py " + " ".join(sys.argv[1:] if argv is None
                                                                                          else argv),
        "dataset": plan.dataset, "split": split.name, "base": list(classes.base), "novel": list(classes.novel),
        "profile": plan.profile,
        "shots": list(plan.shots), "seeds": list(plan.seeds), "finetune_iterations": template.optim.iterations,
        "images_per_iteration": template.optim.batch_size, "fractions": list(fractions),
        "rungs": rungs(template.optim.iterations, fractions), "base_iterations": a.base_iterations,
        "base_model": {"val": _scores(base_m) if "AP_all" in base_m else None},
        "configs": [{"id": c, "method": m, "point": pt} for c, m, pt in configs(template, a.points, a.points_seed)],
    }
    cells = _load(grid_path, head)
    done = {(c["shots"], c["seed"], c["config"]) for c in cells}
    todo = [Cell(k, s, cid, _cell_cfg(studies[k], plan, cid, meth, pt, s), fractions)
            for s in plan.seeds for k in plan.shots for cid, meth, pt in configs(template, a.points, a.points_seed)
            if (k, s, cid) not in done]
    if a.limit:
        todo = todo[:a.limit]
    print(f"record_grid: {len(done)} cells recorded, {len(todo)} to run ({a.jobs} at once) -> {grid_path}", flush=True)
    t0 = time.time()
    with ProcessPoolExecutor(max_workers=a.jobs, initializer=_one_thread) as pool:
        pending = {pool.submit(run_cell, c) for c in todo[:a.jobs * 2]}
        queue = todo[a.jobs * 2:]
        n = 0
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                row = f.result()
                cells.append(row)
                n += 1
                _write(grid_path, head, cells)  # after every fine-tune: a cut-off run keeps them
                final = row["points"][str(head["rungs"][-1])]
                print(f"[{n}/{len(todo)} {time.time() - t0:.0f} s] K={row['shots']} seed {row['seed']} "
                      f"{row['config']}: val {final['val']['AP_all']:.4f} test {final['test']['AP_all']:.4f} "
                      f"({row['seconds']:.0f} s)", flush=True)
                if queue:
                    pending.add(pool.submit(run_cell, queue.pop(0)))
    print(f"wrote {grid_path} ({len(cells)} cells, {time.time() - t0:.0f} s this run)")


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _cell_cfg(study, plan, cid: str, method: str, point: dict[str, Any], seed: int):
    job = finetune_job(study.template, method, seed, plan.layout.trial_seed(study.key, cid, seed), "val", point)
    return replace(job.cfg, threads=1, device="cpu", checkpoint_every=0)


def _load(path: Path, head: dict[str, Any]) -> list[dict[str, Any]]:
    """The cells already recorded; a grid recorded with other settings is refused (not mixed in)."""
    if not path.exists():
        return []
    old = json.loads(path.read_text())
    same = ("version", "dataset", "split", "profile", "finetune_iterations", "fractions", "base_iterations",
            "configs")
    diff = [k for k in same if old.get(k) != head[k]]
    if diff:
        raise SystemExit(f"record_grid: {path} was recorded with other {', '.join(diff)}. "
                         "Fix: pass the same arguments, or another --grid")
    return list(old["cells"])


def _write(path: Path, head: dict[str, Any], cells: list[dict[str, Any]]) -> None:
    order = {(s, k, c["id"]): i for i, (s, k, c) in
             enumerate((s, k, c) for s in head["seeds"] for k in head["shots"] for c in head["configs"])}
    cells.sort(key=lambda c: order.get((c["seed"], c["shots"], c["config"]), len(order)))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(head | {"cells": cells}, separators=(",", ":")).replace('{"shots"', '\n{"shots"')
                   + "\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
