"""Search strategies replayed on a recorded grid (``scripts/record_grid.py``): what each spends and what it ships.

    python scripts/bench_strategies.py --grid benchmarks/data/neu_det_grid.json --expect-dataset neu-det \\
        --replays 200 --out runs/bench_strategies.json
    python scripts/bench_strategies.py --self-check   # a synthetic grid with a known best config

No Ray starts: each strategy (``sweeps.core.strategy_replay.STRATEGIES``) runs one study per K of the grid on
``--replays`` bootstrap replays (each K's seeds drawn with replacement from the recorded ones, the DKAN points
met in a random order; the fixed candidates always there), under each selection rule (ci95 and se1, the sweep's
--select-rule; the one-standard-error rule; confirmation on held-back seeds). Per strategy x rule, over replays and K:
fine-tune iterations spent (and x images per iteration), the ratio of "every config on every seed at full
length" to it, how often the recommendation equals the one the full budget makes on the same replay under the
same rule (and under ci95), the test regret (the best config on test minus the recommendation, mean over
the replay's seeds, AP_all points), the same against the full budget's recommendation, and how often another
candidate beats the shipped one on test (paired over the replay's seeds, 95% t interval above 0).
Prints a markdown table; writes the JSON at the end (atomically).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from dkan.runfolder import write_json
from sweeps.core.grid import GridError, load_grid, parse_grid, synthetic_grid
from sweeps.core.strategy_replay import RULES, STRATEGIES, check, draw, full_cost, judge, replay_once

TARGETS = {"ratio": 5.0, "agree": 0.9, "regret": 0.5}  # issue 28


def bench(grid, strategies, rules: list[str], replays: int, seed: int, n_seeds: int | None,
          n_points: int | None = None) -> dict[str, Any]:
    """Every strategy x rule on the same ``replays`` bootstrap draws; per-row means over replays and K."""
    full = STRATEGIES["full"]
    rng = random.Random(seed)
    acc: dict[tuple[str, str], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for _ in range(replays):
        rep = draw(grid, rng, n_seeds, n_points)
        ref = {rule: replay_once(grid, full, rule, rep) for rule in set(rules) | {"ci95"}}
        cost = full_cost(grid, rep)
        for st in strategies:
            for rule in rules:
                res = ref[rule] if st.name == "full" else replay_once(grid, st, rule, rep)
                a = acc[(st.name, rule)]
                a["iterations"].append(sum(r.iterations for r in res))
                a["full_cost"].append(cost)
                for r, mine, ci95 in zip(res, ref[rule], ref["ci95"]):
                    j = judge(grid, r, mine, rep.slots[r.k])
                    for key in ("regret", "vs_reference", "same", "significantly_worse"):
                        a[key].append(j[key])
                    a["same_as_full_ci95"].append(r.recommended == ci95.recommended)
                    a[f"recommended_K{r.k}"].append(r.recommended)
                    a[f"K{r.k}"].append((j["same"], j["regret"], j["significantly_worse"], r.iterations))
    rows = []
    for (name, rule), a in acc.items():
        it, fc = _mean(a["iterations"]), _mean(a["full_cost"])
        recs = {k: _counts(v) for k, v in a.items() if k.startswith("recommended_")}
        per_k = {str(k): dict(zip(("agree", "regret", "significantly_worse", "iterations"),
                                  (_mean([x[i] for x in a[f"K{k}"]]) for i in range(4)))) for k in grid.shots}
        rows.append({"strategy": name, "rule": rule, "iterations": it, "images": it * grid.images_per_iteration,
                     "ratio": fc / it, "agree": _mean(a["same"]), "agree_full_ci95": _mean(a["same_as_full_ci95"]),
                     "regret": _mean(a["regret"]), "regret_p90": _quantile(a["regret"], 0.9),
                     "vs_full": _mean(a["vs_reference"]), "significantly_worse": _mean(a["significantly_worse"]),
                     "per_k": per_k, "recommended": recs})
    return {"rows": rows}


def _mean(v: list) -> float:
    return sum(float(x) for x in v) / len(v)


def _quantile(v: list[float], q: float) -> float:
    s = sorted(v)
    return s[min(len(s) - 1, int(q * len(s)))]


def _counts(v: list[str]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for x in v:
        out[x] += 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def meets(row: dict[str, Any]) -> bool:
    return (row["ratio"] >= TARGETS["ratio"] and row["agree"] >= TARGETS["agree"]
            and row["regret"] <= TARGETS["regret"])


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| strategy | rule | iterations | x images | ratio | same as full | same as full/ci95 | test regret "
            "(p90) | vs full | sig. worse on test | targets |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        lines.append(f"| {r['strategy']} | {r['rule']} | {r['iterations']:.0f} | {r['images']:.0f} | "
                     f"{r['ratio']:.2f}x | {r['agree']:.0%} | {r['agree_full_ci95']:.0%} | {r['regret']:.2f} "
                     f"({r['regret_p90']:.2f}) | {r['vs_full']:+.2f} | {r['significantly_worse']:.0%} | "
                     f"{'met' if meets(r) else '-'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", help="a grid JSON written by scripts/record_grid.py")
    p.add_argument("--self-check", action="store_true", help="replay a synthetic grid with a known best config")
    p.add_argument("--expect-dataset", help="refuse a grid recorded on another data set")
    p.add_argument("--replays", type=int, default=200)
    p.add_argument("--strategies", default=",".join(STRATEGIES), help=f"comma-separated of {', '.join(STRATEGIES)}")
    p.add_argument("--rules", default=",".join(RULES), help=f"comma-separated of {', '.join(RULES)}")
    p.add_argument("--grace", type=int, help="grace seeds of every strategy (default: each strategy's, 3)")
    p.add_argument("--alpha", type=float, help="one-sided level of the paired test of every strategy that races or "
                   "pairs (default: each strategy's, 0.1; the sweep's --paired-alpha)")
    p.add_argument("--seeds", type=int, help="seeds per replay (default: the grid's complete seeds per K)")
    p.add_argument("--points", type=int, help="DKAN points a study's search meets (default: all recorded; the "
                   "sweep's --trials 12 searches 11 besides the authors' defaults)")
    p.add_argument("--seed", type=int, default=0, help="the bootstrap's random seed")
    p.add_argument("--out", default="runs/bench_strategies.json")
    a = p.parse_args(argv)
    try:
        if a.self_check and a.points:
            raise GridError("--self-check checks that the full budget finds the known best point: every point must be "
                            "met. Fix: leave out --points")
        if a.self_check == bool(a.grid):
            raise GridError("pass --grid PATH or --self-check (one of them). Fix: e.g. --grid "
                            "benchmarks/data/neu_det_grid.json")
        if a.replays < 1 or (a.seeds is not None and a.seeds < 2) or (a.grace is not None and a.grace < 1) or \
                (a.points is not None and a.points < 1):
            raise GridError("--replays, --seeds (at least 2), --grace and --points must be positive. Fix: e.g. "
                            "--replays 200")
        if a.alpha is not None and not 0 < a.alpha < 1:
            raise GridError(f"--alpha {a.alpha}: a level in (0, 1). Fix: e.g. --alpha 0.1")
        grid = (parse_grid(synthetic_grid(), "synthetic", a.expect_dataset) if a.self_check
                else load_grid(Path(a.grid), a.expect_dataset))
        names = [n for n in a.strategies.split(",") if n]
        rules = [r for r in a.rules.split(",") if r]
        strategies = check(grid, names, rules, a.seeds, a.grace, a.alpha)
        if a.points is not None and a.points > len(grid.points):
            raise GridError(f"--points {a.points}: the grid holds {len(grid.points)} DKAN points. Fix: at most that")
    except GridError as e:
        print(f"bench_strategies: {e}", file=sys.stderr)
        return 2
    t0 = time.time()
    print(f"{grid.source}: data set {grid.dataset}, K {list(grid.shots)}, complete seeds "
          f"{ {k: len(v) for k, v in grid.seeds.items()} }, {len(grid.fixed)} fixed + {len(grid.points)} points, "
          f"rungs {list(grid.rungs)}; {a.replays} replays", flush=True)
    out = bench(grid, strategies, rules, a.replays, a.seed, a.seeds, a.points)
    print(table(out["rows"]))
    doc = {"command": "python scripts/bench_strategies.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "date": time.strftime("%Y-%m-%d"), "grid": grid.source, "dataset": grid.dataset, "shots": list(grid.shots),
           "seeds": {str(k): list(v) for k, v in grid.seeds.items()}, "rungs": list(grid.rungs),
           "replays": a.replays, "points_per_search": a.points or len(grid.points),
           "strategies": {s.name: s.about for s in strategies}, "targets": TARGETS,
           "seconds": round(time.time() - t0, 1), **out}
    write_json(Path(a.out), doc)
    print(f"wrote {a.out} ({doc['seconds']:.0f} s)")
    ref = next((r for r in out["rows"] if r["strategy"] == "full" and r["rule"] == "ci95"), None)
    if a.self_check and ref is not None:
        found = sum(v.get("p03", 0) for v in ref["recommended"].values()) / (a.replays * len(grid.shots))
        if found < 0.9:
            print(f"self-check failed: the full budget recommends the known best p03 in {found:.0%} of the replays",
                  file=sys.stderr)
            return 1
        print(f"self-check: the full budget recommends the known best p03 in {found:.0%} of the replays")
    return 0


if __name__ == "__main__":
    sys.exit(main())
