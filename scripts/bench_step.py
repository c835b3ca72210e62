"""Cost of DKAN's distillation: median time of one fine-tuning step, DKAN vs TFA, caches off and on.

    python scripts/bench_step.py [--profile cpu-quick] [--device cuda] [--steps 20] [--variants ...]

Same base model, same batch of real synthetic images, one variant per process (so peak memory is
its own), warm-up steps first:
  tfa            TFA as the sweep runs it: only the box predictor trains, no teacher
  plain          DKAN's trainable parts (FPN, RPN, RoI head; body frozen), no teacher
  dkan           plain + teacher + FKA + LKA, the frozen body computed once for both models
  dkan-2pass     the same with the teacher running its own backbone pass
  *+cache        with the frozen-feature cache (dkan.distill.cache): the body (plain, dkan), the
                 teacher's FPN (dkan), body + FPN (tfa) come from memory. The batch repeats, so
                 after the warm-up every step hits: the steady state of a fine-tune, where each of
                 the few-shot set's views is computed once (30 images x <= 4 flips at 5-shot).
The paper profile is timed at one input size (800, its test scale) with random weights (none can
be downloaded here): each of its six training scales has its own cache entries, warm after its
first visit. ``ratio`` = dkan+cache / tfa+cache (target <= 1.10). Prints a table and writes JSON.
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

VARIANTS = ("tfa", "plain", "dkan", "dkan-2pass", "tfa+cache", "plain+cache", "dkan+cache")


def run_variant(variant: str, profile: str, device: str, steps: int, warmup: int, batch: int, data: str) -> dict:
    import torch

    from dkan.config import DistillConfig
    from dkan.data.dataset import DetectionDataset, build_transforms, collate
    from dkan.data.prepared import PreparedData
    from dkan.distill.cache import FeatureCache, image_key
    from dkan.distill.features import DIRECT, CachedFeatures, DirectFeatures
    from dkan.distill.step import freeze, train_step, weighted_total
    from dkan.engine.setup import freeze_for_method, set_train_mode
    from dkan.model.checkpoint import load_base_into
    from dkan.model.detector import build_detector
    from dkan.profiles import base_config, finetune_config

    torch.manual_seed(0)
    dev = torch.device(device)
    method, _, use_cache = variant.partition("+")
    method = "dkan" if method == "dkan-2pass" else method
    data_ = PreparedData.load(Path(data))
    classes = data_.classes
    base_model, ft_model = base_config(profile).model, finetune_config(profile).model
    base_model.train_min_sizes = ft_model.train_min_sizes = []  # one input size (see the docstring)
    teacher = freeze(build_detector(base_model, 3, pretrained=False)).to(dev)
    student = build_detector(ft_model, len(classes), pretrained=False)
    load_base_into(student, teacher.state_dict(), 3, torch.Generator().manual_seed(0))
    freeze_for_method(student, method)
    student.to(dev)
    set_train_mode(student)
    ds = DetectionDataset(data_.records(data_.split("train")), classes, build_transforms(train=False))
    images, targets = collate([ds[i] for i in range(batch)])
    keys = [image_key(im) for im in images]
    images = [im.to(dev) for im in images]
    targets = [{"boxes": t["boxes"].to(dev), "labels": t["labels"].to(dev)} for t in targets]
    opt = torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    distill = DistillConfig()
    use_teacher = teacher if method == "dkan" else None
    cache = FeatureCache(2**40) if use_cache else None
    features = CachedFeatures(cache, keys) if cache is not None else DIRECT

    class TwoPasses(DirectFeatures):
        """The teacher's own backbone pass instead of its FPN on the student's body (what sharing saves)."""

        def frozen(self, kind, part, images, inputs=None):
            return teacher.backbone(images.tensors) if kind == "teacher" else super().frozen(kind, part, images, inputs)

    if variant == "dkan-2pass":
        features = TwoPasses()
    times = []
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i in range(warmup + steps):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        losses = train_step(student, images, targets, use_teacher, 3, distill, features)
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
        **(cache.stats.as_metrics() if cache is not None else {}),
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
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {VARIANTS}")
    p.add_argument("--only", choices=VARIANTS, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.only:
        print(json.dumps(run_variant(a.only, a.profile, a.device, a.steps, a.warmup, a.batch, a.data)))
        return
    if not Path(a.data, "dataset.yaml").exists():
        from dkan.data.prepare import PrepareConfig, prepare_data

        prepare_data(PrepareConfig(out=a.data, synthetic=True))
    variants = [v for v in a.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        p.error(f"--variants: unknown {unknown}; choose from {VARIANTS}")
    rows = []
    for v in variants:
        cmd = [
            sys.executable, __file__, "--only", v,
            *sum(([f"--{k}", str(getattr(a, k))] for k in ("profile", "device", "steps", "warmup", "batch", "data")),
                 []),
        ]
        print(f"running {v} ({a.warmup} warm-up + {a.steps} timed steps)...", flush=True)
        run = subprocess.run(cmd, check=True, capture_output=True, text=True)
        rows.append(json.loads(run.stdout.strip().splitlines()[-1]))
    by = {r["variant"]: r for r in rows}
    ref = by.get("tfa", rows[0])["median_s"]
    print(f"\nprofile {a.profile}, device {a.device}, batch {a.batch}, {rows[0]['threads']} threads\n")
    print("| variant | median s/step | p90 s/step | vs tfa | cache hits / misses | peak memory (MiB) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        r["ratio_vs_tfa"] = round(r["median_s"] / ref, 3)
        hits = f"{r['cache_hits']} / {r['cache_misses']}" if "cache_hits" in r else "-"
        print(f"| {r['variant']} | {r['median_s']:.3f} | {r['p90_s']:.3f} | {r['ratio_vs_tfa']:.3f} | {hits} "
              f"| {r['peak_mem_mib']:.0f} |")
    ratio = lambda x, y: round(by[x]["median_s"] / by[y]["median_s"], 3) if x in by and y in by else None  # noqa: E731
    summary = {
        "ratio": ratio("dkan+cache", "tfa+cache"),  # DKAN / TFA, caches on (target <= 1.10)
        "ratio_no_cache": ratio("dkan", "tfa"),
        "dkan_vs_plain_cached": ratio("dkan+cache", "plain+cache"),  # the teacher's own cost
        "speedup_dkan_cache": ratio("dkan", "dkan+cache"),
        "speedup_tfa_cache": ratio("tfa", "tfa+cache"),
    }
    print("\n" + "\n".join(f"{k}: {v}" for k, v in summary.items()))
    Path(a.out).mkdir(parents=True, exist_ok=True)
    out = Path(a.out) / f"bench_step_{a.profile}_{a.device.replace(':', '')}.json"
    doc = {"profile": a.profile, "device": a.device, "batch": a.batch, **summary, "rows": rows}
    out.write_text(json.dumps(doc, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
