"""Real NEU-DET: base model AP_B, then TFA vs DKAN at K shots over seeds (on test).

    scripts/venv-run dkan prepare-data --source ../shared/datasets/NEU-DET \
        --split-json ../shared/datasets/NEU-DET/reference-split --out data/neu-det
    scripts/venv-run python scripts/bench_neu_det.py --data data/neu-det --shots 5 --seeds 1-3

Reuses OUT/base/model_final.pt when present (delete it to retrain). Each fine-tune's outputs
stay under OUT/<method>_<K>shot_seed<S>/. Prints the paper-shaped table, writes JSON + markdown.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dkan.cli import parse_int_list
from dkan.config import DataConfig, apply_overrides
from dkan.engine.train import fit
from dkan.evaluation.aggregate import aggregate_seeds, to_json, to_markdown
from dkan.profiles import base_config, finetune_config


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/neu-det")
    p.add_argument("--out", default="runs/neu_det")
    p.add_argument("--profile", default="cpu-quick", choices=["cpu-quick", "paper"])
    p.add_argument("--split", type=int, default=1)
    p.add_argument("--shots", type=parse_int_list, default=[5])
    p.add_argument("--seeds", type=parse_int_list, default=[1, 2, 3])
    p.add_argument("--methods", default="tfa,dkan")
    p.add_argument("--base-set", action="append", default=[], metavar="KEY=VALUE", help="overrides for base training")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="overrides for every fine-tune")
    a = p.parse_args()
    out = Path(a.out)
    data = DataConfig(root=a.data, split=a.split)
    base = base_config(a.profile)
    base.data, base.out, base.eval_split = data, str(out / "base"), "test"
    base = apply_overrides(base, a.base_set)
    ckpt = out / "base" / "model_final.pt"
    if ckpt.exists():
        base_metrics = json.loads((out / "base" / "metrics.json").read_text())
        print(f"reusing {ckpt}")
    else:
        base_metrics = fit(base)
    table = {"base model": aggregate_seeds({0: base_metrics})}
    results: dict = {"base": base_metrics, "finetune": {}}
    for k in a.shots:
        for method in a.methods.split(","):
            per_seed = {}
            for seed in a.seeds:
                cfg = finetune_config(a.profile)
                cfg.data, cfg.base_checkpoint, cfg.shots, cfg.fewshot_seed = data, str(ckpt), k, seed
                cfg.distill.method, cfg.eval_split, cfg.out = method, "test", str(out / f"{method}_{k}shot_seed{seed}")
                cfg = apply_overrides(cfg, a.set)
                done = Path(cfg.out) / "metrics.json"
                per_seed[seed] = json.loads(done.read_text()) if done.exists() and (Path(cfg.out) / "model_final.pt").exists() else fit(cfg)
                print(f"{method} K={k} seed {seed}: AP_base {per_seed[seed]['AP_base']:.3f}  AP_novel {per_seed[seed]['AP_novel']:.3f}  AP_all {per_seed[seed]['AP_all']:.3f}", flush=True)
            table[f"{method.upper()} {k}-shot"] = aggregate_seeds(per_seed)
            results["finetune"][f"{method}_{k}"] = per_seed
    metrics = ["AP_base", "AP_novel", "AP_all"] + [m for m in list(table.values())[-1] if m.startswith("AP/")]
    md = to_markdown(table, metrics)
    print(f"\nNEU-DET split {a.split}, test set, profile {a.profile}, seeds {a.seeds} (AP50 in points, mean ± std over seeds)\n\n{md}")
    (out / "results.md").write_text(md + "\n")
    (out / "results.json").write_text(to_json({"table": table, "runs": results}))
    print(f"\nwrote {out / 'results.md'} and {out / 'results.json'}")


if __name__ == "__main__":
    main()
