"""Cost of DKAN's distillation: median time of one fine-tuning step, DKAN vs TFA.

    scripts/venv-run python scripts/bench_step.py [--profile cpu-quick] [--device cuda] [--steps 20]

Same student (frozen backbone, cosine head), same batch of real synthetic images, three variants:
  tfa            no teacher
  dkan           teacher + FKA + LKA, the frozen backbone computed once for both models
  dkan-2pass     the same with the teacher running its own backbone pass
Each variant runs in its own process (so peak memory is its own), with warm-up steps first.
Prints a table and writes JSON. Target: dkan / tfa <= 1.10.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ("tfa", "dkan", "dkan-2pass")


def run_variant(variant: str, profile: str, device: str, steps: int, warmup: int, batch: int, data: str) -> dict:
    import torch

    from dkan.config import DistillConfig
    from dkan.data.dataset import DetectionDataset, build_transforms, collate
    from dkan.data.prepared import PreparedData
    from dkan.distill.step import freeze, train_step, weighted_total
    from dkan.model.checkpoint import load_base_into
    from dkan.model.detector import build_detector
    from dkan.profiles import base_config, finetune_config

    torch.manual_seed(0)
    dev = torch.device(device)
    data_ = PreparedData.load(Path(data))
    classes = data_.classes
    teacher = freeze(build_detector(base_config(profile).model, 3)).to(dev)
    student = build_detector(finetune_config(profile).model, len(classes))
    load_base_into(student, teacher.state_dict(), 3, torch.Generator().manual_seed(0))
    freeze(student.backbone.body)
    student.to(dev).train()
    student.backbone.body.eval()
    ds = DetectionDataset(data_.records(data_.split("train")), classes, build_transforms(train=False))
    images, targets = collate([ds[i] for i in range(batch)])
    images = [im.to(dev) for im in images]
    targets = [{"boxes": t["boxes"].to(dev), "labels": t["labels"].to(dev)} for t in targets]
    opt = torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    distill = DistillConfig()
    use_teacher = teacher if variant != "tfa" else None
    share = {"tfa": None, "dkan": True, "dkan-2pass": False}[variant]
    times = []
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i in range(warmup + steps):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        losses = train_step(student, images, targets, use_teacher, 3, distill, share_backbone=share)
        opt.zero_grad(set_to_none=True)
        weighted_total(losses, distill).backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if dev.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return {
        "variant": variant,
        "median_s": statistics.median(times),
        "p90_s": sorted(times)[int(0.9 * (len(times) - 1))],
        "peak_mem_mib": round(peak, 1),
        "mem_kind": "cuda max allocated" if dev.type == "cuda" else "process peak RSS",
        "steps": steps,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="cpu-quick", choices=["cpu-quick", "paper"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument(
        "--data", default="data/synthetic", help="prepared dataset for the batch (synthetic made if missing)"
    )
    p.add_argument("--out", default="runs/bench_step")
    p.add_argument("--only", choices=VARIANTS, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.only:
        print(json.dumps(run_variant(a.only, a.profile, a.device, a.steps, a.warmup, a.batch, a.data)))
        return
    if not Path(a.data, "dataset.yaml").exists():
        from dkan.data.prepare import PrepareConfig, prepare_data

        prepare_data(PrepareConfig(out=a.data, synthetic=True))
    rows = []
    for v in VARIANTS:
        cmd = [
            sys.executable, __file__,
            "--only",
            v,
            *sum(
                ([f"--{k}", str(getattr(a, k))] for k in ("profile", "device", "steps", "warmup", "batch", "data")), []
            ),
        ]
        print(f"running {v} ({a.warmup} warm-up + {a.steps} timed steps)...", flush=True)
        rows.append(
            json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        )
    tfa = rows[0]["median_s"]
    print(f"\nprofile {a.profile}, device {a.device}, batch {a.batch}, {rows[0]['threads']} threads\n")
    print("| variant | median s/step | p90 s/step | ratio vs tfa | peak memory (MiB) |\n|---|---|---|---|---|")
    for r in rows:
        r["ratio_vs_tfa"] = round(r["median_s"] / tfa, 3)
        print(
            f"| {r['variant']} | {r['median_s']:.3f} | {r['p90_s']:.3f} | {r['ratio_vs_tfa']:.3f} "
            f"| {r['peak_mem_mib']:.0f} |"
        )
    Path(a.out).mkdir(parents=True, exist_ok=True)
    out = Path(a.out) / f"bench_step_{a.profile}_{a.device.replace(':', '')}.json"
    out.write_text(json.dumps({"profile": a.profile, "device": a.device, "batch": a.batch, "rows": rows}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
