"""`dkan` command line: one subcommand per job, each with --help."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from dkan.errors import DkanError, check_writable, storage_errors
from dkan.names import BOX_HEADS, EVAL_SPLITS, METHODS, METRICS, PROFILES, name_list_text, parse_int_list

METRIC_NAMES = {"coco": "COCO 101-point AP50", "voc07": "VOC07 11-point AP50 (the paper's metric)"}


def _prepare(args: argparse.Namespace) -> int:
    from dkan.data.prepare import PrepareConfig, prepare_data

    cfg = PrepareConfig(
        out=args.out, source=args.source, images=args.images, split_json=args.split_json,
        classes=args.classes.split(",") if args.classes else None, seeds=args.seeds, shots=args.shots,
        val_fraction=args.val_fraction, test_fraction=args.test_fraction, split_seed=args.split_seed,
        synthetic=args.synthetic, synthetic_per_class=args.synthetic_per_class, synthetic_seed=args.synthetic_seed,
        synthetic_kind=args.synthetic_kind, synthetic_images=args.synthetic_images, synthetic_size=args.synthetic_size,
        fewshot_from=args.fewshot_from, fewshot_reading=args.fewshot_reading, class_splits=args.class_splits,
    )
    t = time.time()
    what = "synthetic data" if args.synthetic else args.source
    print(f"preparing {what} -> {args.out} (seeds {args.seeds[0]}..{args.seeds[-1]}, K {args.shots})", flush=True)
    res = prepare_data(cfg, overwrite=args.overwrite)
    print(res.summary)
    print(f"{res.status}: {res.out} ({time.time() - t:.1f} s)")
    return 0


def _train(kind: str):
    def run(args: argparse.Namespace) -> int:
        from dkan import yamlio
        from dkan.compose import job_config
        from dkan.config import to_dict
        from dkan.engine.train import fit

        cfg = job_config(kind, args)
        if args.print_config:
            sys.stdout.write(yamlio.dumps(to_dict(cfg)))
            return 0
        metrics = fit(cfg, resume=args.resume)
        print(_metrics_line(metrics))
        print(f"outputs: {cfg.out} (model_final.pt, metrics.json, config.yaml)")
        return 0

    return run


def _metrics_line(m: dict) -> str:
    import math

    head = "  ".join(
        f"{k} {m[k] * 100:.1f}" for k in ("AP_base", "AP_novel", "AP_all") if k in m and not math.isnan(m[k])
    )
    per = "  ".join(f"{k[3:]} {v * 100:.1f}" for k, v in m.items() if k.startswith("AP/") and not math.isnan(v))
    return f"[{m.get('eval_split')}] {head}\n  per class (AP50): {per}"


def _evaluate(args: argparse.Namespace) -> int:
    from dkan.engine.evaluate_checkpoint import evaluate_checkpoint
    from dkan.evaluation.coco_ap import select_metric
    from dkan.flags import output_file

    _check_eval_class_split(args)
    if args.json:
        output_file(args.json, "--json", [args.checkpoint])  # before the evaluation, not after it

    metrics = evaluate_checkpoint(args.checkpoint, split=args.split_name, data_root=args.data)
    print(f"metric: {METRIC_NAMES[args.metric]}")
    print(_metrics_line(select_metric(metrics, args.metric)))
    if args.json:
        from dkan import runfolder

        runfolder.write_json(args.json, metrics)
    return 0


def _check_eval_class_split(args: argparse.Namespace) -> None:
    """evaluate --base/--novel: the checkpoint's classes decide; a different split given is an error."""
    from dkan.compose import class_split_sets

    if not class_split_sets(args):
        return
    from dkan.data.splits import parse_class_list
    from dkan.model.checkpoint import load_checkpoint

    fix = "pass a model_final.pt written by base-train or finetune"
    meta = load_checkpoint(Path(args.checkpoint), "model checkpoint", fix)["meta"]
    base, novel = parse_class_list(args.base), parse_class_list(args.novel)
    if set(base) != set(meta["base"]) or (novel is not None and set(novel) != set(meta["novel"])):
        raise DkanError(
            f"--base {args.base} --novel {args.novel}: {args.checkpoint} was trained with base {list(meta['base'])}, "
            f"novel {list(meta['novel'])}. Fix: pass those lists, or leave --base/--novel out"
        )


def _add_job_flags(p: argparse.ArgumentParser, kind: str) -> None:
    p.add_argument(
        "--config", metavar="FILE", help="YAML config (e.g. an exported best config); merged over the profile"
    )
    p.add_argument(
        "--profile",
        choices=PROFILES,
        help="defaults: paper (R101-FPN, ~800 px; GPU) or cpu-quick (R18-FPN, 200 px). Default: by hardware",
    )
    p.add_argument("--data", help="prepared dataset folder (dkan prepare-data --out)")
    p.add_argument("--split", type=int, help="NEU-DET class split 1-3 (a preset; only for NEU-DET's classes)")
    _add_class_split_flags(p)
    p.add_argument("--out", help="output folder")
    p.add_argument("--seed", type=int, help="training seed")
    p.add_argument("--iterations", type=int, help="training iterations; the learning-rate steps and warm-up move "
                   "with them (the profile's schedule, shortened or lengthened)")
    p.add_argument(
        "--backbone-weights",
        metavar="PATH_OR_ENUM",
        help="local backbone state-dict file, a torchvision enum such as ResNet101_Weights.IMAGENET1K_V1 (downloaded "
        "once), or none (from scratch on purpose). Default: the profile's (paper: ResNet101_Weights.IMAGENET1K_V1; "
        "cpu-quick: none)",
    )
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1")
    p.add_argument(
        "--eval-split", choices=EVAL_SPLITS, help="split evaluated at the end (default val; test is for final numbers)"
    )
    if kind == "finetune":
        p.add_argument("--base-checkpoint", metavar="PATH", help="base model (dkan base-train's model_final.pt)")
        p.add_argument("--shots", type=int, help="K per class")
        p.add_argument("--fewshot-seed", type=int, help="few-shot split seed (1-10)")
        p.add_argument(
            "--method",
            choices=METHODS,
            help="dkan (distillation; trains FPN, RPN, RoI head), tfa (last layer only: cosine classifier + box "
            "regressor), plain (DKAN's trained parts without a teacher)",
        )
        p.add_argument("--head", choices=BOX_HEADS, help="box classifier (cosine is DKAN's Incremental RCNN)")
    p.add_argument(
        "--set",
        action="append", metavar="KEY=VALUE", help="override any config key, e.g. --set optim.lr=0.005 (repeatable)",
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=_train("base" if kind == "base" else "finetune"))


def _add_class_split_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", type=name_list_text, metavar="A,B,C",
                   help="base classes of any dataset (comma-separated); replaces --split")
    p.add_argument("--novel", type=name_list_text, metavar="D,E",
                   help="novel classes (default: the dataset's other classes)")


def _inspect(args: argparse.Namespace) -> int:
    from dkan.data.inspect import inspect_data
    from dkan.flags import at_least, output_file

    at_least(args.min_size, "--min-size", 1)
    at_least(args.max_shots, "--max-shots", 1)
    if args.out:
        output_file(args.out, "--out")
    report = inspect_data(args.data, out_png=args.out, min_size=args.min_size, shots=args.max_shots)
    print(report.text)
    for w in report.warnings:
        print(f"warning: {w}")
    if args.out:
        print(f"figure: {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dkan", description="DKAN few-shot defect detection: data, training, evaluation.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    pd = sub.add_parser(
        "prepare-data",
        help="write train/val/test JSON and seeded few-shot files",
        description="Read a VOC folder (IMAGES/, ANNOTATIONS/) or a COCO JSON, split it, and write "
        "OUT/annotations/{trainval,train,val,test}.json plus the few-shot files in the authors' layout "
        "annotations/fewshot-split/<seed>/<seed>seed_<K>shot_<class>_trainval.json. Idempotent and atomic.",
    )
    src = pd.add_mutually_exclusive_group(required=True)
    src.add_argument("--source", metavar="DIR_OR_JSON", help="VOC folder (NEU-DET layout) or COCO JSON file")
    src.add_argument("--synthetic", action="store_true", help="generate the seeded NEU-DET-like synthetic set instead")
    pd.add_argument(
        "--out", required=True, help="output folder (made atomically; re-running with the same inputs is a no-op)"
    )
    pd.add_argument(
        "--split-json",
        metavar="DIR",
        help="folder with trainval.json and test.json to use as the split (e.g. NEU-DET/reference-split)",
    )
    pd.add_argument("--images", metavar="DIR", help="image folder for a COCO JSON source (default: the JSON's folder)")
    pd.add_argument("--classes", type=name_list_text,
                    help="comma-separated class list and order (default: classes found, sorted)")
    pd.add_argument(
        "--seeds", type=parse_int_list, default=list(range(1, 11)), help="few-shot seeds, e.g. 1-10 (default)"
    )
    pd.add_argument(
        "--shots", type=parse_int_list, default=[1, 2, 3, 5, 10, 30], help="K per class (default 1,2,3,5,10,30)"
    )
    pd.add_argument(
        "--val-fraction",
        type=float, default=0.15, help="share of trainval held out as val for model selection (default 0.15)",
    )
    pd.add_argument(
        "--test-fraction",
        type=float, default=0.2, help="share held out as test when no --split-json is given (default 0.2)",
    )
    pd.add_argument("--split-seed", type=int, default=0, help="seed of the test and val splits (default 0)")
    pd.add_argument("--synthetic-per-class", type=int, default=60, help="synthetic images per class (default 60)")
    pd.add_argument("--synthetic-seed", type=int, default=0, help="seed of the synthetic generator (default 0)")
    pd.add_argument(
        "--synthetic-kind",
        choices=("steel", "tiles"), default="steel",
        help="steel: NEU-DET-like 200 px, six NEU-DET classes (default); tiles: 640 px grayscale PNGs, "
        "5-10 small defects per image (pit, burr, stain, crack, dent, void), some defect-free",
    )
    pd.add_argument("--synthetic-images", type=int, default=120, help="tiles: number of images (default 120)")
    pd.add_argument("--synthetic-size", type=int, default=640, help="tiles: image side in px (default 640)")
    from dkan.data.fewshot_import import LAYOUT_HELP

    pd.add_argument(
        "--fewshot-from",
        metavar="DIR", help=f"import few-shot lists instead of sampling: {LAYOUT_HELP}. The lists decide seeds and K",
    )
    pd.add_argument(
        "--fewshot-reading",
        choices=("all", "sample"), default="all",
        help="imported lists name images: all = every box of the class in them (default: no defect of the class "
        "is left unlabelled); sample = K of those boxes, drawn with the seed (TFA/mmfewshot's reading)",
    )
    pd.add_argument(
        "--class-splits",
        metavar="YAML",
        help="named base/novel splits (name: {base: [...], novel: [...]}; novel left out = the rest), "
        "checked against the classes and recorded in dataset.yaml",
    )
    pd.add_argument("--overwrite", action="store_true", help="replace an --out that holds different content")
    pd.set_defaults(func=_prepare)

    _add_job_flags(
        sub.add_parser(
            "base-train",
            help="train the base detector on a split's base classes",
            description="Base training on the base classes of a class split (train = trainval less val).",
        ),
        "base",
    )
    _add_job_flags(
        sub.add_parser(
            "finetune",
            help="K-shot fine-tuning of all classes: DKAN or TFA",
            description="Fine-tune a base model on K-shot data of all classes: DKAN (distillation, FKA + LKA), "
            "TFA (the last layer only) or plain (DKAN without a teacher).",
        ),
        "finetune",
    )
    pe = sub.add_parser(
        "evaluate",
        help="evaluate a checkpoint (AP50 per class, base/novel/all)",
        description="Evaluate a model_final.pt from base-train or finetune.",
    )
    pe.add_argument("--checkpoint", required=True, help="model_final.pt")
    pe.add_argument("--split-name", default="test", choices=EVAL_SPLITS, help="which split (default test)")
    pe.add_argument(
        "--metric",
        default="coco", choices=METRICS,
        help="AP50 printed: coco (101-point, default) or voc07 (11-point, the paper's); --json writes both",
    )
    pe.add_argument("--data", help="prepared dataset folder (default: the one the checkpoint was trained on)")
    pe.add_argument("--json", metavar="FILE", help="also write the metrics as JSON")
    _add_class_split_flags(pe)
    pe.set_defaults(func=_evaluate)
    pi = sub.add_parser(
        "inspect-data",
        help="per-class counts, sizes, histograms and warnings of a prepared dataset",
        description="Look at a prepared dataset before training: images/boxes per class and split, image and box "
        "sizes, defect-free and multi-class images, and warnings (tiny boxes after resizing, classes with fewer "
        "images than K, imbalance).",
    )
    pi.add_argument("data", help="prepared dataset folder (dkan prepare-data --out)")
    pi.add_argument("--out", metavar="PNG", help="write box-size, aspect-ratio and image-size histograms here")
    pi.add_argument(
        "--min-size", type=int, help="input size (shorter side) to judge box sizes at (default: prepare-data's)"
    )
    pi.add_argument("--max-shots", type=int, help="largest K you will use (default: the dataset's largest K)")
    pi.set_defaults(func=_inspect)
    _add_sweep(sub)
    _add_predict(sub)
    _add_report(sub)
    return p


def _add_sweep(sub) -> None:
    """`dkan sweep`: exactly the options of `python sweeps/run_tune.py` (one definition serves both)."""
    from sweeps import run_tune  # argparse only: Ray, Optuna and MLflow load when the sweep runs

    ps = sub.add_parser(
        "sweep",
        help="the Ray Tune + Optuna sweep (same as python sweeps/run_tune.py)", description=run_tune.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run_tune.add_arguments(ps)
    ps.set_defaults(func=run_tune.run)


def _add_predict(sub) -> None:
    pp = sub.add_parser(
        "predict",
        help="detect defects in new images (COCO JSON, optional drawings)",
        description="Run a model on images, folders (searched recursively) or .txt lists of paths. Writes COCO-style "
        "JSON (images, categories, annotations with bbox xywh and score, plus 'failed'). An unreadable image is "
        "named and skipped; the exit status is 1 only when no image could be read.",
    )
    src = pp.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="PT", help="model_final.pt from dkan finetune / base-train")
    src.add_argument("--bundle", metavar="DIR_OR_YAML", help="an exported best-config bundle (YAML + model file)")
    src.add_argument("--model-uri", metavar="URI", help="MLflow model, e.g. models:/name/1 (needs mlflow)")
    pp.add_argument("images", nargs="+", metavar="IMAGES", help="image files, folders or .txt lists")
    pp.add_argument("--out", default="detections.json", help="COCO JSON to write (default detections.json)")
    pp.add_argument("--draw", metavar="OUTDIR", help="also write each image with its boxes drawn (PNG)")
    pp.add_argument("--score-thresh", type=float, help="least score kept (default: the model's, 0.05)")
    pp.add_argument("--draw-thresh", type=float, default=0.3, help="least score drawn with --draw (default 0.3)")
    pp.add_argument("--batch-size", type=int, default=4, help="images per forward pass (default 4)")
    pp.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1")
    pp.add_argument("--tracking-uri", help="MLflow tracking URI for --model-uri (default: MLFLOW_TRACKING_URI)")
    pp.set_defaults(func=_predict)


def _predict(args: argparse.Namespace) -> int:
    from dkan.predict import run_cli

    return run_cli(args)


def _add_report(sub) -> None:
    pr = sub.add_parser(
        "report",
        help="one HTML + markdown report of a sweep's run folder",
        description="Read RUN_DIR/results/*.json, best_configs/ and plots/; write RUN_DIR/report.html "
        "(self-contained, plots embedded) and RUN_DIR/report.md (or into --out DIR).",
    )
    pr.add_argument("run_dir", metavar="RUN_DIR", help="the sweep's --out folder")
    pr.add_argument("--no-plots", action="store_true", help="do not draw missing seed-spread plots into RUN_DIR/plots")
    pr.add_argument("--out", metavar="DIR", help="write report.html and report.md into DIR instead (RUN_DIR is then "
                    "only read: no plots drawn into it); for a run folder you cannot write")
    pr.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from sweeps.outputs.report import report_command  # a sweep's run folder: the sweep layer renders it

    return report_command(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s: %(message)s")
    try:
        if isinstance(getattr(args, "out", None), (str, Path)):
            check_writable(Path(args.out))  # before any work: not after an hour of training
        with storage_errors():  # disk full, read-only or no permission: one clear line
            return args.func(args)
    except DkanError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
