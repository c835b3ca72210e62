"""A seed job in bf16 against fp32: AP and time, paired over seeds (the precision setting's measured effect).

    python scripts/bench_precision.py --data data/neu-det [--base-checkpoint runs/neu_det/base/model_final.pt]
        [--seeds 1-3] [--iterations N] [--method dkan] [--threads 2] [--out runs/bench_precision]

cpu-quick, split 1, K = ``--shots``: per seed the same fine-tune (then its evaluation on val) in fp32 and in
bf16 (``precision``), the order alternating per seed, the val feature cache emptied before each. Without
``--base-checkpoint`` a short base model is trained first (``--base-iterations``, fp32). Prints a table and
writes JSON; the checkpoints stay in ``--out`` (scripts/bench_eval_many.py evaluates them).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from dkan.names import parse_int_list

AP = ("AP_all", "AP_base", "AP_novel")


def seed_job(a: argparse.Namespace, seed: int, precision: str) -> dict:
    from dkan.config import DataConfig
    from dkan.distill.cache import reset_eval_cache
    from dkan.engine.train import fit
    from dkan.profiles import finetune_config

    cfg = finetune_config("cpu-quick", split=1)
    cfg.data = DataConfig(root=a.data, split=1, hflip=cfg.data.hflip, vflip=cfg.data.vflip)
    cfg.distill.method, cfg.base_checkpoint, cfg.shots, cfg.fewshot_seed = a.method, a.base_checkpoint, a.shots, seed
    cfg.out, cfg.threads, cfg.device, cfg.checkpoint_every = str(Path(a.out) / f"{precision}_seed{seed}"), a.threads, \
        "cpu", 0
    cfg.precision = precision
    if a.iterations:
        cfg.optim = cfg.optim.rescaled(a.iterations)
    reset_eval_cache()
    m = fit(cfg, progress=False)
    return {"seed": seed, "precision": precision, **{k: m[k] for k in AP}, "s_per_iter": m["s_per_iter"],
            "eval_s": round(m["fit_seconds"] - m["train_seconds"], 1), "wall_s": m["fit_seconds"]}


def base_model(a: argparse.Namespace) -> str:
    from dkan.config import DataConfig
    from dkan.engine.train import fit_once
    from dkan.profiles import base_config

    cfg = base_config("cpu-quick")
    cfg.data = DataConfig(root=a.data, split=1)
    cfg.out, cfg.threads, cfg.device, cfg.precision = str(Path(a.out) / "base"), a.threads, "cpu", "fp32"
    cfg.optim = cfg.optim.rescaled(a.base_iterations)
    fit_once(cfg, progress=True)
    return str(Path(cfg.out) / "model_final.pt")


def main() -> None:
    from dkan.evaluation.stats import paired

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--base-checkpoint")
    ap.add_argument("--base-iterations", type=int, default=300)
    ap.add_argument("--seeds", type=parse_int_list, default=[1, 2, 3])
    ap.add_argument("--iterations", type=int)
    ap.add_argument("--method", default="dkan")
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/bench_precision")
    ap.add_argument("--json", default="bench_precision.json")
    a = ap.parse_args()
    a.base_checkpoint = a.base_checkpoint or base_model(a)
    rows = []
    for i, seed in enumerate(a.seeds):
        for precision in (("fp32", "bf16") if i % 2 == 0 else ("bf16", "fp32")):
            rows.append(seed_job(a, seed, precision))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'precision':9} {'seed':>4} {'AP_all':>7} {'AP_base':>7} {'AP_novel':>8} {'s/iter':>7} {'eval s':>7}")
    for r in sorted(rows, key=lambda r: (r["precision"], r["seed"])):
        print(f"{r['precision']:9} {r['seed']:4} {r['AP_all'] * 100:7.1f} {r['AP_base'] * 100:7.1f} "
              f"{r['AP_novel'] * 100:8.1f} {r['s_per_iter']:7.3f} {r['eval_s']:7.1f}")
    by = {p: {r["seed"]: r for r in rows if r["precision"] == p} for p in ("fp32", "bf16")}
    summary = {}
    for k in (*AP, "s_per_iter", "eval_s"):
        d = paired({s: r[k] for s, r in by["bf16"].items()}, {s: r[k] for s, r in by["fp32"].items()})
        summary[k] = {"fp32": statistics.mean(r[k] for r in by["fp32"].values()),
                      "bf16": statistics.mean(r[k] for r in by["bf16"].values()), "bf16_minus_fp32": d}
        scale = 100 if k in AP else 1
        print(f"{k:10} fp32 {summary[k]['fp32'] * scale:.3f}  bf16 {summary[k]['bf16'] * scale:.3f}  bf16 - fp32 "
              f"{d['mean_diff'] * scale:+.3f} (95% CI {d['ci95_low'] * scale:.3f} to {d['ci95_high'] * scale:.3f}, "
              f"{d['n']} seeds)")
    Path(a.json).write_text(json.dumps({"rows": rows, "summary": summary, "args": vars(a)}, indent=2, default=str))
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
