"""One seed job (fine-tune + val evaluation) with the frozen-feature caches off and on.

    python scripts/bench_seed_job.py --data data/neu-det [--base-checkpoint runs/neu_det/base/model_final.pt]
        [--method dkan] [--shots 5] [--iterations N] [--threads 2] [--out runs/bench_seed_job]

cpu-quick profile, split 1, K = ``--shots``, the profile's fine-tune iterations (or ``--iterations``),
then evaluation on val, as a sweep's seed job runs it. Two processes:
  off   cache_mb=0: every step recomputes the frozen body (and the teacher's FPN), as before
  on    the same seed job twice in one process: ``on-cold`` is a worker's first seed (training cache
        filled as it goes, val body features computed and kept), ``on-warm`` the next seed of the same
        worker (val body features reused: a trial's seeds share their worker process)
``speedup`` = off / on-warm wall time (the sweep's steady state), ``speedup_cold`` = off / on-cold;
the AP of each shows the results do not change. Without the base checkpoint a short base model is
trained into ``--base-out`` first (its AP is low; the timings do not depend on it). Prints a table and
writes JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

AP_KEYS = ("AP_all", "AP_base", "AP_novel")


def seed_job(a: argparse.Namespace, cache_mb: int, out: Path) -> dict:
    from dkan.config import DataConfig
    from dkan.engine.train import fit
    from dkan.profiles import finetune_config

    cfg = finetune_config("cpu-quick", split=1)
    cfg.data = DataConfig(root=a.data, split=1, hflip=cfg.data.hflip, vflip=cfg.data.vflip)
    cfg.distill.method = a.method
    cfg.base_checkpoint, cfg.shots, cfg.fewshot_seed = a.base_checkpoint, a.shots, a.fewshot_seed
    cfg.out, cfg.cache_mb, cfg.threads, cfg.device, cfg.checkpoint_every = str(out), cache_mb, a.threads, "cpu", 0
    if a.iterations:
        cfg.optim = cfg.optim.rescaled(a.iterations)
    t = time.perf_counter()
    m = fit(cfg, progress=False)
    wall = time.perf_counter() - t
    row = {"wall_s": round(wall, 2), "train_s": m["train_seconds"], "eval_s": round(wall - m["train_seconds"], 2),
           "iterations": m["iterations"], **{k: m.get(k) for k in AP_KEYS}}
    cache_file = out / "cache.json"
    if cache_file.is_file():
        row["cache"] = json.loads(cache_file.read_text())
    return row


def run_mode(a: argparse.Namespace) -> list[dict]:
    out = Path(a.out)
    if a.only == "off":
        return [{"run": "off", **seed_job(a, 0, out / "off")}]
    cold = {"run": "on-cold", **seed_job(a, -1, out / "on-cold")}
    warm = {"run": "on-warm", **seed_job(a, -1, out / "on-warm")}  # same process: the val cache is warm
    return [cold, warm]


def ensure_base(a: argparse.Namespace) -> None:
    if Path(a.base_checkpoint).is_file():
        return
    from dkan.config import DataConfig
    from dkan.engine.train import fit
    from dkan.profiles import base_config

    cfg = base_config("cpu-quick")
    cfg.data = DataConfig(root=a.data, split=1)
    cfg.optim = cfg.optim.rescaled(a.base_iterations)
    cfg.out, cfg.threads, cfg.device, cfg.checkpoint_every = a.base_out, a.threads, "cpu", 0
    print(f"{a.base_checkpoint} not found: training a {a.base_iterations}-iteration base model into {a.base_out}")
    fit(cfg, progress=False)
    a.base_checkpoint = str(Path(a.base_out) / "model_final.pt")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/neu-det")
    p.add_argument("--base-checkpoint", default="runs/neu_det/base/model_final.pt")
    p.add_argument("--base-out", default="/tmp/dkan_bench_seed_base", help="where a short base model goes if needed")
    p.add_argument("--base-iterations", type=int, default=40)
    p.add_argument("--method", default="dkan", choices=["dkan", "tfa", "plain"])
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--fewshot-seed", type=int, default=1)
    p.add_argument("--iterations", type=int, default=0, help="fine-tune iterations (0: the profile's, 200)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="runs/bench_seed_job")
    p.add_argument("--only", choices=["off", "on"], help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.only:
        print(json.dumps(run_mode(a)))
        return
    ensure_base(a)
    rows = []
    for mode in ("off", "on"):
        print(f"running caches {mode}...", flush=True)
        cmd = [sys.executable, __file__, "--only", mode, "--data", a.data, "--base-checkpoint", a.base_checkpoint,
               "--method", a.method, "--shots", str(a.shots), "--fewshot-seed", str(a.fewshot_seed),
               "--iterations", str(a.iterations), "--threads", str(a.threads), "--out", a.out]
        run = subprocess.run(cmd, check=True, capture_output=True, text=True)
        rows += json.loads(run.stdout.strip().splitlines()[-1])
    by = {r["run"]: r for r in rows}
    print(f"\ncpu-quick, {a.method}, K = {a.shots}, few-shot seed {a.fewshot_seed}, {by['off']['iterations']} "
          f"iterations, {a.threads} threads\n")
    print("| run | wall s | train s | eval + setup s | AP_all | AP_base | AP_novel | train cache hits / misses |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        tc = (r.get("cache") or {}).get("train")
        hits = f"{tc['cache_hits']} / {tc['cache_misses']}" if tc else "-"
        aps = " | ".join(f"{r[k]:.4f}" if isinstance(r[k], float) else str(r[k]) for k in AP_KEYS)
        print(f"| {r['run']} | {r['wall_s']:.1f} | {r['train_s']:.1f} | {r['eval_s']:.1f} | {aps} | {hits} |")
    doc = {
        "method": a.method, "shots": a.shots, "fewshot_seed": a.fewshot_seed, "base_checkpoint": a.base_checkpoint,
        "speedup": round(by["off"]["wall_s"] / by["on-warm"]["wall_s"], 3),
        "speedup_cold": round(by["off"]["wall_s"] / by["on-cold"]["wall_s"], 3),
        "ap_off": {k: by["off"][k] for k in AP_KEYS}, "ap_on": {k: by["on-warm"][k] for k in AP_KEYS},
        "rows": rows,
    }
    print(f"\nspeedup (off / on-warm): {doc['speedup']}   speedup_cold (off / on-cold): {doc['speedup_cold']}")
    Path(a.out).mkdir(parents=True, exist_ok=True)
    path = Path(a.out) / f"bench_seed_job_{a.method}.json"
    path.write_text(json.dumps(doc, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
