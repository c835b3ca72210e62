"""Evaluating many checkpoints of one base model: one at a time against together (the body once per image).

    python scripts/bench_eval_many.py CHECKPOINT... [--split test] [--threads 2] [--json bench_eval_many.json]

``alone``: each checkpoint in a fresh process state (the eval feature cache emptied before each), as the
test phase ran before; ``together``: one after another in one process, as a test-phase worker runs its
group now (``dkan.distill.cache.eval_cache``: the frozen body's features of each test image computed once
for every checkpoint of the base model). The AP of each must be the same. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    import torch

    from dkan.distill.cache import reset_eval_cache
    from dkan.engine.evaluate_checkpoint import evaluate_checkpoint

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--split", default="test")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default="bench_eval_many.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    runs = {}
    for mode in ("alone", "together"):
        reset_eval_cache()
        t0, rows = time.time(), []
        for ckpt in a.checkpoints:
            if mode == "alone":
                reset_eval_cache()
            t = time.time()
            m = evaluate_checkpoint(Path(ckpt), a.split, device="cpu")
            rows.append({"checkpoint": ckpt, "seconds": round(time.time() - t, 2), "AP_all": m["AP_all"]})
        runs[mode] = {"seconds": round(time.time() - t0, 1), "rows": rows}
        print(f"{mode:9} {runs[mode]['seconds']:7.1f} s for {len(rows)} checkpoints "
              f"({', '.join(str(r['seconds']) for r in rows)})", flush=True)
    same = all(x["AP_all"] == y["AP_all"] for x, y in zip(runs["alone"]["rows"], runs["together"]["rows"]))
    speedup = runs["alone"]["seconds"] / runs["together"]["seconds"]
    print(f"speedup {speedup:.2f}x; AP identical: {same}")
    Path(a.json).write_text(json.dumps({"runs": runs, "speedup": speedup, "ap_identical": same}, indent=2))
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
