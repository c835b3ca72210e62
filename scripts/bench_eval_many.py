"""Evaluating many checkpoints of one base model: one at a time against together in one pass.

    python scripts/bench_eval_many.py CHECKPOINT... [--split test] [--threads 2] [--json bench_eval_many.json]

``alone``: each checkpoint by itself, as the test phase ran before; ``together``: all of them in one pass
over the images, as a test-phase worker runs its group now (``dkan.engine.evaluate_many``: each stage whose
weights two checkpoints share, the frozen body for all of them and everything up to the last layer for the
base model and TFA, runs once per batch). The AP of each must be the same. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path


def main() -> None:
    import torch

    from dkan.engine.evaluate_checkpoint import evaluate_checkpoint, evaluate_checkpoints
    from dkan.model.checkpoint import load_checkpoint

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--split", default="test")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default="bench_eval_many.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    kinds = Counter(_kind(load_checkpoint(Path(c))["meta"]) for c in a.checkpoints)
    print(f"{len(a.checkpoints)} checkpoints: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
    t0, alone = time.time(), []
    for ckpt in a.checkpoints:
        t = time.time()
        m = evaluate_checkpoint(Path(ckpt), a.split, device="cpu")
        alone.append({"checkpoint": ckpt, "seconds": round(time.time() - t, 2), "AP_all": m["AP_all"]})
    alone_s = round(time.time() - t0, 1)
    t0 = time.time()
    together = evaluate_checkpoints([Path(c) for c in a.checkpoints], a.split, device="cpu")
    together_s = round(time.time() - t0, 1)
    same = all(x["AP_all"] == y["AP_all"] for x, y in zip(alone, together))
    speedup = alone_s / together_s
    print(f"{'mode':9} {'seconds':>8}  per checkpoint")
    print(f"{'alone':9} {alone_s:8.1f}  {', '.join(str(r['seconds']) for r in alone)}")
    print(f"{'together':9} {together_s:8.1f}  {together_s / len(a.checkpoints):.1f} on average")
    print(f"speedup {speedup:.2f}x; AP identical: {same}")
    Path(a.json).write_text(json.dumps({"kinds": kinds, "alone": {"seconds": alone_s, "rows": alone},
                                        "together": {"seconds": together_s}, "speedup": round(speedup, 2),
                                        "ap_identical": same}, indent=2))
    print(f"wrote {a.json}")


def _kind(meta: dict) -> str:
    if meta.get("stage") != "finetune":
        return "base"
    return str(meta["config"].get("distill", {}).get("method", "finetune"))


if __name__ == "__main__":
    main()
