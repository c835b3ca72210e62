"""Real NEU-DET: base model AP_B, then TFA / DKAN (authors' defaults) / plain at K shots over seeds, on test.

    scripts/venv-run dkan prepare-data --source ../shared/datasets/NEU-DET \
        --split-json ../shared/datasets/NEU-DET/reference-split --out data/neu-det
    scripts/venv-run python scripts/bench_neu_det.py --data data/neu-det --shots 5 --seeds 1-5 \
        --methods dkan,tfa,plain,dkan+inplace

A method ``X+inplace`` is method X with the TFA/authors' cosine head (``model.cosine_norm=inplace``);
``X+rawlka`` with the authors' LKA student logits (the raw cosines, ``distill.lka_student=raw``).
Every run is resumable (a finished one is read back from its metrics.json; OUT/base is reused).
Prints per row mean ± sample sd [95% CI] in COCO and VOC07 AP50, the paper's reference rows (VOC07),
AP_B retention, and paired tests (Wilcoxon) of DKAN against the others; writes results.json / .md.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace
from pathlib import Path

from dkan import runfolder
from dkan.config import apply_overrides
from dkan.engine.train import fit_once
from dkan.evaluation.aggregate import aggregate_seeds, to_json, to_markdown
from dkan.evaluation.stats import describe, paired, retention_per_seed, verdict
from dkan.names import HEADLINE, METHODS, metric_key, parse_int_list
from dkan.profiles import base_config, finetune_config
from dkan.reference import reference_table_rows

# X+variant: method X with one of the authors' choices where ours differ (docs/method.md "Differences")
VARIANTS = {"inplace": "model.cosine_norm=inplace", "rawlka": "distill.lka_student=raw"}


def run(cfg, label: str) -> dict:
    """fit(cfg), or its results when a previous run finished."""
    t = time.time()
    m = fit_once(cfg)
    print(f"{label}: {time.time() - t:.0f} s", flush=True)
    return m


def finetune(a: argparse.Namespace, ckpt: Path, out: Path, spec: str, k: int, seed: int) -> dict:
    method, _, variant = spec.partition("+")
    cfg = finetune_config(a.profile, a.split)
    cfg = replace(cfg, data=replace(cfg.data, root=a.data, split=a.split), base_checkpoint=str(ckpt), shots=k,
                  fewshot_seed=seed, eval_split="test",
                  out=str(out / f"{spec.replace('+', '_')}_{k}shot_seed{seed}"),
                  distill=replace(cfg.distill, method=method))
    sets = [*a.set, *([VARIANTS[variant]] if variant else [])]
    return run(apply_overrides(cfg, sets), f"{spec} K={k} seed {seed}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/neu-det")
    p.add_argument("--out", default="runs/neu_det")
    p.add_argument("--profile", default="cpu-quick", choices=["cpu-quick", "paper"])
    p.add_argument("--split", type=int, default=1)
    p.add_argument("--shots", type=parse_int_list, default=[5])
    p.add_argument("--seeds", type=parse_int_list, default=[1, 2, 3, 4, 5])
    p.add_argument(
        "--methods",
        default="dkan,tfa,plain",
        help="comma list; X+inplace: X with the in-place cosine head; X+rawlka: X with raw-cosine LKA",
    )
    p.add_argument("--base-set", action="append", default=[], metavar="KEY=VALUE", help="overrides for base training")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="overrides for every fine-tune")
    a = p.parse_args()
    specs = a.methods.split(",")
    for spec in specs:  # before any training
        method, _, variant = spec.partition("+")
        if method not in METHODS or (variant and variant not in VARIANTS):
            p.error(f"--methods: {spec!r}. Fix: METHOD[+VARIANT], METHOD in {METHODS}, VARIANT in {tuple(VARIANTS)}")
    out, t0 = Path(a.out), time.time()
    base = base_config(a.profile)
    base = replace(base, data=replace(base.data, root=a.data, split=a.split), out=str(out / "base"), eval_split="test")
    base = apply_overrides(base, a.base_set)
    base_metrics = run(base, "base model")
    ckpt = out / "base" / runfolder.FINAL
    per: dict[str, dict[int, dict]] = {}
    for k in a.shots:
        for seed in a.seeds:  # seed-major: every method has the same seeds done if the run is cut short
            for spec in specs:
                m = finetune(a, ckpt, out, spec, k, seed)
                per.setdefault(f"{spec} {k}-shot", {})[seed] = m
                print(f"{spec} K={k} seed {seed}: " + "  ".join(f"{h} {m[h]:.3f}" for h in HEADLINE), flush=True)
    report = {"base": base_metrics, "per_seed": per, "seeds": a.seeds, "profile": a.profile, "split": a.split}
    md = [f"NEU-DET split {a.split}, test set, profile {a.profile}, seeds {a.seeds} (AP50 in points, "
          "mean ± sample sd [95% CI] over seeds)"]
    for metric in ("coco", "voc07"):
        table = {"base model": aggregate_seeds({0: base_metrics})} | {r: aggregate_seeds(s) for r, s in per.items()}
        for k in a.shots:
            table |= reference_table_rows(a.split, k)
        md.append(to_markdown(table, list(HEADLINE), metric=metric, ci=True))
        report[f"table_{metric}"] = table
        ap_b = metric_key("AP_base", metric)
        report[f"retention_{metric}"] = {
            r: describe(list(retention_per_seed(s, base_metrics[ap_b], ap_b).values()))["mean"] for r, s in per.items()}
        tests = {}
        for k in a.shots:
            ref = f"dkan {k}-shot"
            for other in (r for r in per if r.endswith(f" {k}-shot") and r != ref and ref in per):
                key = metric_key("AP_all", metric)
                d = paired({s: m[key] for s, m in per[ref].items()}, {s: m[key] for s, m in per[other].items()})
                keep = ref if "+" in other else None  # a variant must beat the default to replace it
                tests[f"{ref} - {other}"] = {**d, "verdict": verdict(ref, other, d, f"AP_all ({metric})", keep=keep)}
        report[f"paired_{metric}"] = tests
        md += [f"- {t['verdict']}" for t in tests.values()]
        md.append("AP_B retention: " + ", ".join(f"{r} {v * 100:.0f}%" for r, v in report[f"retention_{metric}"].items()
                                                 if not math.isnan(v)))
    report["wall_s"] = round(time.time() - t0)
    text = "\n\n".join(md)
    print("\n" + text)
    runfolder.write_text_atomic(out / "results.md", text + "\n")
    runfolder.write_text_atomic(out / "results.json", to_json(report))
    print(f"\nwrote {out / 'results.md'} and {out / 'results.json'} ({report['wall_s']} s)")


if __name__ == "__main__":
    main()
