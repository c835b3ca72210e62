"""Bytes per seed job: a fine-tune's model_final.pt as a delta (what it changed + its base's hash) against
the full model, per method, measured at cpu-quick and computed at the paper profile.

    python scripts/bench_storage.py [--out bench_storage.json] [--run-folder OUT ...]

measured   cpu-quick: a base model and one 2-iteration fine-tune per method on the synthetic set, the
           files' sizes on disk (``checkpoint_format`` delta, and full for the reference)
computed   each profile: the bytes of the tensors a method trains (the delta holds exactly those:
           the frozen rest is the base model's, bit for bit) against every tensor of the model; the
           paper profile (ResNet-101 FPN) is built without weights, nothing is downloaded
disk       a sweep of 20 trials x 10 seeds x 3 K (600 DKAN seed jobs) at each profile, full vs delta
``--run-folder OUT`` adds the size of existing run folders (e.g. the README main command's, before
and after). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

METHODS = ("tfa", "plain", "dkan")
MiB = 2**20


def computed(profile: str, n_base: int = 3, n_novel: int = 3) -> dict:
    """{method: (delta bytes, full bytes)} from the trainable tensors of the student a method fine-tunes."""
    from dkan.engine.setup import freeze_for_method
    from dkan.model.detector import build_detector
    from dkan.profiles import finetune_config

    out = {}
    for method in METHODS:
        student = build_detector(finetune_config(profile).model, n_base + n_novel, pretrained=False)
        freeze_for_method(student, method)
        full = sum(t.numel() * t.element_size() for t in student.state_dict().values())
        delta = sum(p.numel() * p.element_size() for p in student.parameters() if p.requires_grad)
        out[method] = {"delta_bytes": delta, "full_bytes": full}
    return out


def measured(root: Path) -> dict:
    """{method: {delta_bytes, full_bytes}}: real fine-tunes' files at cpu-quick (2 iterations each)."""
    from dkan.config import DataConfig, DistillConfig, FinetuneConfig, OptimConfig
    from dkan.data.prepare import PrepareConfig, prepare_data
    from dkan.engine.train import fit
    from dkan.profiles import base_config, finetune_config

    data = root / "data"
    prepare_data(PrepareConfig(out=str(data), synthetic=True, seeds=[1], shots=[2]))
    base = base_config("cpu-quick")
    base.data, base.out = DataConfig(root=str(data), split=1), str(root / "base")
    base.optim = OptimConfig(lr=0.01, batch_size=2, iterations=2, warmup_iters=1)
    fit(base, progress=False)
    out = {}
    for method in METHODS:
        sizes = {}
        for fmt in ("delta", "full"):
            ft: FinetuneConfig = finetune_config("cpu-quick")
            ft.data, ft.shots = DataConfig(root=str(data), split=1), 2
            ft.base_checkpoint = str(root / "base" / "model_final.pt")
            ft.optim = OptimConfig(lr=0.01, batch_size=2, iterations=2, warmup_iters=1)
            ft.distill = DistillConfig(method=method)
            ft.out, ft.checkpoint_format = str(root / f"{method}_{fmt}"), fmt
            fit(ft, progress=False)
            sizes[f"{fmt}_bytes"] = (root / f"{method}_{fmt}" / "model_final.pt").stat().st_size
        out[method] = sizes
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench_storage.json")
    ap.add_argument("--run-folder", action="append", default=[])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dkan-bench-storage-") as tmp:
        result = {"measured_cpu_quick": measured(Path(tmp)),
                  "computed": {p: computed(p) for p in ("cpu-quick", "paper")}}
    print(f"{'method':8} {'profile':10} {'how':9} {'delta MiB':>10} {'full MiB':>9} {'delta/full':>10}")
    rows = [(m, "cpu-quick", "measured", r) for m, r in result["measured_cpu_quick"].items()]
    rows += [(m, p, "computed", r) for p, per in result["computed"].items() for m, r in per.items()]
    for method, profile, how, r in rows:
        print(f"{method:8} {profile:10} {how:9} {r['delta_bytes'] / MiB:10.2f} {r['full_bytes'] / MiB:9.2f} "
              f"{r['delta_bytes'] / r['full_bytes']:10.1%}")
    jobs = 20 * 10 * 3
    result["sweep_600_dkan_seed_jobs_gib"] = {}
    for p, per in result["computed"].items():
        full, delta = (per["dkan"][k] * jobs / 2**30 for k in ("full_bytes", "delta_bytes"))
        result["sweep_600_dkan_seed_jobs_gib"][p] = {"full": round(full, 1), "delta": round(delta, 1)}
        print(f"20 trials x 10 seeds x 3 K of DKAN at {p}: {full:.1f} GiB full, {delta:.1f} GiB as deltas")
    from sweeps.core.estimate import folder_bytes

    result["run_folders"] = {f: folder_bytes(Path(f)) for f in args.run_folder}
    for f, b in result["run_folders"].items():
        print(f"run folder {f}: {b / MiB:.0f} MiB")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
