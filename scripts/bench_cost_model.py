"""The FLOP model of sweeps/core/estimate.py against measured steps: base training, fine-tuning (TFA, plain, DKAN,
frozen-feature cache warm) and evaluation, timed on one batch of real images in one process.

    python scripts/bench_cost_model.py --data data/neu-det [--profile cpu-quick] [--rounds 5] [--threads 1]

The kinds of work are timed in turns (one step of each per round, ``--rounds`` rounds), so a machine that
other processes load slows them alike: each round's times are also given over its base step, the ratio
the FLOP model must get right whatever the load. ``achieved TFLOPS`` = the counted FLOPs over the least
loaded round's time (the rounds' minimum); ``TFLOPS per CPU s`` = over the process's CPU seconds, which the other
processes' load does not add to (one thread: what an unloaded core would give). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def _steps(profile: str, data: str, batch: int, device: str):
    """name -> a function running one step of that kind on the same batch."""
    import torch

    from dkan.config import DistillConfig
    from dkan.data.dataset import DetectionDataset, build_transforms, collate
    from dkan.data.prepared import PreparedData
    from dkan.distill.cache import FeatureCache, image_key
    from dkan.distill.step import freeze, train_step, weighted_total
    from dkan.engine.setup import freeze_for_method, set_train_mode
    from dkan.model.checkpoint import load_base_into
    from dkan.model.detector import build_detector
    from dkan.profiles import base_config, finetune_config

    torch.manual_seed(0)
    dev = torch.device(device)
    prepared = PreparedData.load(Path(data))
    n_all, n_base = len(prepared.classes), len(prepared.classes) // 2
    base_m, ft_m = base_config(profile).model, finetune_config(profile).model
    ds = DetectionDataset(prepared.records(prepared.split("train")), prepared.classes, build_transforms(train=False))
    images, targets = collate([ds[i] for i in range(batch)])
    keys = [image_key(im) for im in images]
    images = [im.to(dev) for im in images]
    base_targets = [{"boxes": t["boxes"].to(dev), "labels": t["labels"].clamp(max=n_base).to(dev)} for t in targets]
    targets = [{"boxes": t["boxes"].to(dev), "labels": t["labels"].to(dev)} for t in targets]
    base = build_detector(base_m, n_base, pretrained=False).to(dev)
    base_opt = torch.optim.SGD([p for p in base.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    teacher = freeze(build_detector(base_m, n_base, pretrained=False)).to(dev)
    steps = {}

    def base_step() -> None:
        base.train()
        loss = sum(base(images, base_targets).values())
        base_opt.zero_grad(set_to_none=True)
        loss.backward()
        base_opt.step()

    steps["base"] = base_step
    for method in ("tfa", "plain", "dkan"):
        student = build_detector(ft_m, n_all, pretrained=False)
        load_base_into(student, teacher.state_dict(), n_base, torch.Generator().manual_seed(0))
        freeze_for_method(student, method)
        student.to(dev)
        set_train_mode(student)
        opt = torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
        cache, distill = FeatureCache(2**40), DistillConfig()

        def ft_step(student=student, opt=opt, cache=cache, method=method) -> None:
            losses = train_step(student, images, targets, teacher if method == "dkan" else None, n_base, distill,
                                cache=cache, keys=keys)
            opt.zero_grad(set_to_none=True)
            weighted_total(losses, distill).backward()
            opt.step()

        steps[method] = ft_step
    evaluated = build_detector(ft_m, n_all, pretrained=False).to(dev).eval()

    def eval_step() -> None:
        with torch.no_grad():
            evaluated(images)

    steps["eval"] = eval_step
    return steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--profile", default="cpu-quick", choices=["cpu-quick", "paper"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads (a sweep worker's --cpus-per-worker)")
    p.add_argument("--out", default="runs/bench_cost_model")
    a = p.parse_args()
    import torch

    from dkan.data.prepared import PreparedData
    from dkan.profiles import base_config, finetune_config
    from sweeps.core.flops import count_flops

    torch.set_num_threads(a.threads)
    prepared = PreparedData.load(Path(a.data))
    img = prepared.split("train")["images"][0]
    n_all = len(prepared.classes)
    flops = count_flops(base_config(a.profile).model, finetune_config(a.profile).model, n_all // 2, n_all,
                        (img["height"], img["width"]))
    per_image = {"base": flops.base_step, **flops.finetune_step, "eval": flops.eval_image}
    steps = _steps(a.profile, a.data, a.batch, a.device)
    for fn in steps.values():  # warm-up: the caches fill, the allocator settles
        fn()
        fn()
    times: dict[str, list[float]] = {k: [] for k in steps}
    cpu: dict[str, list[float]] = {k: [] for k in steps}  # this process's CPU seconds: what the load does not add
    for _ in range(a.rounds):
        for name, fn in steps.items():
            t, c = time.perf_counter(), time.process_time()
            fn()
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    rows = []
    for name, ts in times.items():
        gflop = per_image[name] * a.batch / 1e9
        ratio = statistics.median(t / b for t, b in zip(ts, times["base"]))
        rows.append({"step": name, "gflop": round(gflop, 2), "min_s": round(min(ts), 3),
                     "median_s": round(statistics.median(ts), 3), "over_base_measured": round(ratio, 3),
                     "over_base_flops": round(per_image[name] / per_image["base"], 3),
                     "achieved_tflops": round(gflop / 1e3 / min(ts), 4),
                     "cpu_s": round(statistics.median(cpu[name]), 3),
                     "tflops_per_cpu_s": round(gflop / 1e3 / statistics.median(cpu[name]), 4)})
    print(f"\nprofile {a.profile}, {a.device}, batch {a.batch}, {a.threads} thread(s), {a.rounds} rounds\n")
    print("| step | GFLOP (batch) | min s | median s | over base, measured | over base, FLOPs | achieved TFLOPS "
          "| CPU s (median) | TFLOPS per CPU s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['step']} | {r['gflop']} | {r['min_s']} | {r['median_s']} | {r['over_base_measured']} "
              f"| {r['over_base_flops']} | {r['achieved_tflops']} | {r['cpu_s']} | {r['tflops_per_cpu_s']} |")
    Path(a.out).mkdir(parents=True, exist_ok=True)
    out = Path(a.out) / f"bench_cost_model_{a.profile}_{a.device.replace(':', '')}_t{a.threads}.json"
    out.write_text(json.dumps({"profile": a.profile, "device": a.device, "batch": a.batch, "threads": a.threads,
                               "rounds": a.rounds, "rows": rows, "times": times, "cpu_seconds": cpu}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
