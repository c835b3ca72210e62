"""Is the synthetic set learnable? Base-train the cpu-quick detector from scratch on all six
synthetic classes and report test AP50 per class.

    scripts/venv-run python scripts/bench_synthetic.py --iterations 300 --out runs/bench_synthetic

Prepares the synthetic set (cached under --data) and runs the same `fit()` as `dkan base-train`
(cpu-quick profile, every class as a base class). Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from dkan.config import DataConfig, apply_overrides
from dkan.data.prepare import PrepareConfig, prepare_data
from dkan.data.prepared import PreparedData
from dkan.engine.train import fit
from dkan.profiles import base_config


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/synthetic", help="prepared synthetic dataset (made if missing)")
    p.add_argument("--out", default="runs/bench_synthetic")
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    args = p.parse_args()
    if not Path(args.data, "dataset.yaml").exists():
        prepare_data(PrepareConfig(out=args.data, synthetic=True))
    classes = list(PreparedData.load(Path(args.data)).classes)
    cfg = base_config("cpu-quick")
    cfg.data = DataConfig(root=args.data, split=None, base=classes, novel=[])
    cfg.out, cfg.eval_split = str(Path(args.out) / "run"), "test"
    cfg.optim = cfg.optim.rescaled(args.iterations)
    cfg = apply_overrides(cfg, args.set)
    m = fit(cfg)
    print("\n| class | AP50 (test) |\n|---|---|")
    for c in classes:
        print(f"| {c} | {m['AP/' + c]:.3f} |")
    print(f"| **mean** | **{m['AP_all']:.3f}** |")
    print(
        f"\n{m['iterations']} iterations x batch {cfg.optim.batch_size} in {m['train_seconds']:.0f} s "
        f"({m['s_per_iter']} s/iteration), {torch.get_num_threads()} threads, {platform.machine()}"
    )
    result = {
        "metrics": m,
        "iterations": args.iterations,
        "batch_size": cfg.optim.batch_size,
        "profile": "cpu-quick",
        "threads": torch.get_num_threads(),
    }
    (Path(args.out) / "bench_synthetic.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {Path(args.out) / 'bench_synthetic.json'}")


if __name__ == "__main__":
    main()
