"""What a sweep recommends, with and without the fine-tune learning rate in the search space.

    scripts/venv-run python scripts/bench_selection.py --data data/tiles320 --base pit,burr,stain --shots 5 \
        --seeds 1-5 --trials 4 --base-iterations 300 --finetune-iterations 50 --out runs/bench_selection_tiles

Two sweeps of one study each, sharing the base model (``--cache-dir OUT/cache``): ``default`` (the
default space: DKAN's distillation weights and temperatures) and ``lr`` (plus ``optim.lr``, log-uniform
over ``--lr-range``: then TFA and plain get their own search over it too). Per sweep: the recommended
candidate, test AP_all of every candidate (mean ± sd), the recommendation minus each other candidate
paired over seeds on test (mean, 95% CI, Wilcoxon p), the recommendation line and the wall time.
Prints a markdown table and writes ``OUT/bench_selection.json``. Extra arguments go to the sweep.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from sweeps.run_tune import main as sweep


def run(variant: str, out: Path, passthrough: list[str], lr_range: tuple[float, float]) -> dict:
    args = [*passthrough, "--out", str(out / variant), "--cache-dir", str(out / "cache")]
    if variant == "lr":
        space = out / "lr_space.yaml"
        space.write_text(f"optim.lr: {{low: {lr_range[0]}, high: {lr_range[1]}, log: true}}\n")
        args += ["--search-space", str(space)]
    t = time.time()
    rc = sweep(args)
    wall = time.time() - t
    if rc != 0:
        raise SystemExit(f"{variant}: the sweep exited with {rc}")
    [path] = [p for p in (out / variant / "results").glob("*.json") if not p.name.endswith("_per_class_ap.json")]
    r = json.loads(path.read_text())
    rows = {row: {"mean": agg["AP_all"]["mean"], "std": agg["AP_all"]["std"]} for row, agg in r["table"].items()}
    return {"variant": variant, "wall_min": round(wall / 60, 1), "recommendation": r["recommendation"],
            "test_AP_all": rows, "paired_on_test": r["stats"], "val": r["candidates"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench_selection")
    p.add_argument("--lr-range", type=float, nargs=2, default=(0.002, 0.05), metavar=("LOW", "HIGH"))
    p.add_argument("--variants", default="default,lr")
    a, passthrough = p.parse_known_args()
    out = Path(a.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    results = [run(v, out, passthrough, tuple(a.lr_range)) for v in a.variants.split(",")]
    print("\n| space | recommended | test AP_all: TFA / plain / defaults / tuned | recommended minus the others "
          "on test (95% CI, p) | wall |\n|---|---|---|---|---|")
    for r in results:
        t = r["test_AP_all"]

        def ap(prefix: str) -> str:
            row = next((v for k, v in t.items() if k.startswith(prefix)), None)
            return "n/a" if row is None else f"{row['mean'] * 100:.1f} ± {row['std'] * 100:.1f}"

        aps = " / ".join(ap(x) for x in ("TFA", "plain", "DKAN (authors'", "DKAN (tuned)"))
        diffs = "; ".join(f"{k.split('_vs_')[1]} {d['mean_diff'] * 100:+.1f} ({d['ci95_low'] * 100:.1f} to "
                          f"{d['ci95_high'] * 100:.1f}, p {d['p_value']:.2g})" for k, d in r["paired_on_test"].items())
        print(f"| {r['variant']} | {r['recommendation']['candidate']} | {aps} | {diffs} | {r['wall_min']} min |")
    for r in results:
        print(f"\n{r['variant']}: {r['recommendation']['line']}")
    (out / "bench_selection.json").write_text(json.dumps(results, indent=2, allow_nan=True))
    print(f"\nwrote {out / 'bench_selection.json'}")


if __name__ == "__main__":
    main()
