"""Is the synthetic set learnable? Train a small detector from scratch on CPU, report test AP50.

    python scripts/bench_synthetic.py --minutes 10 --out runs/bench_synthetic

Prepares the synthetic set (cached under --data), trains torchvision's Faster R-CNN with a
ResNet-18 FPN from scratch on the `train` split for a wall-clock budget, evaluates on `test`,
prints a per-class table and writes JSON. (The full DKAN model lands in dkan/model; this
script only checks the data.)
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import time
from pathlib import Path

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

from dkan.data.dataset import DetectionDataset, build_transforms, collate
from dkan.data.prepare import PrepareConfig, prepare_data
from dkan.data.prepared import PreparedData
from dkan.evaluation.coco_ap import APEvaluator


def small_detector(num_classes: int) -> FasterRCNN:
    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, norm_layer=nn.BatchNorm2d, trainable_layers=5)
    anchors = AnchorGenerator(sizes=((16,), (32,), (64,), (128,), (256,)), aspect_ratios=((0.25, 0.5, 1.0, 2.0, 4.0),) * 5)
    return FasterRCNN(
        backbone, num_classes=num_classes + 1, rpn_anchor_generator=anchors, min_size=200, max_size=200,
        rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=500, rpn_pre_nms_top_n_test=500, rpn_post_nms_top_n_test=300,
        box_batch_size_per_image=128, box_score_thresh=0.05, box_nms_thresh=0.5, box_detections_per_img=100,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/synthetic", help="prepared synthetic dataset (made if missing)")
    p.add_argument("--out", default="runs/bench_synthetic")
    p.add_argument("--minutes", type=float, default=10.0, help="training wall-clock budget")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    if not Path(args.data, "dataset.yaml").exists():
        prepare_data(PrepareConfig(out=args.data, synthetic=True))
    data = PreparedData.load(Path(args.data))
    train = DetectionDataset(data.records(data.split("train")), data.classes, build_transforms(train=True, hflip=0.5, vflip=0.5))
    test_gt = data.split("test")
    test = DetectionDataset(data.records(test_gt), data.classes)
    model = small_detector(len(data.classes))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4)
    warmup = 50
    t0, step, losses = time.time(), 0, []
    model.train()
    while time.time() - t0 < args.minutes * 60:
        order = torch.randperm(len(train)).tolist()
        for b in range(0, len(order) - args.batch + 1, args.batch):
            imgs, targets = collate([train[i] for i in order[b : b + args.batch]])
            for g in opt.param_groups:
                g["lr"] = args.lr * min(1.0, (step + 1) / warmup)
            loss = sum(model(list(imgs), [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]).values())
            if not math.isfinite(loss.item()):
                raise SystemExit(f"non-finite loss at step {step}")
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step += 1
            if step % 20 == 0:
                print(f"step {step:5d}  loss {sum(losses[-20:]) / 20:.3f}  {time.time() - t0:6.0f}s", flush=True)
            if time.time() - t0 > args.minutes * 60:
                break
    train_s = time.time() - t0
    model.eval()
    ev = APEvaluator(test_gt, data.classes[:3], data.classes[3:])
    t1 = time.time()
    with torch.no_grad():
        for b in range(0, len(test), 8):
            imgs, targets = collate([test[i] for i in range(b, min(b + 8, len(test)))])
            ev.process([t["image_id"] for t in targets], model(list(imgs)))
    res = ev.evaluate()
    result = {
        "train_steps": step, "train_seconds": round(train_s, 1), "s_per_step": round(train_s / max(step, 1), 3),
        "eval_seconds_per_image": round((time.time() - t1) / len(test), 3), "train_images": len(train), "test_images": len(test),
        "final_loss": round(sum(losses[-20:]) / max(1, len(losses[-20:])), 4), "ap50": res, "machine": platform.machine(), "threads": torch.get_num_threads(),
    }
    print("\n| class | AP50 |\n|---|---|")
    for k in data.classes:
        print(f"| {k} | {res['AP/' + k]:.3f} |")
    print(f"| **all** | **{res['AP_all']:.3f}** |")
    print(f"\n{step} steps in {train_s:.0f} s ({result['s_per_step']} s/step, batch {args.batch}), final loss {result['final_loss']}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "bench_synthetic.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {Path(args.out) / 'bench_synthetic.json'}")


if __name__ == "__main__":
    main()
