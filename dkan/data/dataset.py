"""torch Dataset over image records, with torchvision's box-aware v2 transforms.

Labels are 1..N in the order of ``class_names`` (0 is background, torchvision's convention).
Images decode once (``dkan.data.images.decode_image``) and stay in memory (all of NEU-DET is
~86 MB), so few-shot sets need no DataLoader workers. Images without boxes are valid items (empty
targets): the detector learns them as background.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from dkan.data.coco import ImageRecord
from dkan.data.images import decode_image, three_channels
from dkan.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_transforms(
    train: bool,
    size: int | None = None,
    hflip: float = 0.5,
    vflip: float = 0.0,
    normalize: bool = False,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """Flips (train only), optional resize of the shorter side to ``size``, float in [0, 1],
    optional normalisation. torchvision detectors resize and normalise inside the model
    (``GeneralizedRCNNTransform``), which also maps boxes back to the original image, so the
    detector pipeline leaves ``size`` and ``normalize`` off; they serve other models."""
    steps: list[v2.Transform] = []
    if train and hflip:
        steps.append(v2.RandomHorizontalFlip(hflip))
    if train and vflip:
        steps.append(v2.RandomVerticalFlip(vflip))
    if size:
        steps.append(v2.Resize(size, antialias=True))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if normalize:
        steps.append(v2.Normalize(mean=list(mean), std=list(std)))
    return v2.Compose(steps)


class DetectionDataset(torch.utils.data.Dataset):
    """(image, target) pairs: image float CxHxW, target {boxes xyxy, labels, image_id}."""

    def __init__(
        self,
        records: list[ImageRecord],
        class_names: Sequence[str],
        transforms: v2.Transform | None = None,
        cache: bool = True,
    ):
        self.records = records
        self.label_of = {n: i for i, n in enumerate(class_names, start=1)}
        unknown = sorted({lab for r in records for lab in r.labels} - set(self.label_of))
        if unknown:
            raise DataError(
                f"classes {unknown}",
                f"are in the records but not in class_names {list(class_names)}",
                "restrict the annotations to the model's classes first (dkan.data.splits.restrict_classes)",
            )
        self.transforms = transforms or build_transforms(train=False)
        self._cache: dict[int, torch.Tensor] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.records)

    def image(self, i: int) -> torch.Tensor:
        """The decoded image as cached: uint8 or float32 in [0, 1], 1 or 3 channels (``decode_image``)."""
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        img = decode_image(self.records[i].path)
        if self._cache is not None:
            self._cache[i] = img
        return img

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict]:
        r = self.records[i]
        img = self.image(i)
        img = tv_tensors.Image(three_channels(img))
        boxes = tv_tensors.BoundingBoxes(
            torch.tensor(r.boxes, dtype=torch.float32).reshape(-1, 4),
            format="XYXY",
            canvas_size=(img.shape[-2], img.shape[-1]),
        )
        target = {
            "boxes": boxes,
            "labels": torch.tensor([self.label_of[n] for n in r.labels], dtype=torch.int64),
            "image_id": r.image_id,
        }
        img, target = self.transforms(img, target)
        return img, target


def collate(batch: list) -> tuple[tuple, tuple]:
    """Detection batches are lists: images differ in size and box counts."""
    return tuple(zip(*batch))
