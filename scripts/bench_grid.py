"""What a recorded grid (``scripts/record_grid.py``) holds: each config's val and test AP_all over seeds.

    python scripts/bench_grid.py --grid benchmarks/data/neu_det_grid.json --expect-dataset neu-det \\
        --out runs/bench_grid.json --plot runs/bench_grid.png

Per K, on the seeds every config holds: a markdown table (configs by val mean; val and test AP_all mean ± sd in
points; each config's paired test difference from the authors' defaults with its 95% interval), how well the
15- and 30-iteration scores rank the configs as the full length does (Spearman per seed), and with ``--plot``
one picture (a panel per K: each config's val and test mean with its 95% interval). Writes the JSON atomically.
No Ray; a few seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dkan.runfolder import write_json
from sweeps.core.grid import GridError, load_grid, parse_grid, synthetic_grid
from sweeps.core.grid_summary import grid_table, summarize_grid


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", help="a grid JSON written by scripts/record_grid.py")
    p.add_argument("--synthetic", action="store_true", help="describe the synthetic grid the tests replay")
    p.add_argument("--expect-dataset", help="refuse a grid recorded on another data set")
    p.add_argument("--out", default="runs/bench_grid.json")
    p.add_argument("--plot", help="a PNG: per K, each config's val and test AP_all with its 95%% interval")
    a = p.parse_args(argv)
    try:
        if a.synthetic == bool(a.grid):
            raise GridError("pass --grid PATH or --synthetic (one of them). Fix: e.g. --grid "
                            "benchmarks/data/neu_det_grid.json")
        grid = (parse_grid(synthetic_grid(), "synthetic", a.expect_dataset) if a.synthetic
                else load_grid(Path(a.grid), a.expect_dataset))
        if not any(grid.seeds.values()):
            raise GridError(f"{grid.source}: no seed is complete for any K (every config at every rung). "
                            "Fix: let scripts/record_grid.py finish a seed first")
    except GridError as e:
        print(f"bench_grid: {e}", file=sys.stderr)
        return 2
    t0 = time.time()
    summary = summarize_grid(grid)
    print(f"{grid.source}: data set {grid.dataset}, {len(grid.fixed)} fixed + {len(grid.points)} points, "
          f"rungs {list(grid.rungs)}\n")
    print(grid_table(summary))
    if a.plot:
        from sweeps.outputs.plots import plot_grid_configs  # matplotlib only when a picture is asked for

        plot_grid_configs(summary, title=f"{grid.dataset}: val and test AP_all of each config", path=Path(a.plot))
        print(f"wrote {a.plot}")
    doc = {"command": "python scripts/bench_grid.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "date": time.strftime("%Y-%m-%d"), "grid": grid.source, "dataset": grid.dataset,
           "rungs": list(grid.rungs), "seconds": round(time.time() - t0, 1), "by_k": summary}
    write_json(Path(a.out), doc)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
