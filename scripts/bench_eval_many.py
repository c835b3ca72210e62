"""Evaluating many checkpoints of one base model: one at a time against together in one pass.

    python scripts/bench_eval_many.py CHECKPOINT... [--split test] [--threads 2] [--groups 2] [--json FILE]

``alone``: each checkpoint by itself, as the test phase ran before; ``together``: all of them in one pass
over the images (``dkan.engine.evaluate_many``: each stage whose weights two checkpoints share, the frozen
body for all of them and everything up to the last layer for the base model and TFA, runs once per batch);
``in N groups``: as the test phase packs them for N groups at once (``sweeps.shell.testphase.pack``), one pass per
group, the groups one after another here (their sum is the CPU time). The AP of each must be the same.
Prints a table and writes JSON.
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
    ap.add_argument("--groups", type=int, default=2)
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
    t0, grouped = time.time(), {}
    for group in _packed(a.checkpoints, a.groups):
        for c, m in zip(group, evaluate_checkpoints([Path(c) for c in group], a.split, device="cpu")):
            grouped[c] = m
    grouped_s = round(time.time() - t0, 1)
    same = all(x["AP_all"] == y["AP_all"] == grouped[x["checkpoint"]]["AP_all"] for x, y in zip(alone, together))
    print(f"{'mode':12} {'seconds':>8} {'speedup':>8}")
    for name, sec in (("alone", alone_s), ("together", together_s), (f"in {a.groups} groups", grouped_s)):
        print(f"{name:12} {sec:8.1f} {alone_s / sec:7.2f}x")
    print(f"alone, per checkpoint: {', '.join(str(r['seconds']) for r in alone)}; AP identical: {same}")
    Path(a.json).write_text(json.dumps({"kinds": kinds, "alone": {"seconds": alone_s, "rows": alone},
                                        "together": {"seconds": together_s},
                                        "groups": {"n": a.groups, "seconds": grouped_s},
                                        "speedup": round(alone_s / together_s, 2),
                                        "speedup_groups": round(alone_s / grouped_s, 2), "ap_identical": same},
                                       indent=2))
    print(f"wrote {a.json}")


def _packed(checkpoints: list[str], groups: int) -> list[list[str]]:
    from dkan.config import FinetuneConfig
    from dkan.model.checkpoint import load_checkpoint
    from sweeps.core.jobspec import SeedJob
    from sweeps.shell.testphase import pack

    jobs = [SeedJob(_kind(load_checkpoint(Path(c))["meta"]), i, FinetuneConfig(), reuse=c)
            for i, c in enumerate(checkpoints)]
    return [[j.reuse for j in g] for g in pack(jobs, groups)]


def _kind(meta: dict) -> str:
    if meta.get("stage") != "finetune":
        return "base"
    return str(meta["config"].get("distill", {}).get("method", "finetune"))


if __name__ == "__main__":
    main()
