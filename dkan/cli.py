"""`dkan` command line: one subcommand per job, each with --help."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from dkan.errors import DkanError


def parse_int_list(text: str) -> list[int]:
    """'1-10' / '1,3,5' / '1-3,7' -> sorted unique ints."""
    out: set[int] = set()
    try:
        for part in text.split(","):
            if "-" in part.strip()[1:]:
                lo, hi = part.split("-", 1)
                if int(hi) < int(lo):
                    raise ValueError
                out.update(range(int(lo), int(hi) + 1))
            else:
                out.add(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of integers such as 1-10 or 1,3,5") from None
    return sorted(out)


def _prepare(args: argparse.Namespace) -> int:
    from dkan.data.prepare import PrepareConfig, prepare_data

    cfg = PrepareConfig(
        out=args.out, source=args.source, images=args.images, split_json=args.split_json,
        classes=args.classes.split(",") if args.classes else None, seeds=args.seeds, shots=args.shots,
        val_fraction=args.val_fraction, test_fraction=args.test_fraction, split_seed=args.split_seed,
        synthetic=args.synthetic, synthetic_per_class=args.synthetic_per_class, synthetic_seed=args.synthetic_seed,
    )
    t = time.time()
    what = "synthetic data" if args.synthetic else args.source
    print(f"preparing {what} -> {args.out} (seeds {args.seeds[0]}..{args.seeds[-1]}, K {args.shots})", flush=True)
    res = prepare_data(cfg, overwrite=args.overwrite)
    print(res.summary)
    print(f"{res.status}: {res.out} ({time.time() - t:.1f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dkan", description="DKAN few-shot defect detection: data, training, evaluation.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    pd = sub.add_parser(
        "prepare-data", help="write train/val/test JSON and seeded few-shot files",
        description="Read a VOC folder (IMAGES/, ANNOTATIONS/) or a COCO JSON, split it, and write "
        "OUT/annotations/{trainval,train,val,test}.json plus the few-shot files in the authors' layout "
        "annotations/fewshot-split/<seed>/<seed>seed_<K>shot_<class>_trainval.json. Idempotent and atomic.",
    )
    src = pd.add_mutually_exclusive_group(required=True)
    src.add_argument("--source", metavar="DIR_OR_JSON", help="VOC folder (NEU-DET layout) or COCO JSON file")
    src.add_argument("--synthetic", action="store_true", help="generate the seeded NEU-DET-like synthetic set instead")
    pd.add_argument("--out", required=True, help="output folder (made atomically; re-running with the same inputs is a no-op)")
    pd.add_argument("--split-json", metavar="DIR", help="folder with trainval.json and test.json to use as the split (e.g. NEU-DET/reference-split)")
    pd.add_argument("--images", metavar="DIR", help="image folder for a COCO JSON source (default: the JSON's folder)")
    pd.add_argument("--classes", help="comma-separated class list and order (default: classes found, sorted)")
    pd.add_argument("--seeds", type=parse_int_list, default=list(range(1, 11)), help="few-shot seeds, e.g. 1-10 (default)")
    pd.add_argument("--shots", type=parse_int_list, default=[1, 2, 3, 5, 10, 30], help="K per class (default 1,2,3,5,10,30)")
    pd.add_argument("--val-fraction", type=float, default=0.15, help="share of trainval held out as val for model selection (default 0.15)")
    pd.add_argument("--test-fraction", type=float, default=0.2, help="share held out as test when no --split-json is given (default 0.2)")
    pd.add_argument("--split-seed", type=int, default=0, help="seed of the test and val splits (default 0)")
    pd.add_argument("--synthetic-per-class", type=int, default=60, help="synthetic images per class (default 60)")
    pd.add_argument("--synthetic-seed", type=int, default=0, help="seed of the synthetic generator (default 0)")
    pd.add_argument("--overwrite", action="store_true", help="replace an --out that holds different content")
    pd.set_defaults(func=_prepare)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s: %(message)s")
    try:
        return args.func(args)
    except DkanError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
